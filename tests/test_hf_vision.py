"""Image models in the Hugging Face layout: every family's records are bitwise transformers' own eager attention.

Tiny random models of each family (ViT with and without a classifier, DeiT with its distillation token, CLIP's and
SigLIP's vision towers, DINOv2, DINOv2 with registers) are built from config objects and saved with save_pretrained,
with their image processor (nothing is downloaded); the reference is the same directory loaded by transformers with
attn_implementation="eager", on the pixels transformers' own processor makes.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from model import CheckpointError, load
from model.api import ImagePipeline
from tests.hf_models import VISION_FAMILIES, VISION_LABELS, build_vision

transformers = pytest.importorskip("transformers")
PIL = pytest.importorskip("PIL.Image")

# what comes before the patches, per family (the rest of the sequence is the 4 x 4 patches, row by row)
PREFIX = {"vit": ["[CLS]"], "vit_model": ["[CLS]"], "deit": ["[CLS]", "[DIST]"], "clip_vision_model": ["[CLS]"],
          "siglip_vision_model": [], "clip": ["[CLS]"], "siglip": [], "dinov2": ["[CLS]"],
          "dinov2_with_registers": ["[CLS]", "reg0", "reg1", "reg2", "reg3"]}
CLASSIFIERS = ("vit", "deit", "dinov2_with_registers")


def picture(height=40, width=56, seed=0) -> np.ndarray:
    """An (H, W, 3) uint8 image that is neither square nor the processor's size (so resizing and cropping run)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    image[8:24, 10:30] = (220, 40, 40)
    return image


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_vision")
    return {fam: build_vision(fam, root / fam) for fam in VISION_FAMILIES}


@pytest.fixture(scope="module")
def pipes(dirs):
    return {fam: load(path, "cpu") for fam, path in dirs.items()}


def eager(pipe, path, pixels):
    """transformers' own eager attention on the same pixels: ({name: weights (1, H, T, T)}, logits or last hidden);
    a two-tower directory's vision tower read by transformers itself."""
    ref = type(pipe.model).from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        out = ref(pixel_values=pixels[None], output_attentions=True)
    att = {f"encoder.{i}.self_attn": a for i, a in enumerate(out.attentions)}
    logits = getattr(out, "logits", None)
    return att, (logits[0] if logits is not None else out.last_hidden_state[0])


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_records_are_bitwise_transformers_eager_attention(pipes, dirs, family):
    pipe = pipes[family]
    res = pipe.run(picture())
    att, output = eager(pipe, dirs[family], res.image.pixels)
    assert list(res.trace) == list(att) == ["encoder.0.self_attn", "encoder.1.self_attn"]
    for name, weights in att.items():
        assert torch.equal(res.trace[name].weights, weights), name
    if family in CLASSIFIERS:
        assert torch.equal(res.logits.row(0), output) and res.logits.shape == (1, 3)
    else:
        assert res.logits is None and torch.equal(res.final_hidden, output)


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_the_processor_is_transformers_own_and_the_labels_say_where_the_patches_are(pipes, dirs, family):
    pipe = pipes[family]
    image = PIL.fromarray(picture())
    res = pipe.run(image)
    reference = transformers.AutoImageProcessor.from_pretrained(dirs[family], backend="pil")
    assert torch.equal(res.image.pixels, reference(images=image, return_tensors="pt")["pixel_values"][0])
    assert isinstance(pipe, ImagePipeline) and pipe.info.modality == "image" and pipe.arch == "encoder-only"
    assert res.patch_grid == (4, 4) and res.image.image_size == (40, 56)
    prefix = PREFIX[family]
    assert res.source.tokens[:len(prefix)] == prefix and res.source.tokens[len(prefix)] == "r0c0"
    assert res.patch_positions == tuple(range(len(prefix), len(prefix) + 16))
    assert [res.source.tokens[p] for p in res.patch_positions] == [f"r{r}c{c}" for r in range(4) for c in range(4)]
    assert res.source.special == [True] * len(prefix) + [False] * 16
    assert res.trace["encoder.0.self_attn"].weights.shape[-1] == len(prefix) + 16


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_a_classifier_says_its_class_and_probability(pipes, family):
    pipe = pipes[family]
    res = pipe.run(picture())
    assert pipe.info.classes == tuple(VISION_LABELS.values()) and pipe.info.has_head
    probs = torch.softmax(res.logits.row(0), -1)
    best = int(probs.argmax())
    assert res.output_ids == [best] and res.output_tokens == [VISION_LABELS[best]] == [res.output_text]
    assert res.probability == pytest.approx(float(probs[best]))


