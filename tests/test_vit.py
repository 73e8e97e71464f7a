"""The project's vision transformer: the image call through model.call.run, its checkpoints (same guarantees as the
text ones), training on the shapes task, and the shipped checkpoints/shapes (accuracy on fresh images, the head whose
[CLS] row reads the red object, knockouts of the red object's patches)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model import CheckpointError, load
from model.api import ImagePipeline
from model.call import intervened_outputs, run
from model.own.checkpoint import load_vision_checkpoint, save_vision_checkpoint
from model.own.config import VisionConfig
from model.own.pipeline import VisionPipeline, pixels_of
from model.own.vit import VisionTransformer, patches_of
from model.training import TrainArgs, train
from model.training.shapes import SHAPES, scenes
from model.training.tasks import get_task
from model.training.vision import batch_pixels, score_scenes
from tests.hostile import forbid, sparse_safetensors

PIL = pytest.importorskip("PIL.Image")
ROOT = Path(__file__).resolve().parents[1]
SHAPES_DIR = ROOT / "checkpoints" / "shapes"
FRESH_SEED = 20_261_207  # training used seed 0, 1_000_003 (validation) and 7_777 (final evaluation): none of them
NAMES = [f"encoder.{i}.self_attn" for i in range(2)]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = VisionConfig(class_names=SHAPES, d_model=32, n_heads=4, n_encoder_layers=2, d_ff=64)
    return VisionPipeline(config, VisionTransformer(config).eval().requires_grad_(False))


@pytest.fixture(scope="module")
def images():
    return [s.pixels for s in scenes(4, 5)]


def test_patches_are_cut_row_by_row():
    pixels = torch.arange(2 * 3 * 16 * 24, dtype=torch.float32).reshape(2, 3, 16, 24)
    patches = patches_of(pixels, 8)  # (B, 2 * 3, 3 * 8 * 8)
    assert patches.shape == (2, 6, 192)
    for r in range(2):
        for c in range(3):
            expected = pixels[:, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].reshape(2, -1)
            assert torch.equal(patches[:, r * 3 + c], expected)


def test_an_image_call_traces_every_layer_and_says_where_the_patches_are(tiny, images):
    res = run(tiny, images[0])
    assert isinstance(tiny, ImagePipeline) and tiny.info.modality == "image" and tiny.info.classes == SHAPES
    assert list(res.trace) == NAMES and res.trace[NAMES[0]].weights.shape == (1, 4, 65, 65)
    assert res.patch_grid == (8, 8) and res.patch_positions == tuple(range(1, 65))
    assert res.source.tokens[:3] == ["[CLS]", "r0c0", "r0c1"] and res.source.tokens[64] == "r7c7"
    probs = torch.softmax(res.logits.row(0), -1)
    assert res.output_text in SHAPES and res.output_ids == [int(probs.argmax())]
    assert res.probability == pytest.approx(float(probs.max()))
    assert (res.image.seen() == images[0]).all()  # the model's pixels, back to the image it saw


def test_captured_uncaptured_lazy_and_batched_calls_agree(tiny, images):
    full = run(tiny, images[0])
    fast = run(tiny, images[0], capture=False)
    torch.testing.assert_close(fast.logits.rows(), full.logits.rows(), atol=1e-5, rtol=1e-5)
    lazy = run(tiny, images[0], mode="lazy")
    batch = tiny.run_batch(images[:3])
    for name in NAMES:
        assert torch.equal(lazy.trace[name].weights, full.trace[name].weights)
        assert torch.equal(batch[0].trace[name].weights, full.trace[name].weights)
    rec = full.trace[NAMES[1]]
    torch.testing.assert_close(rec.weights[0].sum(-1), torch.ones(4, 65))
    torch.testing.assert_close(rec.scaled, rec.scores / math.sqrt(8))


def test_pil_images_of_any_size_and_arrays_are_read_alike(tiny, images):
    from_array = run(tiny, images[1])
    from_pil = run(tiny, PIL.fromarray(images[1]))
    assert torch.equal(from_pil.logits.rows(), from_array.logits.rows())
    big = PIL.fromarray(images[1]).resize((100, 80))
    res = run(tiny, big)
    assert res.image.image_size == (80, 100) and res.image.pixels.shape == (3, 64, 64)
    torch.testing.assert_close(res.image.pixels, pixels_of(big, tiny.config))


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((0, 8, 3), np.uint8), 42])
def test_what_is_not_an_image_ends_in_a_message(tiny, bad):
    with pytest.raises(ValueError):
        run(tiny, bad)


def test_a_text_given_to_a_vision_model_and_an_image_given_to_a_text_model_are_refused(tiny, images, dates):
    with pytest.raises(ValueError, match="reads images, not text"):
        run(tiny, "a red circle")
    with pytest.raises(ValueError, match="reads text; it was given an image"):
        run(dates, images[0])
    with pytest.raises(ValueError, match="no target"):
        run(tiny, images[0], "circle")


def test_hidden_states_and_the_class_lens(tiny, images):
    res = run(tiny, images[0], hidden_states=True)
    h = res.hidden["encoder"]
    assert h.shape == (3, 65, 32)
    lens = tiny.unembed("encoder", h[-1])  # the classifier on every position's final state
    torch.testing.assert_close(lens[0], res.logits.row(0), atol=1e-5, rtol=1e-5)  # [CLS]'s is the prediction


def test_ablations_and_knockouts_change_an_image_call(tiny, images):
    res = run(tiny, images[0])
    outs = intervened_outputs(tiny, res, [{}, {"ablations": {NAMES[1]: {0: "zero", 1: "zero"}}}])
    torch.testing.assert_close(outs[0], res.logits.rows(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(outs[1], outs[0])
    knocked = run(tiny, images[0], knockouts={NAMES[0]: {h: [(0, p) for p in range(1, 65)] for h in range(4)}})
    w = knocked.trace[NAMES[0]].weights[0, :, 0]
    assert torch.all(w[:, 1:] == 0) and torch.all(w[:, 0] == 1)  # [CLS] reads only itself


# checkpoints ----------------------------------------------------------------------------------------------------

def test_a_vision_checkpoint_round_trips(tiny, images, tmp_path):
    save_vision_checkpoint(tmp_path / "vit", tiny.model, {"task": "shapes"})
    pipe = load(tmp_path / "vit", "cpu")
    assert isinstance(pipe, VisionPipeline) and pipe.config == tiny.config and pipe.meta == {"task": "shapes"}
    assert json.loads((tmp_path / "vit" / "config.json").read_text())["class_names"] == list(SHAPES)
    assert torch.equal(run(pipe, images[0]).logits.rows(), run(tiny, images[0]).logits.rows())
    assert not (tmp_path / "vit" / "tokenizer.json").exists()


@pytest.mark.parametrize("change, message", [
    ({"image_size": 10**6}, "sizes beyond what this app loads"),
    ({"image_size": 60}, "multiple of patch_size"),
    ({"class_names": ["a", "a"]}, "distinct"),
    ({"pixel_std": [0.5, 0.0, 0.5]}, "pixel_std must be positive"),
    ({"colour": "red"}, "unknown config keys"),
    ({"class_names": ["a", "b"]}, "weights do not match config.json"),  # a head of 3 classes stored
])
def test_a_bad_vision_config_is_refused_before_anything_is_built(tiny, tmp_path, monkeypatch, change, message):
    path = save_vision_checkpoint(tmp_path / "vit", tiny.model, {})
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **change}))
    import model.own.checkpoint as checkpoint

    forbid(monkeypatch, checkpoint, "load_file")  # no tensor is read for a config that does not hold
    with pytest.raises(CheckpointError, match=message):
        load(path, "cpu")


def test_weights_over_the_memory_budget_are_refused_from_config_and_header(tiny, tmp_path, monkeypatch):
    from model.own.checkpoint import expected_vision_shapes

    path = save_vision_checkpoint(tmp_path / "vit", tiny.model, {})
    config = {**json.loads((path / "config.json").read_text()), "d_model": 1024, "d_ff": 4096}
    (path / "config.json").write_text(json.dumps(config))
    sparse_safetensors(path / "model.safetensors", expected_vision_shapes(VisionConfig.from_dict(config)))
    monkeypatch.setenv("INSPECTOR_MAX_MODEL_MB", "64")
    import model.own.checkpoint as checkpoint

    forbid(monkeypatch, checkpoint, "load_file")
    with pytest.raises(CheckpointError, match="INSPECTOR_MAX_MODEL_MB"):
        load_vision_checkpoint(path)


# training -------------------------------------------------------------------------------------------------------

TINY = dict(steps=6, batch_size=8, d_model=16, n_heads=2, layers=1, d_ff=16, eval_every=3, n_valid=20, n_eval=40,
            progress=False)


def test_a_tiny_shapes_run_writes_a_loadable_checkpoint_with_its_figures(tmp_path):
    meta = train(TrainArgs(out=str(tmp_path / "shapes"), task="shapes", snapshots=[0, 3], **TINY))
    pipe = load(tmp_path / "shapes", "cpu")
    assert isinstance(pipe, VisionPipeline) and pipe.meta["task"] == "shapes" and pipe.info.classes == SHAPES
    assert meta["class_names"] == list(SHAPES) and meta["image"]["size"] == 64 and meta["image"]["patch_size"] == 8
    ev = meta["eval"]
    assert ev["n_images"] == 40 and 0.0 <= ev["accuracy"] <= 1.0 and len(ev["cls_share"]) == 1
    assert ev["best_head"]["name"] == "encoder.0.self_attn" and 0.0 <= ev["best_head"]["share"] <= 1.0
    assert 0 < ev["chance_share"] < 1 and "valid_accuracy" in meta and meta["history"][-1]["step"] == 6
    snaps = sorted(p.name for p in (tmp_path / "shapes" / "snapshots").iterdir())
    assert snaps == ["step_00000", "step_00003", "step_00006"]
    half = load(tmp_path / "shapes" / "snapshots" / "step_00003", "cpu")
    assert isinstance(half, VisionPipeline) and half.meta["dtype"] == "float16"


def test_training_the_shapes_task_is_deterministic_and_keeps_another_architecture(tmp_path):
    from model.training.cli import main

    a = train(TrainArgs(out=str(tmp_path / "a"), task="shapes", seed=2, **TINY))
    b = train(TrainArgs(out=str(tmp_path / "b"), task="shapes", seed=2, **TINY))
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert a["eval"] == b["eval"]
    args = ["--task", "shapes", "--out", str(tmp_path / "a"), "--steps", "2", "--eval-every", "2", "--n-valid", "4",
            "--n-eval", "4", "--d-model", "16", "--n-heads", "2", "--layers", "1", "--d-ff", "16", "--batch-size",
            "4", "--quiet"]
    assert main(args + ["--patch-size", "16"]) == 2  # another architecture: kept without --overwrite
    assert main(args + ["--arch", "decoder-only"]) == 2  # a task brings its own architecture


def test_a_patch_size_the_image_does_not_divide_is_an_error_line(tmp_path, capsys):
    from model.training.cli import main

    assert main(["--task", "shapes", "--out", str(tmp_path / "p"), "--patch-size", "7", "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image_size (64) must be a multiple of patch_size (7)") and "Traceback" not in err


# the shipped checkpoint -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes():
    return load(SHAPES_DIR, "cpu")


@pytest.fixture(scope="module")
def fresh():
    return get_task("shapes").scenes(1000, FRESH_SEED)


def test_the_shipped_model_is_right_on_at_least_97_percent_of_1000_fresh_images(shapes, fresh):
    seed = shapes.meta["seed"]
    assert FRESH_SEED not in {seed, seed + 1_000_003, shapes.meta["eval"]["seed"]}
    score = score_scenes(shapes.model, fresh)
    assert score["accuracy"] >= 0.97, score["accuracy"]
    assert shapes.meta["eval"]["accuracy"] >= 0.97 and shapes.meta["eval"]["n_images"] >= 1000
    assert shapes.meta["class_names"] == list(SHAPES) == list(shapes.info.classes)


def test_the_story_head_puts_most_of_cls_attention_on_the_red_object(shapes, fresh):
    story = get_task("shapes").story
    best = shapes.meta["eval"]["best_head"]
    assert (story.attention, story.head) == (best["name"], best["head"])
    share = score_scenes(shapes.model, fresh[:300])["cls_share"]
    layer = int(story.attention.split(".")[1])
    assert share[layer][story.head] > 0.5, share
    assert share[layer][story.head] > 3 * shapes.meta["eval"]["chance_share"]


def test_knocking_out_the_red_objects_patches_takes_the_answer_away(shapes, fresh):
    """Nobody may read the red object's patches (every layer, head and row): accuracy falls to about chance; the
    same number of background patches knocked out instead changes little."""
    sample = fresh[:120]
    T, names, H = 65, list(shapes.info.record_names), shapes.info.n_heads

    def knockouts(columns):
        cells = np.zeros((T, T), bool)
        cells[:, columns] = True
        cells[np.arange(T), np.arange(T)] = False  # a token may still read itself
        return {name: {h: cells for h in range(H)} for name in names}

    red, background = [], []
    rng = np.random.default_rng(0)
    for s in sample:
        on = np.flatnonzero(s.patches(8).reshape(-1)) + 1  # sequence positions of the red patches
        occupied = (s.pixels != 0).any(-1).reshape(8, 8, 8, 8).any((1, 3)).reshape(-1)  # any object's pixels
        off = np.flatnonzero(~occupied) + 1
        red.append(knockouts(on))
        background.append(knockouts(rng.choice(off, size=min(len(on), len(off)), replace=False)))
    labels = np.array([s.label for s in sample])
    images = [s.pixels for s in sample]

    def accuracy(spec):
        results = shapes.run_batch(images, knockouts=spec, capture=False)
        return float(np.mean([SHAPES.index(r.output_text) == y for r, y in zip(results, labels, strict=True)]))

    assert accuracy(red) < 0.6 and accuracy(background) >= 0.95


def test_the_story_scene_shows_it(shapes):
    from model.training.shapes import example_scene

    story, scene = get_task("shapes").story, example_scene()
    res = shapes.run(scene.pixels)
    assert res.output_text == scene.target.shape and res.probability > 0.9
    cls_row = res.trace[story.attention].weights[0, story.head, 0]
    on = [p for p, red in zip(res.patch_positions, scene.patches(8).reshape(-1), strict=True) if red]
    assert float(cls_row[on].sum()) > 0.9


def test_the_shipped_model_is_small_and_its_pixels_are_the_trainers(shapes, fresh):
    size = sum(f.stat().st_size for f in SHAPES_DIR.rglob("*") if f.is_file())
    assert size <= 2 * 1024 * 1024, size
    image = PIL.fromarray(fresh[0].pixels)
    assert torch.equal(shapes.image_input(image).pixels, batch_pixels(fresh[:1], shapes.config)[0])


def test_each_shipped_checkpoints_modality_read_from_its_directory_is_the_loaded_pipelines():
    from model import modality_of

    shipped = sorted(p for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file())
    assert SHAPES_DIR in shipped
    for path in shipped:
        expected = "image" if path == SHAPES_DIR else "text"
        assert modality_of(path) == load(path, "cpu").info.modality == expected, path.name
