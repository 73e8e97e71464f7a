"""Figures of analyses: head statistics strips, rollout and flow, comparison, ablation effects.

Pure: DataFrames and arrays from model.analysis in, Plotly figures out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .grids import click_targets
from .heatmap import WEIGHT_SCALE, attention_heatmap, esc, figure


def head_strip(table: pd.DataFrame, value: str, *, title: str = "", colorscale: str = WEIGHT_SCALE,
               zmin: float | None = None, zmax: float | None = None, hover_columns: Sequence[str] = (),
               definition: str = "", value_title: str | None = None,
               names: dict[str, str] | None = None) -> go.Figure:
    """Layers x heads heat-strip of one column of a per-head table (rows: layer, columns: head); a click on a
    cell opens that head (click targets' customdata = index into ``meta.cells``). ``value_title`` names the value
    on the colour bar and in the hover; ``names`` gives the hover columns' names (both default to the column)."""
    value_title = value_title or value
    names = names or {}
    layers = sorted(table["layer"].unique())
    heads = sorted(table["head"].unique())
    z = np.full((len(layers), len(heads)), np.nan, dtype=np.float32)
    text = np.full((len(layers), len(heads)), "", dtype=object)
    for row in table.itertuples(index=False):
        r, c = layers.index(row.layer), heads.index(row.head)
        v = getattr(row, value)
        z[r, c] = np.nan if v is None else float(v)
        extra = "".join(f"<br>{esc(names.get(col, col))} {getattr(row, col):.4f}" for col in hover_columns
                        if isinstance(getattr(row, col), (int, float, np.floating)) and np.isfinite(getattr(row, col)))
        text[r, c] = f"layer {row.layer}, head {row.head}<br>{esc(value_title)} " + (
            "n/a" if not np.isfinite(z[r, c]) else f"{z[r, c]:.4g}") + extra + "<br>click to open"
    data = [dict(type="heatmap", z=z, x=[str(h) for h in heads], y=[str(layer) for layer in layers],
                 colorscale=colorscale, zmin=zmin, zmax=zmax, hoverinfo="skip", hoverongaps=False,
                 colorbar={"title": {"text": esc(value_title)}, "thickness": 12, "tickformat": "~g"}, xgap=2,
                 ygap=2)]
    cells, xs, ys, idx, texts = [], [], [], [], []
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            cells.append([int(layer), int(head)])
            xs.append(str(head))
            ys.append(str(layer))
            idx.append(len(cells) - 1)
            texts.append(text[r, c])
    data.append(click_targets(xs, ys, idx, texts))
    return figure(data, dict(
        title={"text": esc(title) + (f"<br><sup>{esc(definition)}</sup>" if definition else ""), "x": 0},
        height=int(170 + 34 * len(layers)), margin={"l": 60, "r": 10, "t": 70 if definition else 40, "b": 50},
        xaxis={"type": "category", "title": {"text": "head"}, "fixedrange": True},
        yaxis={"type": "category", "title": {"text": "layer"}, "autorange": "reversed", "fixedrange": True},
        plot_bgcolor="#9e9e9e", hoverdistance=-1, meta={"cells": cells}, clickmode="event+select", dragmode=False))


def data_top(values: np.ndarray) -> float:
    """The largest finite value (the top of a colour scale fitted to the data), at least a tiny positive number."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return max(float(v.max()) if v.size else 1.0, 1e-9)


def matrix_map(matrix: np.ndarray, q_labels: Sequence[str], k_labels: Sequence[str], *, title: str,
               value_name: str, reasons=None) -> go.Figure:
    """A non-negative token x token matrix (rollout, flow, attribution) drawn like an attention map, its colour
    scale fitted to the data (0 to its largest value, said in the title): values that stay below 0.3 are not washed
    out on a 0..1 scale."""
    m = np.asarray(matrix, dtype=np.float32)
    top = data_top(m)
    fig = attention_heatmap(m, q_labels, k_labels, stage="weights", reasons=reasons,
                            title=f"{title}<br><sup>colour scale 0 to {top:.3g}, the largest value here</sup>",
                            value_name=value_name)
    fig.data[0].update(zmin=0.0, zmax=top)
    fig.layout.margin.t = 70
    return fig


def token_strip(values: np.ndarray, labels: Sequence[str], *, title: str, value_name: str,
                highlight: int | None = None) -> go.Figure:
    """Bars over the input tokens for one chosen token (its rollout, flow or attribution row)."""
    v = np.asarray(values, dtype=np.float32)
    colours = ["#440154"] * len(v)
    if highlight is not None and 0 <= highlight < len(v):
        colours[highlight] = "#21918c"
    data = [dict(type="bar", x=list(labels)[: len(v)], y=v, marker_color=colours,
                 hovertemplate=f"%{{x}}<br>{esc(value_name)} %{{y:.4f}}<extra></extra>")]
    return figure(data, dict(height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10}, title={"text": title, "x": 0},
                             xaxis={"type": "category", "title": {"text": "input token"}},
                             yaxis={"range": [0, data_top(v) * 1.1], "title": {"text": esc(value_name)}}))


def difference_map(diff: np.ndarray, q_labels: Sequence[str], k_labels: Sequence[str], *, title: str,
                   reasons=None) -> go.Figure:
    """A − B on aligned axes: diverging scale centred on 0, cells masked in either run hatched apart."""
    m = float(np.nanmax(np.abs(diff))) if np.size(diff) else 1.0
    fig = attention_heatmap(np.asarray(diff, dtype=np.float32), q_labels, k_labels, stage="diff",
                            reasons=reasons, title=title, value_name="A − B")
    fig.data[0].update(zmin=-max(m, 1e-6), zmax=max(m, 1e-6))
    return fig


def position_effects(tokens: Sequence[str], p_before: np.ndarray, p_after: np.ndarray, kl: np.ndarray,
                     *, title: str) -> go.Figure:
    """Per output position: the original prediction's probability before and after an ablation, and the KL;
    ``tokens``: those predictions (the x labels)."""
    xl = [f"{i}·{esc(t)}" for i, t in enumerate(tokens)]
    data = [dict(type="bar", x=xl, y=np.asarray(p_before, np.float32), name="before", marker_color="#3b528b",
                 hovertemplate="%{x}<br>p before %{y:.4f}<extra></extra>"),
            dict(type="bar", x=xl, y=np.asarray(p_after, np.float32), name="after ablation", marker_color="#fde725",
                 marker_line={"color": "#333", "width": 1}, hovertemplate="%{x}<br>p after %{y:.4f}<extra></extra>"),
            dict(type="scatter", x=xl, y=np.asarray(kl, np.float32), name="KL(before ‖ after)", yaxis="y2",
                 mode="lines+markers", line={"color": "#d95f02"}, hovertemplate="%{x}<br>KL %{y:.4f}<extra></extra>")]
    return figure(data, dict(height=340, margin={"l": 10, "r": 10, "t": 50, "b": 10}, title={"text": title, "x": 0},
                             barmode="group", legend={"orientation": "h", "y": -0.3},
                             xaxis={"type": "category", "title": {"text": "position · the original prediction there"}},
                             yaxis={"range": [0, 1], "title": {"text": "probability of the original prediction"}},
                             # an overlaying axis syncs its ticks to the left axis by default (plotly.js): KL
                             # ticks read 0.00405, 0.00809; its own round ticks instead
                             yaxis2={"overlaying": "y", "side": "right", "title": {"text": "KL (nats)"},
                                     "rangemode": "tozero", "showgrid": False, "tickmode": "auto", "nticks": 6,
                                     "tickformat": "~g"}))



def hidden_effects(tokens: Sequence[str], change: np.ndarray, cosine: np.ndarray, *, title: str) -> go.Figure:
    """Per position of a model without an output head: the relative change of its final hidden state under an
    ablation (bars) and the cosine between the states before and after (line, right axis)."""
    xl = [f"{i}·{esc(t)}" for i, t in enumerate(tokens)]
    data = [dict(type="bar", x=xl, y=np.asarray(change, np.float32), name="|Δh| / |h| (relative change)",
                 marker_color="#3b528b", hovertemplate="%{x}<br>relative change %{y:.4f}<extra></extra>"),
            dict(type="scatter", x=xl, y=np.asarray(cosine, np.float32), name="cosine(h before, h after)",
                 yaxis="y2", mode="lines+markers", line={"color": "#d95f02"},
                 hovertemplate="%{x}<br>cosine %{y:.4f}<extra></extra>")]
    low = float(np.min(cosine)) if np.size(cosine) else 0.0
    return figure(data, dict(height=340, margin={"l": 10, "r": 10, "t": 50, "b": 10}, title={"text": title, "x": 0},
                             legend={"orientation": "h", "y": -0.3},
                             xaxis={"type": "category", "title": {"text": "position"}},
                             yaxis={"title": {"text": "relative change of the hidden state"}, "rangemode": "tozero",
                                    "tickformat": "~g"},
                             yaxis2={"overlaying": "y", "side": "right", "title": {"text": "cosine"},
                                     "range": [min(low, 0.9) - 0.02, 1.005], "showgrid": False, "tickmode": "auto",
                                     "nticks": 6, "tickformat": "~g"}))