@pytest.mark.parametrize("family", VISION_FAMILIES)
def test_lazy_and_uncaptured_calls_agree_with_the_full_capture(pipes, family):
    pipe = pipes[family]
    full, lazy, none = pipe.run(picture()), pipe.run(picture(), mode="lazy"), pipe.run(picture(), capture=False)
    assert lazy.trace.lazy and none.trace is None
    for name in full.trace:
        a, b = full.trace[name], lazy.trace[name]
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), (name, f.name)
    out = (lambda r: r.logits.rows() if r.logits is not None else r.final_hidden)
    torch.testing.assert_close(out(full), out(none), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family, cls", [("clip", "CLIPModel"), ("siglip", "SiglipModel")])
def test_a_two_tower_directory_gives_its_vision_tower(pipes, dirs, family, cls):
    """CLIPModel / SiglipModel saved whole: the app reads the vision tower, the same numbers as the whole model's."""
    pipe = pipes[family]
    res = pipe.run(picture())
    whole = getattr(transformers, cls).from_pretrained(dirs[family], attn_implementation="eager").eval()
    with torch.no_grad():
        out = whole.vision_model(pixel_values=res.image.pixels[None], output_attentions=True)
    for i, weights in enumerate(out.attentions):
        assert torch.equal(res.trace[f"encoder.{i}.self_attn"].weights, weights)
    assert torch.equal(res.final_hidden, out.last_hidden_state[0])
    assert pipe.info.family == f"{family}_vision_model" and not pipe.info.has_head


def test_a_batch_of_images_is_each_image_alone(pipes):
    pipe = pipes["dinov2_with_registers"]
    images = [picture(seed=1), picture(seed=2, height=64, width=30)]
    batch = pipe.run_batch(images)
    for image, res in zip(images, batch, strict=True):
        alone = pipe.run(image)
        assert torch.equal(res.trace["encoder.1.self_attn"].weights, alone.trace["encoder.1.self_attn"].weights)
        assert res.output_text == alone.output_text


def test_knocking_out_cells_and_ablating_heads_of_an_image_model(pipes):
    pipe = pipes["vit"]
    res = pipe.run(picture())
    patches = list(res.patch_positions)
    knocked = pipe.run(picture(), knockouts={"encoder.1.self_attn": {0: [(0, p) for p in patches]}})
    w = knocked.trace["encoder.1.self_attn"].weights[0, 0, 0]
    assert float(w[patches].sum()) == 0.0 and float(w[0]) == pytest.approx(1.0)  # [CLS] reads only itself
    assert not torch.equal(knocked.logits.rows(), res.logits.rows())
    from model import intervened_outputs

    outs = intervened_outputs(pipe, res, [{}, {"ablations": {"encoder.1.self_attn": {1: "zero"}}}])
    assert outs.shape == (2, 1, 3)
    torch.testing.assert_close(outs[0], res.logits.rows(), atol=1e-5, rtol=1e-5)  # the fast path: same to rounding
    assert not torch.allclose(outs[1], outs[0], atol=1e-4)


def test_registers_are_labelled_and_their_norms_come_from_the_trace(pipes):
    from model.analysis.tokens import token_norms

    res = pipes["dinov2_with_registers"].run(picture())
    norms = token_norms(res.trace, "encoder.1.self_attn")
    rec = res.trace["encoder.1.self_attn"]
    T = len(res.source.ids)
    assert norms.value.shape == norms.output.shape == norms.received.shape == (T,)
    np.testing.assert_allclose(norms.value[1], float(rec.v[0, :, 1].reshape(-1).norm()), rtol=1e-6)
    assert [res.source.tokens[i] for i in range(1, 5)] == ["reg0", "reg1", "reg2", "reg3"]


def test_text_and_images_go_to_the_models_that_read_them(pipes, dirs, tmp_path):
    from tests.hf_models import build

    with pytest.raises(ValueError, match="reads images, not text"):
        pipes["vit"].tokenize_source("a cat")
    with pytest.raises(ValueError, match="reads text; it was given an image"):
        load(build("bert", tmp_path / "bert"), "cpu").run(picture())
    with pytest.raises(ValueError, match="no target"):
        pipes["vit"].run(picture(), "a target")
    with pytest.raises(ValueError, match="does not generate"):
        pipes["vit"].greedy(picture())


def test_the_modality_read_from_a_directory_is_the_loaded_pipelines(pipes, dirs, tmp_path):
    from model import modality_of
    from tests.hf_models import build

    for family, path in dirs.items():  # the pickers list by modality_of; the call reads info.modality
        assert modality_of(path) == pipes[family].info.modality == "image", family
    bert = build("bert", tmp_path / "bert")
    assert modality_of(bert) == load(bert, "cpu").info.modality == "text"


# loading: what a hostile or broken image-model directory gets -------------------------------------------------------

def test_a_directory_without_its_image_processor_is_refused(dirs, tmp_path):
    import shutil

    broken = shutil.copytree(dirs["vit"], tmp_path / "vit")
    (broken / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="preprocessor_config.json: file is missing"):
        load(broken, "cpu")


@pytest.mark.parametrize("change, message", [
    ({"auto_map": {"AutoImageProcessor": "evil.Processor"}}, "names its own code"),
    ({"size": {"height": 10**6, "width": 32}}, "pixels a side"),
    ({"size": {"height": 48, "width": 48}}, "does not run on its processor's 48 x 48 images"),
    ({"image_mean": "grey"}, "the image processor fails on an ordinary image"),
    ({"image_processor_type": "NoSuchImageProcessor"}, None),  # transformers picks the model type's own

])
def test_a_hostile_or_mismatched_processor_is_a_clear_error(dirs, tmp_path, change, message):
    import shutil

    broken = shutil.copytree(dirs["vit"], tmp_path / "vit")
    file = broken / "preprocessor_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), **change}))
    if message is None:  # an unknown processor class: transformers picks the model type's own, as it would
        assert load(broken, "cpu").run(picture()).patch_grid == (4, 4)
        return
    with pytest.raises(CheckpointError, match=message):
        load(broken, "cpu")
