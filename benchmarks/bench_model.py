"""Forward latency with and without capture, and the memory a capture holds.

Two models: the project's demo-sized encoder-decoder, and a GPT-2-small-shaped transformers model (random weights,
12 x 12 heads, d_model 768) run through the app's attention function: plain (SDPA), full capture, lazy capture.

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

from model import ModelConfig, Recorder, Transformer
from model.core.attention import RecordShape
from model.runtime import configure_cpu

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
        run_capture = lambda s=src, t=tgt: model(s, t, Recorder(capture=True))
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


def _gpt2_call(pipe, ids, recorder):
    from model.hf.interface import call_context

    with call_context(recorder, pipe.specs, {"decoder": torch.ones_like(ids, dtype=torch.bool)}), \
            torch.inference_mode():
        return pipe.model(input_ids=ids, use_cache=False)


def bench_gpt2_small(lengths, repeats: int) -> list[dict]:
    """Plain / full capture / lazy capture forwards of a GPT-2-small-shaped model, interleaved, medians."""
    from benchmarks.gpt2small import gpt2_small
    from model import estimate_bytes, load
    from model.capture.recorder import Recorder

    pipe = load(gpt2_small(), "cpu")
    rows = []
    for T in lengths:
        ids = torch.randint(10, 300, (1, T), generator=torch.Generator().manual_seed(T))
        n = max(2, repeats if T <= 128 else repeats // 3)
        for _ in range(2):  # warm-up: the allocator keeps the buffers of a capture for the next one
            _gpt2_call(pipe, ids, Recorder(False))
            _gpt2_call(pipe, ids, Recorder(True, lazy=True))
        fast, full, lazy, one = [], [], [], []
        for _ in range(n):
            fast.append(time_ms(lambda i=ids: _gpt2_call(pipe, i, Recorder(False))))
            if T <= 512:
                full.append(time_ms(lambda i=ids: _gpt2_call(pipe, i, Recorder(True))))
            rec = Recorder(True, lazy=True)
            lazy.append(time_ms(lambda r=rec, i=ids: _gpt2_call(pipe, i, r)))
            trace = rec.trace(None, ids)
            one.append(time_ms(lambda t=trace: t["decoder.6.self_attn"]))
        f = statistics.median(fast)
        row = {"T": T, "no_capture_ms": round(f, 1), "lazy_ms": round(statistics.median(lazy), 1),
               "lazy_ratio": round(statistics.median(lazy) / f, 2),
               "one_record_on_demand_ms": round(statistics.median(one), 1),
               "lazy_inputs_MiB": round(trace.inputs_nbytes() / 2**20, 1),
               "full_capture_estimate_MiB": round(estimate_bytes(pipe, 0, T) / 2**20, 1), "repeats": n}
        if full:
            row.update(full_capture_ms=round(statistics.median(full), 1),
                       full_ratio=round(statistics.median(full) / f, 2))
        rows.append(row)
    return rows


def _gpt2_memory_child(T: int, mode: str) -> None:
    from benchmarks.gpt2small import gpt2_small
    from model import estimate_bytes, load
    from model.capture.recorder import Recorder

    pipe = load(gpt2_small(), "cpu")
    ids = torch.randint(10, 300, (1, T), generator=torch.Generator().manual_seed(T))
    _gpt2_call(pipe, ids, Recorder(False))
    base = _proc_status_bytes("VmRSS")
    rec = Recorder(True) if mode == "full" else Recorder(True, lazy=True)
    _gpt2_call(pipe, ids, rec)
    peak = _proc_status_bytes("VmHWM")
    held = rec.trace(None, ids).nbytes() if mode == "full" else rec.trace(None, ids).inputs_nbytes()
    print(json.dumps({"rss_growth": peak - base, "held": held, "estimate": estimate_bytes(pipe, 0, T)}))


def bench_gpt2_memory(lengths) -> list[dict]:
    rows = []
    for T in lengths:
        for mode in ("full", "lazy"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_model", "--gpt2-memory-child", str(T), mode],
                                 capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"T": T, "capture": mode, "held_MiB": round(got["held"] / 2**20, 1),
                         "full_capture_estimate_MiB": round(got["estimate"] / 2**20, 1),
                         "peak_rss_growth_MiB": round(got["rss_growth"] / 2**20, 1)})
    return rows


def _peak_rss_child(T: int) -> None:
    """Run in a fresh process: print RSS growth (bytes) of one capture at length T, and the trace size."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**DEMO)).eval()
    src, tgt = make_inputs(T)
    with torch.inference_mode():
        model(src, tgt)  # allocate the fast path's working memory first
        base = _proc_status_bytes("VmRSS")
        recorder = Recorder(capture=True)
        model(src, tgt, recorder)
        trace = recorder.trace(src, tgt)
        peak = _proc_status_bytes("VmHWM")  # this process's high-water mark (ru_maxrss inherits the parent's)
    print(json.dumps({"rss_growth": peak - base, "trace_bytes": trace.nbytes()}))


