"""What "why the model does it" costs on the GPT-2-small-shaped model (12 x 12 heads, random weights): patching every
head at T = 32 and 128 (against ranking every head by ablation, the formulation it replaces), the logit lens at
T = 32 / 128 / 512, and a knockout what-if; the shipped models for scale.

    python -m benchmarks.bench_why              # prints a table, writes benchmarks/results/why.json
    python -m benchmarks.bench_why --quick      # T = 32 only (writes why_quick.json)

The machine is shared: the load average before and after is recorded, every comparison is within one run, and at
T = 32 (and for the lens up to T = 128) the best of two interleaved rounds is kept (each round is in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from model import load, run
from model.analysis import (
                            knockout_effect,
                            knockout_spec,
                            logit_lens,
                            patch_heads,
                            rank_heads,
                            run_corrupt,
                            select_cells,
)
from model.call import intervened_outputs
from model.runtime import configure_cpu

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
ROUNDS = 2  # the cheaper measurements are repeated (interleaved) and the best kept


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def full_logits_patching(pipe, clean, corrupt, metric) -> float:
    """The same patching with the whole (T, V) logits of every patched run (what intervened_outputs gave before
    ``positions``): the formulation the head-at-the-metric-positions one is measured against."""
    started = time.perf_counter()
    for name in pipe.info.record_names:
        specs = [{"ablations": {name: {h: corrupt.contexts[name][h]}}} for h in range(pipe.info.n_heads)]
        logits = intervened_outputs(pipe, clean, specs)
        metric.value(logits[:, list(metric.positions)])
    return time.perf_counter() - started


def gpt2_rows(Ts_patch, Ts_lens, baseline: bool) -> tuple[list, list, list]:
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import gpt2_small, text_of_tokens

    path = gpt2_small()
    pipe = load(path, "cpu")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    patching, lens, knock = [], [], []
    for T in Ts_patch:
        text, other = text_of_tokens(tok, T), text_of_tokens(tok, T, shift=3)
        clean, clean_s = timed(lambda text=text: run(pipe, text, capture=False))
        corrupt, corrupt_s = timed(lambda other=other, clean=clean: run_corrupt(pipe, clean, other))
        traced = run(pipe, text, mode="lazy" if T > 64 else "full") if baseline else None
        times: dict[str, list[float]] = {"patch": [], "full": [], "rank": []}
        for _ in range(ROUNDS if T <= 32 else 1):  # interleaved rounds: the shared machine's load moves
            res = patch_heads(pipe, clean, corrupt)
            times["patch"].append(res.seconds)
            if baseline:
                times["full"].append(full_logits_patching(pipe, clean, corrupt, res.metric))
                times["rank"].append(timed(lambda traced=traced: rank_heads(pipe, traced, "zero"))[1])
        best = np.unravel_index(np.abs(res.effect["decoder masked self"]).argmax(), (12, 12))
        patch_s = min(times["patch"])
        row = {"model": "GPT-2-small-shaped", "T": T, "heads": res.n_runs, "patch_s": round(patch_s, 2),
               "ms_per_head": round(1000 * patch_s / res.n_runs, 1), "clean_run_s": round(clean_s, 2),
               "corrupt_run_s": round(corrupt_s, 2), "metric": res.metric.kind, "positions": len(res.metric.positions),
               "largest_effect": f"decoder.{best[0]}.self_attn head {best[1]}",
               "rounds_s": {k: [round(t, 2) for t in v] for k, v in times.items() if v}}
        if baseline:
            row["full_logits_patch_s"] = round(min(times["full"]), 2)
            row["rank_heads_s"] = round(min(times["rank"]), 2)
        patching.append(row)
    for T in Ts_lens:
        text = text_of_tokens(tok, T)
        hidden, run_s = timed(lambda text=text: run(pipe, text, capture=False, hidden_states=True))
        result = min((logit_lens(pipe, hidden) for _ in range(ROUNDS if T <= 128 else 1)), key=lambda r: r.seconds)
        _, row_s = timed(lambda result=result, T=T: result.row(5, T // 2))
        _, other_s = timed(lambda result=result: result.log_probs_of(17))
        lens.append({"model": "GPT-2-small-shaped", "T": T, "depths": result.n_depths,
                     "hidden_run_s": round(run_s, 2), "lens_s": round(result.seconds, 2),
                     "full_array": result.log_probs is not None, "one_row_ms": round(1000 * row_s, 1),
                     "another_token_s": round(other_s, 2)})
    for T in Ts_patch:
        traced = run(pipe, text_of_tokens(tok, T), mode="lazy" if T > 64 else "full")
        name = "decoder.5.self_attn"
        spec = knockout_spec(name, [3], select_cells(T, T, keys=[0]))
        eff = knockout_effect(pipe, traced, spec)
        _, trace_s = timed(lambda spec=spec, T=T: run(pipe, text_of_tokens(tok, T), knockouts=spec,
                                                      mode="lazy" if T > 64 else "full"))
        knock.append({"model": "GPT-2-small-shaped", "T": T, "knocked": f"{name} head 3, key column 0",
                      "what_if_s": round(eff.seconds, 2), "knocked_trace_s": round(trace_s, 2),
                      "mean_kl": round(float(eff.effect.kl.mean()), 5)})
    return patching, lens, knock


def shipped_rows() -> tuple[list, list]:
    import random

    from model.training.tasks import INDUCTION_WORDS, RepeatedSequence, repeated_sequence

    patching, knock = [], []
    pipe = load(ROOT / "checkpoints" / "induction", "cpu")
    seq = repeated_sequence(random.Random(0))
    r = random.Random(1)
    other = RepeatedSequence(noise=tuple(r.choice(INDUCTION_WORDS) for _ in seq.noise),
                             segment=tuple(r.sample(INDUCTION_WORDS, len(seq.segment))))
    clean = run(pipe, seq.text, capture=False)
    res = patch_heads(pipe, clean, run_corrupt(pipe, clean, other.text),
                      positions=list(range(seq.second.start + 1, seq.second.stop)))
    patching.append({"model": "checkpoints/induction", "T": len(clean.target.ids), "heads": res.n_runs,
                     "patch_s": round(res.seconds, 3), "ms_per_head": round(1000 * res.seconds / res.n_runs, 2),
                     "metric": "log-probability of the repeated half"})
    dates = load(ROOT / "checkpoints" / "dates", "cpu")
    traced = run(dates, "Saturday, November 21, 2026")
    S = len(traced.source.ids)
    T = len(traced.target.ids)
    spec = knockout_spec("decoder.1.cross_attn", range(4), select_cells(T, S, keys=[S - 1]))
    eff = knockout_effect(dates, traced, spec)
    knock.append({"model": "checkpoints/dates", "T": T, "knocked": "decoder.1.cross_attn all heads, the [EOS] column",
                  "what_if_s": round(eff.seconds, 4), "mean_kl": round(float(eff.effect.kl.mean()), 4)})
    return patching, knock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="T = 32 only")
    args = parser.parse_args()
    settings = configure_cpu()
    load_before = [round(x, 2) for x in os.getloadavg()]
    Ts_patch = (32,) if args.quick else (32, 128)
    Ts_lens = (32,) if args.quick else (32, 128, 512)
    patching, lens, knock = gpt2_rows(Ts_patch, Ts_lens, baseline=True)
    p2, k2 = shipped_rows()
    load_after = [round(x, 2) for x in os.getloadavg()]
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load_average_1_5_15_min_before": load_before, "load_average_after": load_after,
                          **settings},
              "patching": patching + p2, "logit_lens": lens, "knockout": knock}
    print("head patching: every head patched alone from a corrupted input (one batched pass per attention)")
    for r in patching + p2:
        extra = ""
        if "rank_heads_s" in r:
            extra = (f"; the same with full (T, V) logits {r['full_logits_patch_s']} s; ranking by ablation "
                     f"(rank_heads) {r['rank_heads_s']} s")
        print(f"  {r['model']:<24} T = {r['T']:>4}, {r['heads']:>3} heads: {r['patch_s']:>6} s "
              f"({r['ms_per_head']} ms per head){extra}")
    print("logit lens (every depth x position through the final norm and head)")
    for r in lens:
        kept = "every log-probability kept" if r["full_array"] else "top-k kept"
        print(f"  {r['model']:<24} T = {r['T']:>4}, {r['depths']} depths: run with hidden states "
              f"{r['hidden_run_s']} s, lens {r['lens_s']} s ({kept}), one row {r['one_row_ms']} ms, another token "
              f"everywhere {r['another_token_s']} s")
    print("knockout what-if (the same input again with the cells knocked out, effects per position)")
    for r in knock:
        extra = f", its trace {r['knocked_trace_s']} s" if "knocked_trace_s" in r else ""
        print(f"  {r['model']:<24} T = {r['T']:>4}, {r['knocked']}: {r['what_if_s']} s{extra} "
              f"(mean KL {r['mean_kl']})")
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after} ({os.cpu_count()} CPUs)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("why_quick.json" if args.quick else "why.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
