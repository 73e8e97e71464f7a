"""What the analyses cost: ranking every head by ablating it alone, and rollout / exact flow, on the shipped models
and the GPT-2-small-shaped one (12 x 12 heads, random weights).

    python -m benchmarks.bench_analysis     # prints a table, writes benchmarks/results/analysis.json
"""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from model import load
from model.analysis import flow, rank_heads, rollout
from model.runtime import configure_cpu

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
SHIPPED = {"dates": "Saturday, November 21, 2026",
           "induction": "cat red box tree sun moon cat red box tree sun moon"}


def ranking_row(label: str, pipe, res) -> dict:
    table, seconds = rank_heads(pipe, res, "zero")
    top = table.iloc[0]
    return {"model": label, "heads": len(table), "T": len(res.target.ids if res.target is not None else res.source.ids),
            "seconds": round(seconds, 2), "ms_per_head": round(1000 * seconds / len(table), 1),
            "top_head": f"{top['attention']} head {int(top['head'])}", "top_mean_kl": round(float(top["mean_kl"]), 4)}


def self_weights(res, stack: str) -> list[np.ndarray]:
    names = [n for n in res.trace if n.startswith(stack) and n.endswith("self_attn")]
    return [np.asarray(res.trace[n].numpy().weights)[0] for n in names]


def timed(fn) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    settings = configure_cpu()
    rankings, paths = [], []
    for name, text in SHIPPED.items():
        path = ROOT / "checkpoints" / name
        if not (path / "config.json").is_file():
            continue
        pipe = load(path, "cpu")
        rankings.append(ranking_row(f"checkpoints/{name}", pipe, pipe.run(text)))
        stack = "encoder" if pipe.info.has_encoder else "decoder"
        w = self_weights(pipe.run(text), stack)
        T = w[0].shape[-1]
        _, r_s = timed(lambda w=w: rollout(w))
        _, f_s = timed(lambda w=w: flow(w))
        paths.append({"model": f"checkpoints/{name}", "layers": len(w), "T": T, "rollout_ms": round(1000 * r_s, 2),
                      "flow_matrix_s": round(f_s, 3)})
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import gpt2_small, text_of_tokens

    gpath = gpt2_small()
    pipe = load(gpath, "cpu")
    tok = Tokenizer.from_file(str(gpath / "tokenizer.json"))
    for T in (32, 128):
        res = pipe.run(text_of_tokens(tok, T), mode="lazy" if T > 64 else "full")
        rankings.append(ranking_row(f"GPT-2-small-shaped, T = {T}", pipe, res))
    for T in (32, 64):
        w = self_weights(pipe.run(text_of_tokens(tok, T)), "decoder")
        _, r_s = timed(lambda w=w: rollout(w))
        row = {"model": "GPT-2-small-shaped", "layers": len(w), "T": T, "rollout_ms": round(1000 * r_s, 2)}
        if T == 32:
            _, f_s = timed(lambda w=w: flow(w))
            row["flow_matrix_s"] = round(f_s, 3)
        else:
            _, f_s = timed(lambda w=w, T=T: flow(w, outputs=[T - 1]))
            row["flow_one_row_s"] = round(f_s, 3)
        paths.append(row)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), **settings}, "rank_heads": rankings, "rollout_flow": paths}
    print("rank every head by ablating it alone (zero ablation, one batched pass per attention)")
    for r in rankings:
        print(f"  {r['model']:<34} {r['heads']:>4} heads, T = {r['T']:>4}: {r['seconds']:>7.2f} s "
              f"({r['ms_per_head']} ms per head); top: {r['top_head']} (mean KL {r['top_mean_kl']})")
    print("rollout and exact attention flow (self-attention, heads averaged)")
    for r in paths:
        flow_text = (f"flow matrix {r['flow_matrix_s']} s" if "flow_matrix_s" in r else
                     f"flow of one output row {r['flow_one_row_s']} s")
        print(f"  {r['model']:<34} {r['layers']:>2} layers, T = {r['T']:>3}: rollout {r['rollout_ms']} ms, {flow_text}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "analysis.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'analysis.json'}")


if __name__ == "__main__":
    main()
