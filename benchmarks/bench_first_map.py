"""The first map after a new input, in the server's own process, against the uncaptured forward of the same input in
the same process; and what one call keeps of its logits.

- first map: what the server computes before a new input's first map can be drawn: the app's traced call (ui/
  tracing.py's options: the capture budget, statistics left for later) and the canvas part of the first map (the
  overview of decoder.0.self_attn), on the GPT-2-small shape (benchmarks/gpt2small.py);
- uncaptured forward: the model's own forward of the same ids, output head included, nothing recorded, on the
  same worker lane; the two are timed in turn, so that both meet the same load (target: first map <= 1.3x);
- kept logits: the bytes a call keeps of its logits at T = 8,192 on the Llama-shaped model with a 32,000-token
  vocabulary (benchmarks/llama_shaped.py; target <= 64 MB; the whole float32 logits are 1,000 MiB).

    python -m benchmarks.bench_first_map                        # writes benchmarks/results/first_map.json
    python -m benchmarks.bench_first_map --before /tmp/main     # and a checkout of main, each in its own process,
                                                                # taken in turn
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

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).resolve().parent.parent
TARGETS = {"first_map_over_uncaptured": 1.3, "kept_logits_MB": 64}
LENGTHS = (128, 512, 1024)


def child_times(root: str, model_dir: str, T: int, repeats: int) -> dict:
    """In a checkout ``root``: interleaved uncaptured forwards and first maps of one T-token text."""
    sys.path.insert(0, root)
    from benchmarks.gpt2small import text_of_tokens
    from model import load, run
    from model.call import CaptureBudget, forward
    from model.runtime import configure_cpu

    configure_cpu()
    pipe = load(model_dir, "cpu")
    text = text_of_tokens(pipe.tokenizer.hf, T)
    ids = pipe.tokenize_target(text).ids
    budget = CaptureBudget(full_bytes=256 * 2**20, record_bytes=512 * 2**20, cache_bytes=256 * 2**20)  # the app's

    def first_map():
        res = run(pipe, text, budget=budget, statistics=False)
        overview_part(res.trace, "decoder.0.self_attn", res)
        return res

    run(pipe, text, capture=False)  # warm-up: the allocator keeps its buffers, torch's kernels are loaded
    first_map()
    uncaptured, firsts, cpu = [], [], {"uncaptured": [], "first_map": []}
    res = None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = forward(pipe, None, [ids], None)[0]
        uncaptured.append(time.perf_counter() - t)
        cpu["uncaptured"].append(time.process_time() - c)
        del out
        res = None
        t, c = time.perf_counter(), time.process_time()
        res = first_map()
        firsts.append(time.perf_counter() - t)
        cpu["first_map"].append(time.process_time() - c)
    logits = res.logits
    kept = logits.nbytes() if callable(getattr(logits, "nbytes", None)) else logits.untyped_storage().nbytes()
    return {"T": T, "mode": res.mode, "uncaptured_s": [round(x, 3) for x in uncaptured],
            "first_map_s": [round(x, 3) for x in firsts],
            "uncaptured_median_s": round(statistics.median(uncaptured), 3),
            "first_map_median_s": round(statistics.median(firsts), 3),
            "ratio_of_medians": round(statistics.median(firsts) / statistics.median(uncaptured), 3),
            "ratio_of_best": round(min(firsts) / min(uncaptured), 3),
            "cpu_s": {k: [round(x, 3) for x in v] for k, v in cpu.items()},
            "cpu_ratio_of_medians": round(statistics.median(cpu["first_map"])
                                          / statistics.median(cpu["uncaptured"]), 3),
            "kept_logits_MiB": round(kept / 2**20, 2),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def overview_part(trace, name: str, res) -> None:
    """What ui/views/canvas.overview_part builds for the first map (weights), packed as the component gets it."""
    from viz import tiles
    try:
        from viz.wire import pack
    except ImportError:  # a checkout before viz/wire.py (--before): the format was in viz/tiles.py
        pack = tiles.pack

    shape = trace.shape(name)
    held = trace.overview(name, "max")
    reasons = trace.block_reasons(name)
    codes = tiles.codes_from_reasons(reasons, held.shape[1:]) if reasons else None
    tokens = list(res.target.tokens)
    part = tiles.overview_payload(held, trace.overview_pool(name), shape.tq, shape.tk, tokens, None, reasons=codes,
                                  produces=list(res.output_tokens), lo=0.0, hi=1.0, colormap="viridis",
                                  value_name="weights", title=name, heads=[str(h) for h in range(shape.n_heads)],
                                  head=0)
    pack(part)


def child_kept(root: str, model_dir: str, T: int) -> dict:
    """In a checkout ``root``: the bytes one call at T tokens keeps of its logits (Llama-shaped, 32,000 tokens)."""
    sys.path.insert(0, root)
    from benchmarks.gpt2small import text_of_tokens
    from model import load, run
    from model.runtime import configure_cpu

    configure_cpu()
    pipe = load(model_dir, "cpu")
    res = run(pipe, text_of_tokens(pipe.tokenizer.hf, T), capture=False)
    logits = res.logits
    kept = logits.nbytes() if callable(getattr(logits, "nbytes", None)) else logits.untyped_storage().nbytes()
    T_, V = logits.shape
    return {"T": int(T_), "V": int(V), "kept_logits_MiB": round(kept / 2**20, 1),
            "whole_float32_MiB": round(T_ * V * 4 / 2**20, 1)}


def _child(kind: str, root: Path, model_dir: Path, T: int, repeats: int = 3) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(root), str(model_dir), str(T),
           str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=True,
                         env={**os.environ, "PYTHONPATH": str(root)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--child", nargs=5)
    ap.add_argument("--before", type=Path, default=None, help="a checkout of another commit, measured in turn")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lengths", type=int, nargs="*", default=list(LENGTHS))
    args = ap.parse_args(argv)
    if args.child:
        kind, root, model_dir, T, repeats = args.child
        result = child_times(root, model_dir, int(T), int(repeats)) if kind == "times" else \
            child_kept(root, model_dir, int(T))
        print(json.dumps(result))
        return
    from benchmarks.gpt2small import gpt2_small
    from benchmarks.llama_shaped import llama_shaped

    gpt2, llama = gpt2_small(), llama_shaped("llama-4x8-d512")
    roots = {"after": HERE, **({"before": args.before.resolve()} if args.before else {})}
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "targets": TARGETS,
              "runs": {label: {"first_map": [], "kept": None} for label in roots}}
    for T in args.lengths:
        for label, root in roots.items():  # in turn, so that both meet the same load
            row = _child("times", root, gpt2, T, args.repeats)
            result["runs"][label]["first_map"].append(row)
            print(f"{label:>6} T={T}: uncaptured forward {row['uncaptured_median_s']} s, first map "
                  f"{row['first_map_median_s']} s (ratio {row['ratio_of_medians']}, best {row['ratio_of_best']}, "
                  f"CPU time {row['cpu_ratio_of_medians']}; target <= {TARGETS['first_map_over_uncaptured']}), "
                  f"logits kept {row['kept_logits_MiB']} MiB, "
                  f"load {row['load_average_1min']}", flush=True)
    for label, root in roots.items():
        kept = _child("kept", root, llama, 8192)
        result["runs"][label]["kept"] = kept
        print(f"{label:>6} T={kept['T']} V={kept['V']}: logits kept {kept['kept_logits_MiB']} MiB (the whole float32: "
              f"{kept['whole_float32_MiB']} MiB; target <= {TARGETS['kept_logits_MB']} MB)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "first_map.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'first_map.json'}")


if __name__ == "__main__":
    main()
