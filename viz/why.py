"""Figures and tables of "why the model does it": the logit lens, head patching and knockouts.

Pure: arrays and records from model.analysis in, Plotly figures and pandas tables out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .analysis import head_strip, position_effects
from .heatmap import SEPARATOR, WEIGHT_SCALE, esc, figure, token_axis

# diverging, white at 0: red = patching the head lowers the metric (toward the corrupted run), blue = it raises it
PATCH_SCALE = [[0.0, "#b2182b"], [0.17, "#ef8a62"], [0.33, "#fddbc7"], [0.5, "#f7f7f7"], [0.67, "#d1e5f0"],
               [0.83, "#67a9cf"], [1.0, "#2166ac"]]
PLOT_WIDTH = 1100  # about the pixels a chart gets in the app's wide layout (for text that must fit its cells)
CHAR_PX = 6.5  # about one character of an 11 px font
LENS_TOP = 5  # alternatives in the lens hover


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else (text[: max(chars - 1, 1)] + "…" if chars >= 2 else "")


def lens_chars(n_positions: int, width_px: int = PLOT_WIDTH) -> int:
    """Characters of text that fit a lens cell when ``n_positions`` share the chart's width; 0 below four (a token cut
    to two letters and an ellipsis says nothing: the hover has it)."""
    chars = int((width_px - 160) / max(n_positions, 1) // CHAR_PX)
    return chars if chars >= 4 else 0


def lens_cell_text(top_tokens: np.ndarray, width_px: int = PLOT_WIDTH) -> tuple[np.ndarray, int]:
    """(depths, T) top-token strings -> (what is written in each cell, characters per cell; 0 = none): each token cut
    to the cell's width, and nothing written when cells are narrower than four characters (the hover keeps it)."""
    chars = lens_chars(top_tokens.shape[1], width_px)
    if not chars:
        return np.full(top_tokens.shape, "", dtype=object), 0
    return np.vectorize(lambda t: esc(_fit(str(t), chars)), otypes=[object])(top_tokens), chars


def lens_heatmap(values: np.ndarray, top_tokens: np.ndarray, top_probs: np.ndarray, depth_labels: Sequence[str],
                 position_labels: Sequence[str], tracked: Sequence[str], *, title: str = "",
                 value_name: str = "p(final output)", width_px: int = PLOT_WIDTH) -> go.Figure:
    """The logit lens: depths down (embeddings at the top, the model's output at the bottom), positions across;
    colour = ``values`` (D, T), the probability of the tracked token (``tracked`` (T,) its label at each
    position); each cell says its most likely token (cut, or left out when cells are small), the hover the top 5.
    ``top_tokens`` / ``top_probs``: (D, T, k) labels and probabilities, most likely first."""
    v = np.asarray(values, dtype=np.float32)
    D, T = v.shape
    text, _ = lens_cell_text(np.asarray(top_tokens, dtype=object)[:, :, 0], width_px)
    k = min(LENS_TOP, top_tokens.shape[2])
    hover = np.empty((D, T), dtype=object)
    for d in range(D):
        for t in range(T):
            alts = "<br>".join(f"{i + 1}. {esc(top_tokens[d, t, i])}  {top_probs[d, t, i]:.3f}" for i in range(k))
            hover[d, t] = (f"{esc(depth_labels[d])} · position {position_labels[t]}<br>"
                           f"{esc(value_name)}: {esc(tracked[t])} {v[d, t]:.4f}<br>top {k}:<br>{alts}")
    xs, ys = list(position_labels), list(depth_labels)
    data = [dict(type="heatmap", z=v, x=xs, y=ys, customdata=hover, hovertemplate="%{customdata}<extra></extra>",
                 colorscale=WEIGHT_SCALE, zmin=0.0, zmax=1.0, xgap=1, ygap=1,
                 colorbar={"title": {"text": esc(value_name)}, "thickness": 12})]
    written = text != ""
    if written.any():  # the top tokens, dark on Viridis' light end and white on its dark end (readable on both)
        d, t = np.nonzero(written)
        data.append(dict(type="scatter", mode="text", x=[xs[i] for i in t], y=[ys[i] for i in d],
                         text=text[d, t].tolist(), hoverinfo="skip", showlegend=False,
                         textfont={"size": 10, "color": np.where(v[d, t] > 0.6, "#111111", "#ffffff").tolist()}))
    return figure(data, dict(
        title={"text": title, "x": 0}, height=int(min(1000, max(300, 170 + 34 * D))),
        margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 10},
        xaxis=token_axis(list(position_labels), "position · token there"),
        yaxis={"title": {"text": "depth (residual stream after)"}, "type": "category", "autorange": "reversed",
               "tickfont": {"size": 11}},
        plot_bgcolor="white"))


