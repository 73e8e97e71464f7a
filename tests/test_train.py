"""The training command: tiny runs that learn, are deterministic, and fail clearly on bad --data files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import load
from model.training import TrainArgs, TrainError, noam_lr, read_pairs, train
from model.training.cli import main
from tests.hostile import forbid

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
    assert pipe.src_tokenizer.tokenize("x p").tokens == ["x", "p"]
    assert "[UNK]" not in pipe.tgt_tokenizer.tokenize("p x").tokens
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


# round 3 (issue 23): never lose a checkpoint, an error line for what the machine refuses ------------------------------

SMALL = ["--steps", "2", "--eval-every", "2", "--n-valid", "5", "--n-eval", "5", "--d-model", "16", "--n-heads", "2",
         "--layers", "1", "--d-ff", "16", "--batch-size", "8", "--quiet"]


def files_of(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def test_a_checkpoint_trained_on_other_data_is_not_replaced_without_overwrite(tmp_path, capsys):
    """Issue 23: only the task name was compared, so any --data run replaced any other."""
    a = write(tmp_path / "a.tsv", "\n".join(GOOD_LINES) + "\n")
    b = write(tmp_path / "b.tsv", "\n".join(GOOD_LINES[::-1]) + "\n")  # other data, same size
    out = tmp_path / "mine"
    assert main(["--data", str(a), "--out", str(out)] + SMALL) == 0
    before = files_of(out)
    capsys.readouterr()
    assert main(["--data", str(b), "--out", str(out)] + SMALL) == 2
    err = capsys.readouterr().err
    assert "holds a checkpoint trained on other data" in err and "--overwrite" in err and "Traceback" not in err
    assert files_of(out) == before
    assert main(["--data", str(a), "--out", str(out)] + SMALL) == 0  # the same data again: retrained in place
    assert main(["--data", str(b), "--out", str(out), "--overwrite"] + SMALL) == 0
    assert json.loads((out / "meta.json").read_text())["data"] == str(b)


def test_a_checkpoint_of_another_architecture_is_not_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["--task", "dates", "--out", str(out)] + SMALL) == 0
    before = files_of(out)
    capsys.readouterr()
    two_layers = SMALL[:SMALL.index("--layers") + 1] + ["2"] + SMALL[SMALL.index("--layers") + 2:]
    assert main(["--task", "dates", "--out", str(out)] + two_layers) == 2
    err = capsys.readouterr().err
    assert "another architecture (n_encoder_layers 1 -> 2, n_decoder_layers 1 -> 2)" in err
    assert files_of(out) == before


def test_an_interrupt_between_the_two_renames_keeps_a_checkpoint_in_place(tmp_path, monkeypatch, capsys):
    """Issue 23: a KeyboardInterrupt between the two renames of the commit left no --out at all."""
    import model.training.output as output

    out = tmp_path / "d"
    tiny_run(out, steps=2, eval_every=2)
    before = files_of(out)
    real_replace, calls = os.replace, []

    def interrupted(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # after --out was moved aside, before the new checkpoint is moved in
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(output.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(out, steps=3, eval_every=3)
    monkeypatch.setattr(output.os, "replace", real_replace)
    assert files_of(out) == before  # the previous checkpoint back in place
    err = capsys.readouterr().err
    staging = Path(calls[1][0])
    assert f"is as it was; this run's checkpoint is in {staging}" in err and (staging / "model.safetensors").is_file()


def test_ctrl_c_during_the_swap_waits_until_the_swap_is_done(tmp_path, monkeypatch, capsys):
    import signal

    import model.training.output as output

    out = tmp_path / "d"
    tiny_run(out, steps=2, eval_every=2)
    real_replace, calls = os.replace, []

    def with_ctrl_c(src, dst):
        calls.append(src)
        real_replace(src, dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, between the two renames

    monkeypatch.setattr(output.os, "replace", with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(out, steps=3, eval_every=3)
    assert len(calls) == 2 and load(out, "cpu").meta["steps_trained"] == 3  # the new one, whole
    assert "interrupted while saving" in capsys.readouterr().err
    assert not list(tmp_path.glob(".d.*"))


def test_an_out_lost_between_the_renames_is_restored_at_the_next_start(tmp_path, capsys):
    """A run killed (SIGKILL, power) between the two renames leaves --out in a hidden .old-* folder: the next run
    puts it back and says so."""
    out = tmp_path / "d"
    tiny_run(out, steps=2, eval_every=2)
    before = files_of(out)
    lost = tmp_path / ".d.old-123-456"
    os.replace(out, lost)
    capsys.readouterr()
    assert main(["--task", "reverse", "--out", str(out)] + SMALL) == 2  # another task: refused, once restored
    err = capsys.readouterr().err
    assert f"restored {out} from {lost}" in err and "holds a checkpoint of task 'dates'" in err
    assert files_of(out) == before and not lost.exists()


def test_staging_folders_of_interrupted_runs_are_cleaned(tmp_path, capsys):
    """Issue 23: 10 interrupted runs left 15 MB of staging folders, never removed."""
    out = tmp_path / "d"
    stale = [tmp_path / f".d.partial-20260101-00000{i}-{999_990 + i}" for i in range(3)]  # no such processes
    for s in stale:
        (s / "snapshots").mkdir(parents=True)
        (s / "model.safetensors").write_bytes(b"\0" * 100_000)
    alive = tmp_path / f".d.partial-20260101-000009-{os.getppid()}"  # a run still going
    alive.mkdir()
    tiny_run(out, steps=2, eval_every=2)
    err = capsys.readouterr().err
    assert "removed 3 staging folder(s) of interrupted runs" in err and "0.3 MB" in err
    assert not any(s.exists() for s in stale) and alive.exists()


@pytest.mark.parametrize("where", ["read-only", "proc", "proc-child"])
def test_an_out_that_cannot_be_written_is_an_error_line(tmp_path, monkeypatch, capsys, where):
    """Issue 23: a read-only --out and /proc as --out ended in tracebacks."""
    import model.training.loop as loop

    forbid(monkeypatch, loop, "_run")  # refused before any training
    if where == "read-only":
        def read_only(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))
        monkeypatch.setattr(Path, "mkdir", read_only)  # root ignores chmod: the file system says no instead
        out = str(tmp_path / "ro" / "d")
    else:
        out = "/proc" if where == "proc" else "/proc/inspector-test"
    assert main(["--task", "dates", "--out", out, "--overwrite"] + SMALL) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "Traceback" not in err
    assert ("mount point" if where == "proc" else "cannot write beside it") in err


def test_a_full_disk_is_an_error_line_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    import errno

    import model.training.loop as loop

    out = tmp_path / "d"
    assert main(["--task", "dates", "--out", str(out)] + SMALL) == 0
    before = files_of(out)
    capsys.readouterr()

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(path) / "model.safetensors"))

    monkeypatch.setattr(loop, "save_checkpoint", full)
    assert main(["--task", "dates", "--out", str(out)] + SMALL) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("error: ")]
    assert error[0].startswith("error: No space left on device writing ") and f"{out} is untouched" in error[0]
    assert files_of(out) == before and not list(tmp_path.glob(".d.partial-*"))


@pytest.mark.parametrize("error", [MemoryError(), torch.OutOfMemoryError("CUDA out of memory"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")])
def test_out_of_memory_is_an_error_line(tmp_path, monkeypatch, capsys, error):
    import model.training.loop as loop

    def no_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(loop, "Transformer", no_memory)
    assert main(["--task", "dates", "--out", str(tmp_path / "d")] + SMALL) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory") and "Traceback" not in err


def test_a_model_over_the_memory_budget_is_refused_before_it_is_built(tmp_path, monkeypatch, capsys):
    import model.training.loop as loop

    forbid(monkeypatch, loop, "Transformer")
    monkeypatch.setenv("INSPECTOR_MAX_MODEL_MB", "64")
    assert main(["--task", "dates", "--out", str(tmp_path / "d"), "--d-model", "1024", "--layers", "2",
                 "--d-ff", "4096", "--steps", "1", "--quiet"]) == 2
    assert "needs about" in capsys.readouterr().err


@pytest.mark.parametrize("inside", ["dot", "parent", "data"])
def test_an_out_holding_the_current_directory_or_the_data_is_refused_before_training(tmp_path, monkeypatch, capsys,
                                                                                     inside):
    """Issue 23: --out . inside a checkpoint trained fully, then failed with EBUSY."""
    import model.training.loop as loop

    out = tmp_path / "d"
    tiny_run(out, steps=2, eval_every=2)
    forbid(monkeypatch, loop, "_run")
    if inside == "data":
        data = write(out / "pairs.tsv", "\n".join(GOOD_LINES) + "\n")
        args = ["--data", str(data), "--out", str(out), "--overwrite"]
        expected = "holds the --data file"
    else:
        (out / "sub").mkdir()
        monkeypatch.chdir(out if inside == "dot" else out / "sub")
        args = ["--task", "dates", "--out", "." if inside == "dot" else str(out)]
        expected = "contains the current directory"
    assert main(args + SMALL) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_a_symlinked_out_stays_a_symlink(tmp_path):
    """Issue 23: a symlinked --out was replaced by a real folder; its target is what gets replaced."""
    real, link = tmp_path / "real", tmp_path / "link"
    tiny_run(real, steps=2, eval_every=2)
    link.symlink_to(real)
    tiny_run(link, steps=3, eval_every=3)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert load(real, "cpu").meta["steps_trained"] == 3
    assert not list(tmp_path.glob(".link.*")) and not list(tmp_path.glob(".real.*"))


@pytest.mark.parametrize("char, name", [("\u2028", "U+2028 LINE SEPARATOR"), ("\x85", "U+0085 NEXT LINE (NEL)"),
                                        ("\x0c", "U+000C FORM FEED"), ("\u2029", "U+2029 PARAGRAPH SEPARATOR")])
def test_a_unicode_line_break_inside_a_line_is_named(tmp_path, capsys, char, name):
    """Issue 23: a U+2028, NEL or form feed in a data line was reported as "found no tab"."""
    lines = GOOD_LINES[:11] + [f"x p{char}q\tp x"] + GOOD_LINES[11:]
    path = write(tmp_path / "breaks.tsv", "\n".join(lines) + "\n")
    assert main(["--data", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"breaks.tsv:12: line 12 contains {name} at character 4" in err and "no tab" not in err


def test_carriage_returns_still_end_lines(tmp_path):
    path = tmp_path / "crlf.tsv"
    path.write_bytes("\r\n".join(GOOD_LINES).encode() + b"\r\n")
    assert read_pairs(path) == [tuple(line.split("\t")) for line in GOOD_LINES]
    path.write_bytes("\r".join(GOOD_LINES).encode())  # old Mac line ends
    assert len(read_pairs(path)) == len(GOOD_LINES)


# issue 27: one resolved record of hyper-parameters, short functions, training imports only what it trains ------------

def test_hyper_parameters_resolve_once_command_line_then_task_then_default():
    import dataclasses

    from model.training.params import HYPER_FIELDS, HyperParams, resolved
    from model.training.tasks import get_task

    induction = get_task("induction")
    hp = resolved(TrainArgs(out="x", task="induction", lr=0.01), induction)
    assert hp.lr == 0.01 and hp.d_model == induction.defaults["d_model"] == 64 and hp.arch == "decoder-only"
    assert hp.clip == HyperParams.clip and resolved(TrainArgs(out="x", data="d"), None) == HyperParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.lr = 1.0
    ask = {f.name for f in dataclasses.fields(TrainArgs)}
    assert set(HYPER_FIELDS) <= ask  # every hyper-parameter can be asked for
    from model.training.cli import build_parser

    options = set(vars(build_parser().parse_args(["--task", "dates", "--out", "x"])))
    assert set(HYPER_FIELDS) <= options  # and has its command-line option
    source = (ROOT / "model" / "training" / "params.py").read_text().split("class HyperParams")[1].split("def ")[0]
    for name in HYPER_FIELDS:  # every field says what it does, on its line
        line = next(ln for ln in source.splitlines() if ln.strip().startswith(f"{name}:"))
        assert "  # " in line, line


def test_no_function_in_model_is_over_80_lines():
    import ast

    long = []
    for path in sorted((ROOT / "model").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, long


def test_training_imports_only_the_model_it_trains():
    code = ("import sys, model.training, model.training.cli, model.training.vision; "
            "print(sorted(m for m in sys.modules if m in ('model.load', 'transformers') or m.startswith('model.hf')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
