"""Needle in a haystack, per head: how much each later query puts on one span of the input (retrieval heads).

Computed from the trace's key columns of that span only (``trace.columns``: a lazy trace normalises them by each
row's kept log-sum-exp), so it works at any length: (H, Tq, span) values per attention, never T x T.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..capture.trace import Trace
from ..core.names import RecordName


def span_mass(trace: Trace, name: str, span: range) -> np.ndarray:
    """(H, Tq) the total weight each query puts on the key positions of ``span``."""
    return trace.columns(name, span).sum(-1)


def needle_table(trace: Trace, span: range, names: Sequence[str] | None = None) -> tuple[pd.DataFrame, float]:
    """Per attention and head (self-attention over the span's stack): over the queries after the span, the mean and
    the largest weight on it, and the mean against uniform attention over the same keys (chance = span length /
    allowed keys). Returns (table sorted by mean weight, seconds)."""
    started = time.perf_counter()
    rows = []
    for name in (names if names is not None else list(trace)):
        n = RecordName.parse(name)
        shape = trace.shape(name)
        if span.start < 0 or span.stop > shape.tk or not len(span):
            continue
        mass = span_mass(trace, name, span)  # (H, Tq)
        q_pos = np.arange(shape.tq) + (0 if n.is_cross else shape.tk - shape.tq)
        later = q_pos >= span.stop if not n.is_cross else np.ones(shape.tq, bool)
        if not later.any():
            continue
        n_keys = np.minimum(q_pos + 1, shape.tk) if not n.is_cross else np.full(shape.tq, shape.tk)
        chance = np.where(later, len(span) / np.maximum(n_keys, 1), np.nan)
        for h in range(shape.n_heads):
            m = mass[h][later]
            rows.append({"attention": name, "stack": n.stack, "layer": n.layer, "kind": n.kind, "head": h,
                         "mean_on_span": float(m.mean()), "max_on_span": float(m.max()),
                         "over_chance": float(np.nanmean(mass[h][later] / chance[later])),
                         "queries": int(later.sum())})
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values("mean_on_span", ascending=False, kind="stable").reset_index(drop=True)
    return table, time.perf_counter() - started


__all__ = ["needle_table", "span_mass"]