def lens_table(lens, tokens: Sequence[str], label, top: int = LENS_TOP) -> pd.DataFrame:
    """One row per (depth, position): the tracked token and its probability, and the top tokens (``label``: id ->
    readable token)."""
    D, T = lens.token_log_probs.shape
    rows = []
    depth_labels = lens.depth_labels
    for d in range(D):
        for t in range(T):
            row = {"depth": d, "after": depth_labels[d], "position": t, "token": tokens[t] if t < len(tokens) else "",
                   "tracked": label(int(lens.token_ids[t])), "p_tracked": float(np.exp(lens.token_log_probs[d, t]))}
            for i in range(min(top, lens.top_ids.shape[2])):
                row[f"top{i + 1}"] = label(int(lens.top_ids[d, t, i]))
                row[f"p_top{i + 1}"] = float(np.exp(lens.top_log_probs[d, t, i]))
            rows.append(row)
    return pd.DataFrame(rows)


def patching_strip(table: pd.DataFrame, kind: str, scale: float, *, title: str) -> go.Figure:
    """Layers x heads of one attention kind's patching effects on a diverging scale centred on 0, ``-scale..scale``
    (the same for every kind); a click opens the head (``meta.cells``)."""
    part = table[table["kind"] == kind]
    m = max(float(scale), 1e-9)
    fig = head_strip(part, "effect", title=title, colorscale=PATCH_SCALE, zmin=-m, zmax=m,
                     hover_columns=["fraction"])
    fig.data[0].update(colorbar={"title": {"text": "effect"}, "thickness": 12})
    cells = fig.layout.meta["cells"]
    if len(cells) <= 400:  # each cell's value written in it (white on the strong ends, dark in between)
        value = {(int(r.layer), int(r.head)): float(r.effect) for r in part.itertuples(index=False)}
        v = np.array([value.get((layer, head), np.nan) for layer, head in cells])
        heat, targets = fig.data[0], fig.data[1]
        text = dict(type="scatter", mode="text", x=[str(h) for _, h in cells], y=[str(layer) for layer, _ in cells],
                    text=[f"{x:.2g}" if np.isfinite(x) else "" for x in v], hoverinfo="skip", showlegend=False,
                    customdata=[[i] for i in range(len(cells))],
                    textfont={"size": 10 if len(cells) > 48 else 12,
                              "color": np.where(np.abs(v) > 0.66 * m, "#ffffff", "#222222").tolist()})
        fig = go.Figure({"data": [heat.to_plotly_json(), text, targets.to_plotly_json()],
                         "layout": fig.layout.to_plotly_json()}, _validate=False)
    return fig


def position_patching(effect: np.ndarray, labels: Sequence[str], metric_positions: Sequence[int], *,
                      title: str) -> go.Figure:
    """Per query position: the metric's change when one head is patched at that position only (bars diverging around
    0; the positions the metric reads are outlined)."""
    e = np.asarray(effect, dtype=np.float32)
    m = max(float(np.abs(e).max(initial=0)), 1e-9)
    read = set(int(p) for p in metric_positions)
    xl = list(labels)[: len(e)]
    data = [dict(type="bar", x=xl, y=e, marker={"color": e, "colorscale": PATCH_SCALE, "cmin": -m, "cmax": m,
                                                   "line": {"color": ["#222" if i in read else "rgba(0,0,0,0)"
                                                                      for i in range(len(e))], "width": 1.5}},
                 hovertemplate="%{x}<br>effect %{y:.4f}<extra></extra>")]
    return figure(data, dict(height=320, margin={"l": 10, "r": 10, "t": 50, "b": 10}, title={"text": title, "x": 0},
                             xaxis={"type": "category", "title": {"text": "query position patched"}},
                             yaxis={"title": {"text": "metric change"}, "zeroline": True}))


def knockout_effects(tokens: Sequence[str], p_before, p_after, kl, *, title: str) -> go.Figure:
    """Per output position: the original prediction's probability before and after the knockout, and the KL."""
    fig = position_effects(tokens, p_before, p_after, kl, title=title)
    fig.data[1].update(name="after knockout")
    return fig


def position_labels(tokens: Sequence[str]) -> list[str]:
    return [f"{i}{SEPARATOR}{esc(t)}" for i, t in enumerate(tokens)]


__all__ = ["PATCH_SCALE", "knockout_effects", "lens_cell_text", "lens_chars", "lens_heatmap", "lens_table",
           "patching_strip", "position_labels", "position_patching"]
