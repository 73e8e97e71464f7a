"""Figures and tables of the corpus atlas: a statistic per head over a corpus (layers x heads strip), one head's
distribution over the examples, its top and bottom examples with links into the inspector, and its queries and
keys in one projection.

Pure: DataFrames and arrays from model.atlas.queries and model.analysis.projection in, Plotly figures and
DataFrames out.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from model.core.rowstats import SHARES

from .grids import click_targets, clicked_numbers
from .heatmap import WEIGHT_SCALE, esc, figure

MAX_URL_CHARS = 7_000  # longer links are not offered (proxies and servers cap a request line at about 8 kB)
QUERY_COLOUR, KEY_COLOUR = "#d95f02", "#1b9e77"
OTHER_COLOUR = "#bdbdbd"
TOKEN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                 "#7f7f7f", "#393b79", "#637939")
COLOUR_BY = ("query / key", "position", "token")


def stat_range(stat: str) -> tuple[float | None, float | None]:
    """The colour scale's range of a statistic: 0..1 for shares (comparable across runs), the data's otherwise."""
    return (0.0, 1.0) if stat in SHARES else (None, None)


def inspector_link(model: str, text: str, kind: str, layer: int, head: int, view: str,
                   base: str = "./") -> str | None:
    """The inspector's deep link for one example at one head (``?model=&text=&kind=&layer=&head=&view=``; ``view``:
    the view's slug, from the caller), relative to the app's root; None when the text makes it longer than
    MAX_URL_CHARS."""
    query = urlencode({"model": model, "text": text, "kind": kind, "layer": int(layer), "head": int(head),
                       "view": view}, quote_via=quote)
    url = f"{base}?{query}"
    return url if len(url) <= MAX_URL_CHARS else None


def summary_strip(table: pd.DataFrame, value_name: str, *, title: str = "", definition: str = "",
                  zmin: float | None = None, zmax: float | None = None,
                  selected: tuple[int, int] | None = None) -> go.Figure:
    """Layers x heads heat-strip of ``table["value"]`` (columns layer, head, value, n); a click on a cell selects that
    head (click targets' customdata = index into ``meta.cells``, (layer, head) pairs); ``selected`` is outlined."""
    layers = sorted(int(x) for x in table["layer"].unique())
    heads = sorted(int(x) for x in table["head"].unique())
    z = np.full((len(layers), len(heads)), np.nan, dtype=np.float64)
    n = np.zeros((len(layers), len(heads)), dtype=np.int64)
    li = {layer: i for i, layer in enumerate(layers)}
    hi = {h: i for i, h in enumerate(heads)}
    for layer, head, value, count in zip(table["layer"], table["head"], table["value"], table["n"], strict=True):
        r, c = li[int(layer)], hi[int(head)]
        z[r, c] = np.nan if value is None or pd.isna(value) else float(value)
        n[r, c] = int(count)
    data = [dict(type="heatmap", z=z, x=[str(h) for h in heads], y=[str(layer) for layer in layers],
                 colorscale=WEIGHT_SCALE, zmin=zmin, zmax=zmax, hoverinfo="skip", hoverongaps=False,
                 colorbar={"title": {"text": esc(value_name)}, "thickness": 12}, xgap=2, ygap=2)]
    cells, xs, ys, texts = [], [], [], []
    for layer in layers:
        for head in heads:
            r, c = li[layer], hi[head]
            value = "n/a" if not np.isfinite(z[r, c]) else f"{z[r, c]:.4f}"
            cells.append([layer, head])
            xs.append(str(head))
            ys.append(str(layer))
            texts.append(f"layer {layer}, head {head}<br>{esc(value_name)}: {value}<br>over {n[r, c]:,} examples"
                         "<br>click for its examples")
    data.append(click_targets(xs, ys, list(range(len(cells))), texts))
    shapes = []
    if selected is not None and selected[0] in li and selected[1] in hi:
        r, c = li[selected[0]], hi[selected[1]]
        shapes.append({"type": "rect", "xref": "x", "yref": "y", "x0": c - 0.5, "x1": c + 0.5, "y0": r - 0.5,
                       "y1": r + 0.5, "line": {"color": "#ff1744", "width": 3}})
    return figure(data, dict(
        title={"text": esc(title) + (f"<br><sup>{esc(definition)}</sup>" if definition else ""), "x": 0},
        height=int(170 + 34 * len(layers)), margin={"l": 60, "r": 10, "t": 70 if definition else 40, "b": 50},
        xaxis={"type": "category", "title": {"text": "head"}, "fixedrange": True},
        yaxis={"type": "category", "title": {"text": "layer"}, "autorange": "reversed", "fixedrange": True},
        plot_bgcolor="#9e9e9e", hoverdistance=-1, meta={"cells": cells}, clickmode="event+select", dragmode=False,
        shapes=shapes))


def distribution_figure(hist: pd.DataFrame, value_name: str, *, title: str = "",
                        marks: Sequence[tuple[str, float]] = ()) -> go.Figure:
    """A histogram (columns lo, hi, count) as bars; ``marks``: vertical lines (label, value), e.g. the mean."""
    lo, hi, count = (hist[c].to_numpy() for c in ("lo", "hi", "count"))
    centres = (lo + hi) / 2
    text = [f"{a:.4g} – {b:.4g}: {int(c):,} examples" for a, b, c in zip(lo, hi, count, strict=True)]
    data = [dict(type="bar", x=centres, y=count, width=(hi - lo) if len(lo) else None, marker_color="#3b528b",
                 text=text, textposition="none", hovertemplate="%{text}<extra></extra>", name="examples")]
    shapes, notes = [], []
    for i, (label, value) in enumerate(marks):
        if value is None or not np.isfinite(value):
            continue
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": value, "x1": value, "y0": 0, "y1": 1,
                       "line": {"color": "#d95f02", "width": 2, "dash": "dash"}})
        notes.append({"x": value, "y": 1.0 + 0.07 * i, "xref": "x", "yref": "paper", "yanchor": "bottom",
                      "showarrow": False, "text": f"{esc(label)} {value:.3g}", "font": {"color": "#d95f02"}})
    return figure(data, dict(
        title={"text": esc(title), "x": 0}, height=340, margin={"l": 60, "r": 10, "t": 70, "b": 50}, bargap=0.05,
        xaxis={"title": {"text": esc(value_name)}}, yaxis={"title": {"text": "examples"}, "rangemode": "tozero"},
        shapes=shapes, annotations=notes, showlegend=False))


