"""Long contexts on this machine: the first pass against the uncaptured forward, the memory beyond both, and the
time of one 256 x 256 window of any stage, on Llama-shaped random models (benchmarks/llama_shaped.py).

    python -m benchmarks.bench_long            # prints a table, writes benchmarks/results/long.json
    python -m benchmarks.bench_long --quick    # the small shape only

Each figure comes from its own fresh process (model loaded, one warm-up call): times are medians of interleaved
runs, so that both sides of a ratio see the same machine; memory is the process's high-water mark (VmHWM) after
the call minus the high-water mark of the same process after the uncaptured forward of the same input.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CASES = [("llama-4x8-d512", 8192), ("llama-8x16-d1024", 4096)]
TARGETS = {"ratio": 1.6, "memory_MiB": 1024, "window_ms": 50}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _setup(shape: str, T: int):
    from benchmarks.gpt2small import text_of_tokens
    from benchmarks.llama_shaped import llama_shaped
    from model import load
    from model.runtime import configure_cpu

    configure_cpu()
    pipe = load(llama_shaped(shape), "cpu")
    return pipe, text_of_tokens(pipe.tokenizer.hf, T)


def child_times(shape: str, T: int, repeats: int) -> dict:
    """Interleaved uncaptured forwards and first passes of one input; then windows and rows of the last trace."""
    import numpy as np

    from model import run

    pipe, text = _setup(shape, T)
    run(pipe, text, capture=False)  # warm-up: the allocator keeps its buffers for the next call
    none_s, lazy_s = [], []
    res = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = run(pipe, text, capture=False)
        none_s.append(time.perf_counter() - t)
        del out
        res = None
        t = time.perf_counter()
        res = run(pipe, text, mode="lazy")
        lazy_s.append(time.perf_counter() - t)
    trace = res.trace
    name = trace.layers("decoder", "self_attn")[len(list(trace)) // 2]
    H = trace.shape(name).n_heads
    windows = {}
    for stage in ("scores", "scaled", "masked", "weights"):
        times = []
        for i, h in enumerate((0, H // 2, H - 1) * 2):
            r0 = (T // 3 + 301 * i) % (T - 256)
            t = time.perf_counter()
            w = trace.window(name, h, range(r0, r0 + 256), range(max(0, r0 - 128), max(0, r0 - 128) + 256), stage)
            times.append(time.perf_counter() - t)
            assert w.values.shape == (256, 256)
        windows[stage] = round(statistics.median(times) * 1e3, 1)
    rows = []
    for q in (T // 2, T - 1, T // 4):
        t = time.perf_counter()
        row = trace.row(name, 1, q)
        rows.append(time.perf_counter() - t)
        assert abs(float(np.sum(row.weights)) - 1) < 1e-4
    return {"uncaptured_s": [round(x, 2) for x in none_s], "first_pass_s": [round(x, 2) for x in lazy_s],
            "uncaptured_median_s": round(statistics.median(none_s), 2),
            "first_pass_median_s": round(statistics.median(lazy_s), 2),
            "ratio": round(statistics.median(lazy_s) / statistics.median(none_s), 2),
            "window_256_ms": windows, "row_ms": round(statistics.median(rows) * 1e3, 1),
            "kept_MiB": round(trace.inputs_nbytes() / 2**20, 1), "exact_first_pass": trace.exact,
            "fast_first_pass": not trace.exact}


def child_memory(shape: str, T: int) -> dict:
    """High-water marks: after loading, after the uncaptured forward, after a first pass (the first result
    dropped before the second call)."""
    from model import run

    pipe, text = _setup(shape, T)
    loaded = _status("VmHWM")
    out = run(pipe, text, capture=False)
    logits = out.logits.nbytes()
    del out
    uncaptured = _status("VmHWM")
    res = run(pipe, text, mode="lazy")
    captured = _status("VmHWM")
    return {"loaded_MiB": round(loaded / 2**20), "after_uncaptured_MiB": round(uncaptured / 2**20),
            "after_first_pass_MiB": round(captured / 2**20),
            "beyond_uncaptured_MiB": round((captured - uncaptured) / 2**20),
            "kept_logits_MiB": round(logits / 2**20, 1), "kept_MiB": round(res.trace.inputs_nbytes() / 2**20, 1)}


def _child(kind: str, shape: str, T: int, repeats: int = 3) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_long", "--child", kind, shape, str(T), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent.parent, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        kind, shape, T, repeats = args.child
        fn = child_times if kind == "times" else child_memory
        result = fn(shape, int(T), int(repeats)) if kind == "times" else fn(shape, int(T))
        print(json.dumps(result))
        return
    cases = CASES[:1] if args.quick else CASES
    rows = []
    for shape, T in cases:
        row = {"model": shape, "T": T, **_child("times", shape, T, args.repeats), **_child("memory", shape, T)}
        rows.append(row)
        print(f"{shape} T={T}: uncaptured {row['uncaptured_median_s']} s, first pass {row['first_pass_median_s']} s "
              f"(ratio {row['ratio']}, target <= {TARGETS['ratio']}), beyond the uncaptured forward "
              f"{row['beyond_uncaptured_MiB']} MiB (target <= {TARGETS['memory_MiB']}), kept {row['kept_MiB']} MiB, "
              f"256 x 256 window {row['window_256_ms']} ms (target <= {TARGETS['window_ms']}), row {row['row_ms']} ms",
              flush=True)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor() or
              platform.machine(), "cpu_count": __import__("os").cpu_count(), "targets": TARGETS, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "long.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'long.json'}")


if __name__ == "__main__":
    main()
