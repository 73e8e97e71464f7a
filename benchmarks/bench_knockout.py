"""One knocked-out cell of a long input (issue 32): the process's peak memory after the app's traced call (its
budget: lazy at these lengths) and after the knockout what-if (model.analysis.knockout_effect), on a 2-layer, 4-head
GPT-2-layout model with random weights (d_model 256, a 400-token vocabulary), before and after the fix.

Each figure comes from a fresh process (the model loaded, one traced call, one knockout of the cell (T - 1, 0) of
decoder.1.self_attn head 0): peak = VmHWM. "before" is the tree at --before (default: where this branch left main),
extracted with git archive; "after" is this tree. tests/test_long.py asserts the bound at 8,192 tokens.

    python -m benchmarks.bench_knockout      # both sides, T = 4,096 and 8,192: benchmarks/results/knockout.json
    python -m benchmarks.bench_knockout --only after --tokens 8192
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache" / "gpt2long"
TOKENS = (4096, 8192)
BOUND_MB = 300  # the what-if's peak may pass the traced call's by this much (issue 32)
NAME = "decoder.1.self_attn"


def long_gpt2(path: Path = CACHE, positions: int = 8192) -> Path:
    """A 2-layer, 4-head GPT-2-layout model with random weights and ``positions`` positions, built once into
    ``path``."""
    if (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file():
        return path
    import torch
    import transformers as tf

    from tests.hf_models import byte_level_tokenizer

    torch.manual_seed(0)
    tok = byte_level_tokenizer(["<|endoftext|>"], None)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=256, n_layer=2, n_head=4, n_positions=positions,
                                             vocab_size=tok.get_vocab_size(), bos_token_id=0, eos_token_id=0))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save(str(path / "tokenizer.json"))
    return path


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(model_dir: str, T: int) -> dict:
    """In a fresh process: the traced call, then the knockout what-if -> peaks (MiB) and seconds."""
    from benchmarks.gpt2small import text_of_tokens
    from model import load, run
    from model.analysis import knockout_effect, knockout_spec, select_cells
    from model.runtime import configure_cpu
    from ui.tracing import capture_budget

    configure_cpu()
    pipe = load(model_dir, "cpu")
    text = text_of_tokens(pipe.tokenizer.hf, T)
    loaded = _hwm_mb()
    t0 = time.perf_counter()
    res = run(pipe, text, budget=capture_budget(), statistics=False)
    traced_s, traced = time.perf_counter() - t0, _hwm_mb()
    try:  # the compact cells of this fix; the tree before it takes a (T, T) bool array
        from model.core.interventions import Cells
        cells = Cells.select(T, T, pairs=[(T - 1, 0)])
    except ImportError:
        cells = select_cells(T, T, pairs=[(T - 1, 0)])
    t0 = time.perf_counter()
    eff = knockout_effect(pipe, res, knockout_spec(NAME, [0], cells))
    what_if_s = time.perf_counter() - t0
    return {"T": len(res.target.ids), "mode": res.mode, "loaded_MiB": round(loaded), "traced_MiB": round(traced),
            "what_if_MiB": round(_hwm_mb()), "beyond_traced_MiB": round(_hwm_mb() - traced),
            "traced_s": round(traced_s, 2), "what_if_s": round(what_if_s, 2), "knocked": int(eff.knocked)}


def measure(code: Path, model_dir: Path, T: int, timeout: float = 900) -> dict:
    """``child`` in a fresh process running the tree at ``code``."""
    # this file's child(), with the imports it makes resolved in the tree at ``code``
    script = (f"import json, runpy, sys; sys.path.insert(0, {str(code)!r}); "
              f"child = runpy.run_path({__file__!r})['child']; "
              f"print('RESULT ' + json.dumps(child({str(model_dir)!r}, {T})))")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(code), env=env, capture_output=True, text=True,
                          timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"the child failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default=None, help="git revision of the 'before' side (default: merge-base with main)")
    ap.add_argument("--only", choices=("before", "after"), default=None)
    ap.add_argument("--tokens", type=int, nargs="*", default=list(TOKENS))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_hostile import before_tree

    model_dir = long_gpt2(positions=max(args.tokens))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_knockout_") as tmp:
        sides = {"after": ROOT}
        if args.only != "after":
            rev = args.before or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], check=True,
                                                capture_output=True, text=True).stdout.strip()
            sides["before"] = before_tree(rev, Path(tmp) / "before")
        if args.only:
            sides = {args.only: sides[args.only]}
        for T in args.tokens:
            row = {"T": T}
            for side, code in sides.items():
                row[side] = measure(code, model_dir, T)
                r = row[side]
                print(f"T = {T:>5} {side:<6}: traced call {r['traced_MiB']:>5} MiB, after the knockout "
                      f"{r['what_if_MiB']:>5} MiB (+{r['beyond_traced_MiB']:,} MiB; bound +{BOUND_MB}), what-if "
                      f"{r['what_if_s']} s", flush=True)
            rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "knockout.json").write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": "GPT-2 layout, 2 layers x 4 heads, "
        "d_model 256, vocabulary 400, random weights", "knocked": f"{NAME} head 0, cell (T - 1, 0)",
        "bound_MiB": BOUND_MB, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'knockout.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
