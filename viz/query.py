"""One query in detail (BertViz's neuron view, carried through to V and the output)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .heatmap import figure, matrix_heatmap
from .stages import head_reasons


def query_table(rec, head: int, query: int, k_tokens: Sequence[str]) -> pd.DataFrame:
    """One row per key j for query i of one head: the captured score, scaled score, weight, and the
    sum of the elementwise products q_i * k_j (display arithmetic, which should equal the captured score)."""
    q = np.asarray(rec.q)[0, head, query]  # (d_k,)
    k = np.asarray(rec.k)[0, rec.kv_head(head)]  # (Tk, d_k): the key head this query head reads
    Tk = k.shape[0]
    reason = np.full(Tk, "", dtype=object)
    for why, forbidden in head_reasons(rec, head).items():
        reason[forbidden[query]] = why
    table = {
        "key_pos": np.arange(Tk),
        "key_token": list(k_tokens)[:Tk],
        "sum(q*k_j) (display)": (q[None, :].astype(np.float64) * k).sum(-1),
        "score q·k_j": np.asarray(rec.scores)[0, head, query],
        "scaled": np.asarray(rec.scaled)[0, head, query],
    }
    if rec.adjusted is not None:
        table["adjusted"] = np.asarray(rec.adjusted)[0, head, query]
    table.update({
        "masked": np.asarray(rec.masked)[0, head, query],
        "weight": np.asarray(rec.weights)[0, head, query],
        "masked_by": reason,
        "may_attend": reason == "",
    })
    return pd.DataFrame(table)


def query_figures(rec, head: int, query: int, q_labels: Sequence[str], k_labels: Sequence[str]
                  ) -> dict[str, go.Figure]:
    """Figures for one query: q_i, the keys, q_i * k_j, the weights, alpha_j v_j and the captured context row."""
    kv = rec.kv_head(head)
    q = np.asarray(rec.q)[0, head, query]
    k, v = np.asarray(rec.k)[0, kv], np.asarray(rec.v)[0, kv]
    w = np.asarray(rec.weights)[0, head, query]
    ctx = np.asarray(rec.context)[0, head, query]
    xl = list(k_labels)[: k.shape[0]]
    ql = list(q_labels)[query]
    figs = {
        "q": matrix_heatmap(q[None], [ql], row_title="query", value_name="q", title=f"q of query {ql}"),
        "k": matrix_heatmap(k, xl, row_title="key", value_name="k", title="keys k_j"),
        "qk": matrix_heatmap(q[None] * k, xl, row_title="key", value_name="q·k term",
                             title="q ⊙ k_j (elementwise; each row sums to the score)"),
        "av": matrix_heatmap(w[:, None] * v, xl, row_title="key", value_name="α·v term",
                             title="α_j v_j (each column sums to the context entry)"),
        "context": matrix_heatmap(ctx[None], [ql], row_title="query", value_name="context",
                                  title="context row (captured)"),
    }
    bar = dict(type="bar", x=xl, y=w.astype(np.float32), marker_color="#440154",
               hovertemplate="key %{x}<br>weight %{y:.4f}<extra></extra>")
    figs["weights"] = figure([bar], dict(
        height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10},
        title={"text": "softmax weights α_j (captured)", "x": 0},
        xaxis={"type": "category", "title": {"text": "key"}}, yaxis={"range": [0, 1], "title": {"text": "weight"}}))
    return figs


def query_strip(weights: np.ndarray, allowed: np.ndarray, k_tokens: Sequence[str], *, title: str) -> go.Figure:
    """One query's weights over every key as a line over key positions (any length: numeric axis, the token in the
    hover), masked keys left out."""
    w = np.where(np.asarray(allowed, bool), np.asarray(weights, dtype=np.float32), np.nan)
    toks = np.asarray([str(t) for t in list(k_tokens)[: len(w)]], dtype=object)
    x = np.arange(len(w))
    data = [dict(type="scattergl" if len(w) > 2000 else "scatter", mode="lines", x=x, y=w, customdata=toks,
                 line={"color": "#440154", "width": 1}, fill="tozeroy", fillcolor="rgba(68,1,84,0.25)",
                 hovertemplate="key %{x}·%{customdata}<br>weight %{y:.4f}<extra></extra>")]
    top = float(np.nanmax(w)) if np.isfinite(w).any() else 1.0
    return figure(data, dict(height=240, margin={"l": 10, "r": 10, "t": 40, "b": 10}, title={"text": title, "x": 0},
                             xaxis={"title": {"text": "key position"}, "range": [-0.5, len(w) - 0.5]},
                             yaxis={"range": [0, max(top * 1.05, 1e-6)], "title": {"text": "weight"}}))
