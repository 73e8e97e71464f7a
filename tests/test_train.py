"""The training command: tiny runs that learn, are deterministic, and fail clearly on bad --data files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import load
from model.train import TrainArgs, TrainError, main, noam_lr, read_pairs, train

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(steps=40, batch_size=16, d_model=16, n_heads=2, layers=1, d_ff=32, eval_every=20, n_valid=20,
            n_eval=30, lr=3e-3, warmup=10, progress=False)


def tiny_run(out, **kw) -> dict:
    return train(TrainArgs(out=str(out), **{**TINY, "task": "dates", **kw}))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return out, tiny_run(out, seed=3)


def test_tiny_run_lowers_the_loss_and_writes_a_loadable_checkpoint(tiny):
    out, meta = tiny
    assert meta["history"][-1]["loss"] < 0.8 * meta["first_loss"]
    pipe = load(out, device="cpu")
    assert pipe.meta["task"] == "dates" and pipe.meta["seed"] == 3
    for key in ("steps", "valid_exact_match", "wall_time_s", "device", "parameters", "src_tokenizer",
                "tgt_tokenizer", "config_summary", "eval", "size_bytes"):
        assert key in pipe.meta, key
    assert pipe.meta["parameters"] == pipe.model.num_parameters()
    assert pipe.config.d_model == 16 and pipe.config.n_encoder_layers == 1
    assert isinstance(pipe.generate("21 November 2026"), str)
    assert 0.0 <= pipe.meta["eval"]["exact_match"] <= 1.0 and pipe.meta["eval"]["n_pairs"] == 30


def test_same_seed_gives_identical_weights_different_seed_does_not(tiny, tmp_path):
    out, _ = tiny
    tiny_run(tmp_path / "again", seed=3)
    tiny_run(tmp_path / "other", seed=4)
    first = load_file(str(out / "model.safetensors"))
    again = load_file(str(tmp_path / "again" / "model.safetensors"))
    other = load_file(str(tmp_path / "other" / "model.safetensors"))
    assert first.keys() == again.keys()
    assert all((first[k] == again[k]).all() for k in first)
    assert any(not (first[k] == other[k]).all() for k in first)


def test_snapshots_are_loadable_checkpoints(tmp_path):
    meta = tiny_run(tmp_path / "snap", steps=12, eval_every=6, snapshots=[0, 5])
    snaps = sorted(p.name for p in (tmp_path / "snap" / "snapshots").iterdir())
    assert snaps == ["step_00000", "step_00005", "step_00012"]
    for name in snaps:
        pipe = load(tmp_path / "snap" / "snapshots" / name, device="cpu")
        assert pipe.meta["step"] == int(name[5:])
    assert meta["steps_trained"] == 12


def test_noam_schedule_peaks_at_warmup():
    assert noam_lr(100, 1e-3, 100) == pytest.approx(1e-3)
    assert noam_lr(50, 1e-3, 100) == pytest.approx(5e-4)
    assert noam_lr(400, 1e-3, 100) == pytest.approx(5e-4)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD_LINES = [f"{a} {b}\t{b} {a}" for a in ("x", "y", "z", "w") for b in ("p", "q", "r", "s")]


@pytest.mark.parametrize("line, what", [("no tab here", "no tab"), ("a\tb\tc", "2 tabs"),
                                        ("\tdigits", "empty source"), ("words\t ", "empty target")])
def test_malformed_tsv_names_the_line(tmp_path, capsys, line, what):
    path = write(tmp_path / "bad.tsv", "\n".join(GOOD_LINES[:2] + [line] + GOOD_LINES[2:]) + "\n")
    with pytest.raises(TrainError, match=rf"bad.tsv:3: .*{what}"):
        read_pairs(path)
    assert main(["--data", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.tsv:3:" in err and what in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text, message", [("", "empty"), ("\n\n", "empty"),
                                           ("\n".join(GOOD_LINES[:4]), "only 4 pairs")])
def test_empty_or_too_small_tsv_fails_clearly(tmp_path, capsys, text, message):
    path = write(tmp_path / "small.tsv", text)
    assert main(["--data", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_cli_error_is_a_message_and_nonzero_exit_not_a_traceback(tmp_path):
    path = write(tmp_path / "bad.tsv", "one\ttwo\nthree four\n")
    proc = subprocess.run([sys.executable, "-m", "model.train", "--data", str(path), "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "bad.tsv:2:" in proc.stderr and "Traceback" not in proc.stderr


def test_valid_small_tsv_trains_and_loads(tmp_path):
    path = write(tmp_path / "pairs.tsv", "\n".join(GOOD_LINES) + "\n")
    meta = train(TrainArgs(out=str(tmp_path / "mine"), data=str(path), **{**TINY, "steps": 20}))
    assert meta["task"] == "custom" and meta["n_valid"] >= 1
    pipe = load(tmp_path / "mine", device="cpu")
    assert pipe.src_tokenizer.encode("x p").tokens == ["x", "p"]
    assert "[UNK]" not in pipe.tgt_tokenizer.encode("p x").tokens
    assert isinstance(pipe.generate("x p"), str)
    assert json.loads((tmp_path / "mine" / "meta.json").read_text())["parameters"] > 0


def test_bad_arguments_are_train_errors(tmp_path):
    with pytest.raises(TrainError, match="divisible"):
        tiny_run(tmp_path / "a", d_model=10, n_heads=3)
    with pytest.raises(TrainError, match="no such file"):
        train(TrainArgs(out=str(tmp_path / "b"), data=str(tmp_path / "missing.tsv")))
    with pytest.raises(TrainError, match="exactly one"):
        train(TrainArgs(out=str(tmp_path / "c")))


def test_training_leaves_the_torch_thread_count_as_it_was(tmp_path):
    before = torch.get_num_threads()
    tiny_run(tmp_path / "t", steps=2, eval_every=2, threads=1)
    assert torch.get_num_threads() == before
