"""Forward latency with and without capture, and the memory a capture holds.

    python -m benchmarks.bench_model            # prints a table, writes benchmarks/results/model.json
    python -m benchmarks.bench_model --quick    # fewer repeats

Ratios are measured in one run on one machine (shared machines are noisy; absolute ms are indicative).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from model import ModelConfig, Transformer
from model.runtime import configure_cpu
from model.trace import estimate_capture_bytes, trace_nbytes

RESULTS = Path(__file__).parent / "results"
# demo-sized: the shipped models' width and depth class (d_model 128, 4 heads, 2 + 2 layers)
DEMO = dict(src_vocab_size=64, tgt_vocab_size=32, d_model=128, n_heads=4, n_encoder_layers=2,
            n_decoder_layers=2, d_ff=512, dropout=0.0, max_len=1024)


def make_inputs(T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, 64, (1, T), generator=g), torch.randint(4, 32, (1, T), generator=g)


def time_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def bench_latency(lengths, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**DEMO)).eval()
    rows = []
    for T in lengths:
        src, tgt = make_inputs(T)
        n = max(3, repeats if T <= 128 else repeats // 4)
        run_fast = lambda s=src, t=tgt: model(s, t)
        run_capture = lambda s=src, t=tgt: model(s, t, capture=True)
        with torch.inference_mode():
            run_fast(), run_capture()  # warm-up
            # interleave the two paths so drift on a shared machine hits both alike
            fast, capture = [], []
            for _ in range(n):
                fast.append(time_ms(run_fast))
                capture.append(time_ms(run_capture))
        f, c = statistics.median(fast), statistics.median(capture)
        rows.append({"T": T, "no_capture_ms": round(f, 2), "capture_ms": round(c, 2), "ratio": round(c / f, 2),
                     "repeats": n})
    return rows


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss_child(T: int) -> None:
    """Run in a fresh process: print RSS growth (bytes) of one capture at length T, and the trace size."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**DEMO)).eval()
    src, tgt = make_inputs(T)
    with torch.inference_mode():
        model(src, tgt)  # allocate the fast path's working memory first
        base = _proc_status_bytes("VmRSS")
        trace = model(src, tgt, capture=True).trace
        peak = _proc_status_bytes("VmHWM")  # this process's high-water mark (ru_maxrss inherits the parent's)
    print(json.dumps({"rss_growth": peak - base, "trace_bytes": trace_nbytes(trace)}))


def bench_memory(lengths) -> list[dict]:
    rows = []
    cfg = ModelConfig(**DEMO)
    for T in lengths:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_model", "--memory-child", str(T)],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"T": T, "estimated_MiB": round(estimate_capture_bytes(cfg, T, T) / 2**20, 1),
                     "trace_MiB": round(got["trace_bytes"] / 2**20, 1),
                     "peak_rss_growth_MiB": round(got["rss_growth"] / 2**20, 1)})
    return rows


TARGETS = {"ratio_T<=128": 1.3, "ratio_T=512": 3.0, "capture_ms_T=32": 25.0}


def verdicts(latency: list[dict]) -> dict[str, str]:
    by_t = {r["T"]: r for r in latency}
    out = {}
    worst_small = max(r["ratio"] for r in latency if r["T"] <= 128)
    out["capture/no-capture <= 1.3 at T <= 128"] = f"{worst_small} {'ok' if worst_small <= 1.3 else 'MISSED'}"
    if 512 in by_t:
        r = by_t[512]["ratio"]
        out["capture/no-capture <= 3 at T = 512"] = f"{r} {'ok' if r <= 3 else 'MISSED'}"
    if 32 in by_t:
        c = by_t[32]["capture_ms"]
        out["capture <= 25 ms at T = 32"] = f"{c} ms {'ok' if c <= 25 else 'MISSED'}"
    return out


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = [" | ".join(f"{c:>14}" for c in cols)]
    lines += [" | ".join(f"{r[c]!s:>14}" for c in cols) for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512, 1024])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ATTN_TORCH_THREADS", "1")),
                    help="torch intra-op threads (default: as the app, ATTN_TORCH_THREADS or 1)")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    settings = configure_cpu(args.threads)  # what the app sets at start-up
    if args.memory_child:
        _peak_rss_child(args.memory_child)
        return
    repeats = 8 if args.quick else args.repeats
    latency = bench_latency(args.lengths, repeats)
    memory = bench_memory([t for t in args.lengths if t >= 512] or args.lengths[-1:])
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, **settings},
        "config": DEMO, "latency": latency, "capture_memory": memory, "targets": verdicts(latency),
    }
    print(f"forward, batch 1, source = target = T tokens, median ms; {settings}")
    print(table(latency))
    print("\nmemory of one capture")
    print(table(memory))
    print("\ntargets")
    for k, v in result["targets"].items():
        print(f"  {k}: {v}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'model.json'}")


if __name__ == "__main__":
    main()