def extremes_table(rows: pd.DataFrame, *, model: str, kind: str, layer: int, head: int, view: str,
                   value_name: str = "value") -> pd.DataFrame:
    """Rows from model.atlas.queries.extremes -> a table for the page: example, value, tokens, the text's start, a
    link that opens the example in the inspector at this head in ``view`` (a view's slug; None, with a note, when
    the text is too long for a link)."""
    links, notes, previews = [], [], []
    for text, chars, preview in zip(rows["text"], rows["chars"], rows["preview"], strict=True):
        link = None if text is None or pd.isna(text) else inspector_link(model, text, kind, layer, head, view)
        links.append(link)
        notes.append("" if link is not None else f"{int(chars):,} characters: too long for a link")
        previews.append(str(preview) + ("…" if int(chars) > len(str(preview)) else ""))
    return pd.DataFrame({"example": rows["example_id"].astype(int), value_name: rows["value"].astype(float),
                         "tokens": rows["n_tokens"].astype(int), "text": previews, "inspector": links,
                         "note": notes})


def qk_scatter(points: np.ndarray, meta: pd.DataFrame, *, colour_by: str = "query / key", title: str = "",
               explained: Sequence[float] = ()) -> go.Figure:
    """Queries and keys of one head in a 2-D projection; ``meta`` (example_id, role, position, token) per point.
    Queries are circles, keys diamonds; colour by role, position or token (the 12 most frequent, the rest grey).
    Each point's customdata is [example_id, position, role index (0 = q, 1 = k)]."""
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour_by must be one of {COLOUR_BY}, got {colour_by!r}")
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    role = meta["role"].to_numpy()
    ex = meta["example_id"].to_numpy()
    pos = meta["position"].to_numpy()
    tok = meta["token"].astype(str).to_numpy()
    hover = np.array([f"{'query' if r == 'q' else 'key'} · example {int(e)} · position {int(p)} · {esc(t)}"
                      for r, e, p, t in zip(role, ex, pos, tok, strict=True)], dtype=object)
    custom = np.stack([ex, pos, (role == "k").astype(int)], axis=1).astype(int).tolist() if len(ex) else []
    symbols = np.where(role == "q", "circle", "diamond")

    def trace(mask, name, colour, **extra):
        idx = np.flatnonzero(mask)
        return dict(type="scatter", mode="markers", x=pts[idx, 0], y=pts[idx, 1], name=name,
                    marker={"size": 7, "color": colour, "symbol": symbols[idx].tolist(), "opacity": 0.8,
                            "line": {"width": 0.5, "color": "#333"}, **extra.pop("marker", {})},
                    text=hover[idx].tolist(), customdata=[custom[i] for i in idx],
                    hovertemplate="%{text}<br>click to open the example<extra></extra>", **extra)

    data = []
    if colour_by == "query / key":
        data = [trace(role == "q", "queries", QUERY_COLOUR), trace(role == "k", "keys", KEY_COLOUR)]
    elif colour_by == "position":
        data = [trace(np.ones(len(role), bool), "position", pos.tolist(), marker={
            "colorscale": WEIGHT_SCALE, "showscale": True, "colorbar": {"title": {"text": "position"},
                                                                         "thickness": 12}})]
    else:
        top = pd.Series(tok).value_counts().index[:len(TOKEN_COLOURS)].tolist()
        for i, t in enumerate(top):
            data.append(trace(tok == t, esc(t), TOKEN_COLOURS[i]))
        rest = ~np.isin(tok, top)
        if rest.any():
            data.append(trace(rest, "other tokens", OTHER_COLOUR))
    axis = [f"PC{i + 1}" + (f" ({explained[i]:.0%} of the variance)" if i < len(explained) else "") for i in range(2)]
    return figure(data, dict(
        title={"text": esc(title), "x": 0}, height=520, margin={"l": 60, "r": 10, "t": 50, "b": 50},
        xaxis={"title": {"text": axis[0]}, "zeroline": False}, yaxis={"title": {"text": axis[1]}, "zeroline": False},
        legend={"itemsizing": "constant"}, clickmode="event+select", hovermode="closest",
        dragmode="pan" if len(pts) > 2000 else "zoom"))


def clicked_point(selection) -> tuple[int, int, str] | None:
    """(example_id, position, role) of the point a click on ``qk_scatter`` selected; None if none (or anything but
    three whole numbers)."""
    custom = clicked_numbers(selection, 3)
    if custom is None:
        return None
    return custom[0], custom[1], "k" if custom[2] else "q"


__all__ = ["COLOUR_BY", "MAX_URL_CHARS", "clicked_point", "distribution_figure", "extremes_table",
           "inspector_link", "qk_scatter", "stat_range", "summary_strip"]
