"""The committed checkpoints load, are small, and solve fresh generated pairs (a seed not used in training)."""

from pathlib import Path

import pytest

from model import load
from model.training import VALID_SEED_OFFSET, exact_match
from model.training.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("dates", "reverse", "numbers")
FRESH_SEED = 20_261_121  # training used seeds 0, 1, 1_000_003 and 7_777: none of them
MAX_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request):
    return request.param, load(ROOT / "checkpoints" / request.param, device="cpu")


def test_scores_at_least_99_percent_on_fresh_pairs(shipped):
    name, pipe = shipped
    assert pipe.meta["task"] == name
    pairs = get_task(name).pairs(300, seed=FRESH_SEED)
    seed = pipe.meta["seed"]  # training stream, tokenizer sample, validation and final-eval seeds
    assert FRESH_SEED not in {seed, seed + 1, seed + VALID_SEED_OFFSET, pipe.meta["eval"]["seed"]}
    assert exact_match(pipe, pairs) >= 0.99


def test_small_on_disk_and_meta_has_the_figures(shipped):
    name, pipe = shipped
    path = ROOT / "checkpoints" / name
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    assert size <= MAX_BYTES, f"{path}: {size} bytes"
    meta = pipe.meta
    assert meta["eval"]["n_pairs"] >= 1000 and meta["eval"]["exact_match"] >= 0.99
    assert meta["eval"]["seed"] != meta["seed"]
    assert meta["parameters"] == pipe.model.num_parameters() <= 1_100_000
    for key in ("steps", "minutes", "size_bytes", "device", "src_tokenizer", "tgt_tokenizer", "config_summary"):
        assert key in meta, key


def test_dates_snapshots_show_training_progress():
    snap_dir = ROOT / "checkpoints" / "dates" / "snapshots"
    snaps = sorted(snap_dir.iterdir())
    steps = [int(p.name.removeprefix("step_")) for p in snaps]
    assert steps[0] == 0 and len(steps) >= 3 and steps == sorted(set(steps))
    pipes = [load(p, device="cpu") for p in snaps]
    assert [p.meta["step"] for p in pipes] == steps
    pairs = get_task("dates").pairs(100, seed=FRESH_SEED)
    first, last = exact_match(pipes[0], pairs), exact_match(pipes[-1], pairs)
    assert first < 0.05 and last >= 0.95
    for p in snaps:
        assert sum(f.stat().st_size for f in p.iterdir()) <= MAX_BYTES


def test_induction_model_grows_its_heads_and_copies_from_context():
    """The shipped decoder-only model: at the end a layer-1 induction head >= 0.7 and a layer-0 previous-token head
    >= 0.7 on fresh sequences, the repetition's loss far below the first occurrence's; at step 0 both near chance."""
    from model.training import induction_report

    path = ROOT / "checkpoints" / "induction"
    pipe = load(path, device="cpu")
    assert pipe.arch == "decoder-only" and pipe.config.d_ff == 0 and pipe.meta["task"] == "induction"
    fresh = get_task("induction").sequences(300, seed=FRESH_SEED)
    final = induction_report(pipe.model, pipe.tgt_tokenizer, fresh)
    assert final["best_induction_last_layer"] >= 0.7 and final["best_prev_token_first_layer"] >= 0.7
    assert final["loss_repeated"] < 0.25 * final["loss_first"]
    first = load(path / "snapshots" / "step_00000", device="cpu")
    start = induction_report(first.model, first.tgt_tokenizer, fresh)
    assert start["best_induction_last_layer"] < 2 * start["chance"]["induction"]
    assert start["best_prev_token_first_layer"] < 2 * start["chance"]["prev_token"]
    snaps = sorted((path / "snapshots").iterdir())
    assert 15 <= len(snaps) <= 30
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) <= 20 * 2**20
    for key in ("loss_first", "loss_repeated", "induction", "prev_token", "chance"):
        assert key in pipe.meta["eval"], key
