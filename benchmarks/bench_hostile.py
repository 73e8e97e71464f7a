"""Hostile checkpoints and training runs of issue 23: time to refusal and peak memory, before and after the fixes.

Each case runs in a child process (the code of one tree first on its path), watched: a child is killed when its
memory passes --rss-cap-mb or its time --timeout (the "before" side of most cases would otherwise take the shared
machine's memory), and the table says so. "before" is the tree at --before (default: where this branch left main),
extracted with git archive; "after" is this tree.

    python -m benchmarks.bench_hostile              # both sides; table printed, benchmarks/results/hostile.json
    python -m benchmarks.bench_hostile --only after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DATES = ROOT / "checkpoints" / "dates"
HOSTILE_TEXT = ("q" * 23 + "!") * 40  # 960 characters (issue 23)
SMALL_TRAIN = ["--steps", "30", "--eval-every", "30", "--n-valid", "5", "--n-eval", "5", "--d-model", "16",
               "--n-heads", "2", "--layers", "1", "--d-ff", "16", "--batch-size", "8", "--quiet"]

CHILD = textwrap.dedent('''
    import json, os, sys, time, traceback
    sys.path.insert(0, os.environ["BENCH_CODE"])
    os.chdir(os.environ.get("BENCH_CWD", os.environ["BENCH_CODE"]))

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024

    import model, model.hf  # imports first: the baseline memory is the libraries'
    from model import load
    P, TEXT = os.environ["BENCH_PATH"], os.environ["BENCH_TEXT"]
    base = rss_mb()
    t0 = time.perf_counter()
    try:
        exec(os.environ["BENCH_ACTION"])
        outcome = "completed without an error"
    except SystemExit as e:
        outcome = f"exit {e.code}"
    except BaseException as e:
        outcome = f"{type(e).__name__}: {str(e)[:220]}"
    print("BENCH " + json.dumps({"seconds": round(time.perf_counter() - t0, 3), "baseline_mb": round(base),
                                  "outcome": outcome}), flush=True)
''')


def _watch(proc: subprocess.Popen, cap_mb: float, timeout: float, state: dict) -> None:
    started = time.perf_counter()
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                fields = {line.split(":")[0]: line.split()[1] for line in f if line.startswith(("VmRSS", "VmHWM"))}
            rss, hwm = int(fields.get("VmRSS", 0)) / 1024, int(fields.get("VmHWM", 0)) / 1024
            state["hwm_mb"] = max(state.get("hwm_mb", 0), hwm)
        except (OSError, ValueError, StopIteration):
            rss = 0
        elapsed = time.perf_counter() - started
        if rss > cap_mb or elapsed > timeout:
            state["killed"] = f"killed at {rss:,.0f} MB after {elapsed:.1f} s" + (
                " (memory cap)" if rss > cap_mb else " (time cap)")
            proc.kill()
            return
        time.sleep(0.05)


def run_case(code: Path, case: dict, cap_mb: float, timeout: float) -> dict:
    env = {**os.environ, "BENCH_CODE": str(code), "BENCH_PATH": str(case["path"]), "BENCH_TEXT": HOSTILE_TEXT,
           "BENCH_ACTION": case["action"], "PYTHONDONTWRITEBYTECODE": "1", **case.get("env", {})}
    if "cwd" in case:
        env["BENCH_CWD"] = str(case["cwd"])
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=str(code))
    state: dict = {}
    watcher = threading.Thread(target=_watch, args=(proc, cap_mb, timeout, state), daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    wall = time.perf_counter() - started
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
    row = {"wall_s": round(wall, 2), "peak_mb": round(state.get("hwm_mb", 0))}
    if line:
        row.update(json.loads(line[6:]))
    else:
        row.update(seconds=None, baseline_mb=None,
                   outcome=state.get("killed") or f"died (rc {proc.returncode}): {err.strip()[-200:]}")
    if case.get("stderr_too") and err.strip():
        row["outcome"] += ": " + err.strip().splitlines()[-1][:220]
    row["outcome"] = row["outcome"].replace(str(case["path"].parent) + "/", "")  # the temporary folder
    return row


# the cases: each builds its fixture under ``tmp`` and says what the child runs ----------------------------------------

def _hf(tmp: Path, family: str, name: str) -> Path:
    from tests.hf_models import build

    return build(family, tmp / name)


def _edit(file: Path, **changes) -> dict:
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))
    return data


def build_cases(tmp: Path) -> list[dict]:
    import math

    import torch
    import transformers

    from model import ModelConfig
    from model.own.checkpoint import expected_shapes
    from tests.hostile import sparse_safetensors

    cases = []
    load_only = "load(P, 'cpu')"
    load_run = "p = load(P, 'cpu'); p.run(TEXT if 'regex' in P else 'hello world')"

    p = _hf(tmp, "llama", "llama_200k_layers")
    _edit(p / "config.json", num_hidden_layers=200_000)
    cases.append(dict(name="llama_200k_layers", what="Llama config.json num_hidden_layers = 200,000", path=p,
                      action=load_only))

    p = _hf(tmp, "bert", "encdec_nested_1e7")
    bert = json.loads((p / "config.json").read_text())
    (p / "config.json").write_text(json.dumps({
        "model_type": "encoder-decoder", "is_encoder_decoder": True, "architectures": ["EncoderDecoderModel"],
        "encoder": {**bert, "num_hidden_layers": 10**7}, "decoder": {**bert, "is_decoder": True,
                                                                    "add_cross_attention": True}}))
    cases.append(dict(name="encdec_nested_1e7_layers", what="encoder-decoder, encoder.num_hidden_layers = 10^7",
                      path=p, action=load_only))

    p = tmp / "own_sparse_1_6e9"
    shutil.copytree(DATES, p, ignore=shutil.ignore_patterns("snapshots"))
    cfg = _edit(p / "config.json", d_model=4096, n_heads=32, n_encoder_layers=4, n_decoder_layers=3, d_ff=16384)
    shapes = expected_shapes(ModelConfig.from_dict(cfg))
    sparse_safetensors(p / "model.safetensors", shapes)
    n = sum(math.prod(s) for s in shapes.values())
    cases.append(dict(name="own_sparse_1_6e9", what=f"own format, sparse file claiming {n / 1e9:.2f}e9 float32 "
                      "parameters", path=p, action=load_only))

    p = _hf(tmp, "gpt2", "gpt2_sparse_6e9")
    cfg = _edit(p / "config.json", n_embd=4096, n_layer=30, n_head=32)
    with torch.device("meta"):
        shell = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg))
    shapes = {k: tuple(v.shape) for k, v in shell.state_dict().items() if k != "lm_head.weight"}
    sparse_safetensors(p / "model.safetensors", shapes)
    n = sum(math.prod(s) for s in shapes.values())
    cases.append(dict(name="gpt2_sparse_6e9_f32", what=f"GPT-2 shape, sparse file claiming {n / 1e9:.2f}e9 float32 "
                      "parameters", path=p, action=load_only))

    p = _hf(tmp, "gpt2", "tokenizer_300mb")
    spec = json.loads((p / "tokenizer.json").read_text())
    spec["added_tokens"].append({"id": max(spec["model"]["vocab"].values()) + 1, "content": "x" * 300_000_000,
                                 "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                                 "special": False})
    (p / "tokenizer.json").write_text(json.dumps(spec))
    del spec
    cases.append(dict(name="tokenizer_json_300mb", what="tokenizer.json of 300 MB (one huge added token)", path=p,
                      action=load_only))

    p = _hf(tmp, "t5", "generation_config_200mb")
    _edit(p / "generation_config.json", note="x" * 200_000_000)
    cases.append(dict(name="generation_config_200mb", what="generation_config.json of 200 MB", path=p,
                      action=load_only))

    from tokenizers import Regex, Tokenizer, normalizers

    p = _hf(tmp, "gpt2", "regex_q_plus")
    tok = Tokenizer.from_file(str(p / "tokenizer.json"))
    tok.normalizer = normalizers.Replace(Regex("(q+)+$"), "q")
    tok.save(str(p / "tokenizer.json"))
    cases.append(dict(name="regex_(q+)+$", what="Replace normalizer (q+)+$, then a 960-character input", path=p,
                      action=load_run))

    for value in (10**9, -7):
        p = _hf(tmp, "t5", f"t5_start_{value}")
        _edit(p / "config.json", decoder_start_token_id=value)
        cases.append(dict(name=f"t5_decoder_start_{value}", what=f"T5 decoder_start_token_id = {value}, then a run",
                          path=p, action=load_run))

    from tokenizers import processors

    p = _hf(tmp, "gpt2", "post_processor_100")
    tok = Tokenizer.from_file(str(p / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single="$A" + " <|endoftext|>" * 100,
                                                       special_tokens=[("<|endoftext|>", eos)])
    tok.save(str(p / "tokenizer.json"))
    cases.append(dict(name="post_processor_100_specials", what="a post-processor adding 100 special tokens "
                      "(the model reads 64), then a run", path=p, action=load_run))

    from safetensors.torch import load_file, save_file

    p = _hf(tmp, "gpt2", "int64_weights")
    state = load_file(str(p / "model.safetensors"))
    state["transformer.h.0.attn.c_attn.weight"] = (state["transformer.h.0.attn.c_attn.weight"] * 100).long()
    save_file(state, str(p / "model.safetensors"), metadata={"format": "pt"})
    cases.append(dict(name="int64_weights", what="an int64 weight in a GPT-2 checkpoint", path=p, action=load_only))

    root, outside = tmp / "root", tmp / "outside"
    p = root / "linked"
    shutil.copytree(DATES, p, ignore=shutil.ignore_patterns("snapshots"))
    outside.mkdir()
    shutil.move(p / "config.json", outside / "config.json")
    (p / "config.json").symlink_to(outside / "config.json")
    cases.append(dict(name="config_links_out_public", what="public mode: config.json links out of the allowed roots "
                      "(the app's loader)", path=p, env={"INSPECTOR_PUBLIC": "1", "INSPECTOR_ALLOWED_ROOTS": str(root)},
                      action="from ui.models import load_pipeline; load_pipeline(P, 'cpu', 0.0)"))

    ck = tmp / "trained"
    subprocess.run([sys.executable, "-m", "model.train", "--task", "dates", "--out", str(ck), *SMALL_TRAIN],
                   cwd=ROOT, check=True, capture_output=True)
    cases.append(dict(name="train_out_dot", what="python -m model.train --out . inside a checkpoint", path=ck,
                      cwd=ck, stderr_too=True,
                      action="from model.training.cli import main; raise SystemExit(main(['--task', 'dates', "
                             f"'--out', '.', *{SMALL_TRAIN!r}]))"))
    cases.append(dict(name="train_model_too_big", what="python -m model.train --d-model 4096 --layers 8 --d-ff 16384 "
                      "(3.8e9 parameters)", path=tmp / "big", stderr_too=True,
                      action="from model.training.cli import main; raise SystemExit(main(['--task', 'dates', "
                             "'--out', P, '--d-model', '4096', '--n-heads', '8', '--layers', '8', '--d-ff', '16384', "
                             "'--steps', '1', '--quiet']))"))
    return cases


def before_tree(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=None, help="git revision of the 'before' side (default: merge-base "
                        "with main)")
    parser.add_argument("--only", choices=("before", "after"), default=None)
    parser.add_argument("--rss-cap-mb", type=float, default=4096)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    rev = args.before or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], check=True,
                                        capture_output=True, text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="bench_hostile_"))
    try:
        cases = build_cases(tmp / "cases")
        sides = {"after": ROOT, "before": before_tree(rev, tmp / "before")}
        if args.only:
            sides = {args.only: sides[args.only]}
        rows = []
        for case in cases:
            row = {"case": case["name"], "what": case["what"]}
            for side, code in sides.items():
                row[side] = run_case(code, case, args.rss_cap_mb, args.timeout)
                print(f"{case['name']:<28} {side:<6} {row[side]['wall_s']:>7.2f} s wall  peak "
                      f"{row[side]['peak_mb']:>6,} MB  {row[side]['outcome'][:110]}", flush=True)
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| case | before: time, peak memory, outcome | after: time, peak memory, outcome |\n|---|---|---|")
    for row in rows:
        cells = []
        for side in ("before", "after"):
            r = row.get(side)
            if r is None:
                cells.append("-")
                continue
            t = f"{r['seconds']:.2f} s" if r.get("seconds") is not None else f"{r['wall_s']:.1f} s (wall)"
            base = f" (libraries {r['baseline_mb']:,} MB)" if r.get("baseline_mb") else ""
            cells.append(f"{t}, {r['peak_mb']:,} MB{base}: {r['outcome'][:90]}")
        print(f"| {row['case']} | {cells[0]} | {cells[1]} |")
    RESULTS.mkdir(exist_ok=True)
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "before_rev": rev, "rss_cap_mb": args.rss_cap_mb, "timeout_s": args.timeout,
              "hostile_text_chars": len(HOSTILE_TEXT), "cases": rows,
              "notes": "seconds: from the call to its end inside the child (imports excluded); peak_mb: the child's "
                       "peak resident memory, libraries included (baseline_mb: after the imports, before the call)"}
    (RESULTS / "hostile.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
