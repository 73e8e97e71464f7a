"""Decoding, step by step: the token produced, its probability, the alternatives, and the attention row behind it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .heatmap import WEIGHT_SCALE, esc, figure


def top_alternatives(probs: np.ndarray, id_to_token, k: int = 5) -> pd.DataFrame:
    """The k most probable next tokens in one position's distribution (V,) (the call's own probabilities)."""
    p = np.asarray(probs)
    ids = np.argsort(-p, kind="stable")[:k]
    return pd.DataFrame({"rank": np.arange(1, len(ids) + 1), "token": [id_to_token(int(i)) for i in ids],
                         "id": ids, "probability": p[ids]})


def cross_rows(weights: np.ndarray, step: int) -> np.ndarray:
    """(H, Tq, S) weights of one attention -> (H + 1, S): each head's row at ``step``, then their mean (display
    arithmetic)."""
    rows = np.asarray(weights)[:, step, :]
    return np.concatenate([rows, rows.mean(0, keepdims=True)], 0).astype(np.float32)


def cross_row_figure(weights: np.ndarray, step: int, key_labels: Sequence[str], produced: str, layer: int,
                     what: str = "cross-attention", key_title: str = "source token (key)") -> go.Figure:
    """Heads x keys: which tokens the decoder looked at when it produced this token (every label escaped)."""
    rows = cross_rows(weights, step)
    H = rows.shape[0] - 1
    yl = [f"head {h}" for h in range(H)] + ["mean of heads (display)"]
    xl = list(key_labels)[: rows.shape[1]]
    data = [dict(type="heatmap", z=rows, x=xl, y=yl, colorscale=WEIGHT_SCALE, zmin=0, zmax=1,
                 colorbar={"title": {"text": "weight"}, "thickness": 12},
                 hovertemplate="%{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>")]
    return figure(data, dict(height=int(140 + 28 * (H + 1)), margin={"l": 10, "r": 10, "t": 50, "b": 10},
                             title={"text": f"{esc(what)}, layer {layer}, while producing {esc(produced)}", "x": 0},
                             xaxis={"type": "category", "title": {"text": key_title}},
                             yaxis={"type": "category", "autorange": "reversed"}))


def alternatives_figure(table: pd.DataFrame) -> go.Figure:
    """Bar chart of the top alternatives."""
    labels = [f"#{r}: {esc(t)}" for r, t in zip(table["rank"], table["token"], strict=True)]
    data = [dict(type="bar", x=table["probability"].to_numpy(np.float32), y=labels, orientation="h",
                 marker_color="#21918c", hovertemplate="%{y}<br>p = %{x:.4f}<extra></extra>")]
    return figure(data, dict(height=60 + 30 * len(table), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                             title={"text": "top alternatives (this call's probs)", "x": 0},
                             xaxis={"range": [0, 1], "title": {"text": "probability"}},
                             yaxis={"type": "category", "autorange": "reversed"}))