def _demo_estimate(cfg: ModelConfig, T: int) -> int:
    """What a full capture of the demo model at source = target = T holds (the shapes' estimate)."""
    d, H = cfg.d_model, cfg.n_heads
    shape = RecordShape(batch=1, n_heads=H, n_kv_heads=H, tq=T, tk=T, d_k=d // H, d_v=d // H, d_query_in=d,
                        d_key_in=d, d_out=d, adjusted=False, element_size=4)
    return shape.record_bytes() * (cfg.n_encoder_layers + 2 * cfg.n_decoder_layers)


def bench_memory(lengths) -> list[dict]:
    rows = []
    cfg = ModelConfig(**DEMO)
    for T in lengths:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_model", "--memory-child", str(T)],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"T": T, "estimated_MiB": round(_demo_estimate(cfg, T) / 2**20, 1),
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
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = [" | ".join(f"{c:>14}" for c in cols)]
    lines += [" | ".join(f"{r.get(c, '—')!s:>14}" for c in cols) for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512, 1024])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ATTN_TORCH_THREADS", "1")),
                    help="torch intra-op threads (default: as the app, ATTN_TORCH_THREADS or 1)")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--gpt2-memory-child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--skip-gpt2", action="store_true", help="only the demo-sized model")
    args = ap.parse_args(argv)
    settings = configure_cpu(args.threads)  # what the app sets at start-up
    if args.memory_child:
        _peak_rss_child(args.memory_child)
        return
    if args.gpt2_memory_child:
        _gpt2_memory_child(int(args.gpt2_memory_child[0]), args.gpt2_memory_child[1])
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
    if not args.skip_gpt2:
        result["gpt2_small"] = {"latency": bench_gpt2_small([128, 512, 1024], 9 if not args.quick else 3),
                                "memory": bench_gpt2_memory([512, 1024])}
    print(f"forward, batch 1, source = target = T tokens, median ms; {settings}")
    print(table(latency))
    print("\nmemory of one capture")
    print(table(memory))
    print("\ntargets")
    for k, v in result["targets"].items():
        print(f"  {k}: {v}")
    if "gpt2_small" in result:
        print("\nGPT-2-small-shaped (12 x 12 heads, d_model 768), through the app's attention function, median ms")
        print(table(result["gpt2_small"]["latency"]))
        worst = max((r["full_ratio"] for r in result["gpt2_small"]["latency"] if "full_ratio" in r and r["T"] <= 512),
                    default=None)
        lazy_worst = max(r["lazy_ratio"] for r in result["gpt2_small"]["latency"] if r["T"] <= 512)
        print(f"  capture / no capture <= 1.5 at T <= 512: full {worst}, lazy {lazy_worst} "
              f"({'ok' if min(worst or 9, lazy_worst) <= 1.5 else 'MISSED'})")
        print("\nmemory of one capture (GPT-2-small)")
        print(table(result["gpt2_small"]["memory"]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'model.json'}")


if __name__ == "__main__":
    main()
