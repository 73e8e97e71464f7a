"""The training command: tiny runs that learn, are deterministic, and fail clearly on bad --data files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import load
from model.training import TrainArgs, TrainError, noam_lr, read_pairs, train
from model.training.cli import main

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


# decoder-only and the induction task --------------------------------------------------------------------------------

def test_induction_task_trains_a_decoder_only_checkpoint_with_scores(tmp_path):
    meta = train(TrainArgs(out=str(tmp_path / "ind"), task="induction", steps=6, eval_every=3, n_valid=8, n_eval=8,
                           snapshots=[0, 3], progress=False, batch_size=8))
    pipe = load(tmp_path / "ind", device="cpu")
    assert pipe.arch == "decoder-only" and pipe.config.d_ff == 0 and pipe.config.norm == "pre"
    ev = meta["eval"]
    assert {"loss_first", "loss_repeated", "induction", "prev_token", "chance"} <= set(ev)
    assert len(ev["induction"]) == pipe.config.n_decoder_layers and len(ev["induction"][0]) == pipe.config.n_heads
    assert abs(ev["chance"]["prev_token"] - 0.1) < 0.05  # uniform causal attention over ~20-40 keys
    snaps = sorted(p.name for p in (tmp_path / "ind" / "snapshots").iterdir())
    assert snaps == ["step_00000", "step_00003", "step_00006"] == meta["snapshots"]
    first = json.loads((tmp_path / "ind" / "snapshots" / "step_00000" / "meta.json").read_text())
    assert "induction" in first and "valid_loss" in first and first["dtype"] == "float16"
    assert "loss_repeated" in meta["history"][-1]


def test_decoder_only_on_your_own_texts(tmp_path):
    path = write(tmp_path / "texts.txt", "\n".join(f"the {a} sat on the {b}" for a in "abcdef" for b in "xyz"))
    meta = train(TrainArgs(out=str(tmp_path / "lm"), data=str(path), arch="decoder-only", steps=4, eval_every=2,
                           batch_size=8, d_model=16, n_heads=2, layers=1, d_ff=0, progress=False))
    pipe = load(tmp_path / "lm", device="cpu")
    assert pipe.arch == "decoder-only" and meta["arch"] == "decoder-only" and "valid_loss" in meta
    assert pipe.run("the a sat").target.tokens == ["[BOS]", "the", "a", "sat"]


# hostile command lines and files (errors, never tracebacks) ---------------------------------------------------------

@pytest.mark.parametrize("flag, value", [("--n-heads", "0"), ("--eval-every", "0"), ("--batch-size", "0"),
                                         ("--layers", "0"), ("--dropout", "1.5"), ("--max-len", "1"),
                                         ("--label-smoothing", "2"), ("--lr", "nan"), ("--steps", "-3"),
                                         ("--d-model", "x")])
def test_bad_options_are_error_lines(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["--task", "dates", "--out", str(tmp_path / "o"), flag, value, "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "error:" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_out_naming_a_file_is_an_error_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["--task", "dates", "--out", str(tmp_path / "afile"), "--steps", "1", "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "afile").read_text() == "x"


def test_a_huge_tsv_line_is_refused_by_line_number(tmp_path, capsys):
    lines = GOOD_LINES[:5] + ["a" * 200_000 + "\tb"] + GOOD_LINES[5:]
    path = write(tmp_path / "huge.tsv", "\n".join(lines))
    assert main(["--data", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "huge.tsv:6:" in err and "200,000 characters" in err


def test_a_byte_order_mark_is_not_part_of_the_first_source(tmp_path):
    path = tmp_path / "bom.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(GOOD_LINES).encode())
    assert read_pairs(path)[0][0] == GOOD_LINES[0].split("\t")[0]


# never a half-written or mixed checkpoint ---------------------------------------------------------------------------

def test_out_holding_another_tasks_checkpoint_is_not_replaced_without_overwrite(tmp_path, capsys):
    dates = tmp_path / "dates_copy"
    tiny_run(dates, steps=4, eval_every=2, snapshots=[2])
    before = (dates / "model.safetensors").read_bytes()
    args = ["--task", "reverse", "--out", str(dates), "--steps", "2", "--eval-every", "2", "--n-valid", "5",
            "--n-eval", "5", "--d-model", "16", "--n-heads", "2", "--layers", "1", "--d-ff", "16", "--quiet"]
    assert main(args) == 2
    assert "holds a checkpoint of task 'dates'" in capsys.readouterr().err
    assert (dates / "model.safetensors").read_bytes() == before
    assert main(args + ["--overwrite"]) == 0
    assert json.loads((dates / "meta.json").read_text())["task"] == "reverse"
    assert not (dates / "snapshots").exists()  # the old run's snapshots went with it
    assert not list(tmp_path.glob(".dates_copy.*"))  # no staging or old directories left behind


def test_retraining_the_same_task_in_place_is_allowed(tmp_path):
    tiny_run(tmp_path / "d", steps=2, eval_every=2)
    meta = tiny_run(tmp_path / "d", steps=3, eval_every=3)
    assert meta["steps_trained"] == 3 and load(tmp_path / "d", "cpu").meta["steps_trained"] == 3


def test_interrupting_training_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, capsys):
    out = tmp_path / "d"
    tiny_run(out, steps=2, eval_every=2)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    import model.training.loop as loop

    calls = {"n": 0}
    original = loop.save_checkpoint

    def interrupted_save(*args, **kwargs):  # Ctrl-C in the middle of writing a checkpoint
        calls["n"] += 1
        original(*args, **kwargs)
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(out, steps=6, eval_every=2)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert load(out, "cpu").meta["steps_trained"] == 2
    err = capsys.readouterr().err
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".d.partial-")]
    assert len(partial) == 1 and str(partial[0]) in err and "untouched" in err
