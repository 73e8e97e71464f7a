"""Small multiples: all heads of one layer, and layers x heads for one attention kind; click a thumbnail to open it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from .heatmap import BACKGROUND, GRID_MAX_TOKENS, WEIGHT_SCALE, figure, token_labels


def grid_is_readable(n_queries: int, n_keys: int) -> bool:
    """Grids stay readable and light only for short sequences."""
    return max(n_queries, n_keys) <= GRID_MAX_TOKENS


def thumbnail_grid(weights: np.ndarray, q_tokens: Sequence[str], k_tokens: Sequence[str], *,
                   cells: Sequence[tuple[int, int]], cols: int, allowed: np.ndarray | None = None,
                   row_names: Sequence[str] | None = None, title: str = "", show_ticks: bool | None = None
                   ) -> go.Figure:
    """(N, Tq, Tk) weights -> a grid of N heatmaps, ``cols`` per row, sharing one 0..1 colour scale.

    ``cells[n]`` names thumbnail n as (layer, head); trace 2n is its heatmap and trace 2n + 1 its click
    targets (invisible markers: Plotly cannot select heatmap cells); ``layout.meta["cells"]`` maps traces to cells.
    """
    w = np.asarray(weights, dtype=np.float32)
    N, Tq, Tk = w.shape
    C = max(1, min(cols, N))
    R = -(-N // C)
    if allowed is not None:
        w = np.where(np.broadcast_to(allowed, w.shape), w, np.float32(np.nan)).astype(np.float32)
    yl, xl = token_labels(q_tokens)[:Tq], token_labels(k_tokens)[:Tk]
    show_ticks = (max(Tq, Tk) <= 16 and C <= 4) if show_ticks is None else show_ticks
    cells = list(cells)
    # pixels per row: a label strip above each thumbnail, the thumbnail, room for tick labels below it
    label, thumb, below = 20, (230 if show_ticks else 90), (70 if show_ticks else 6)
    row_px = label + thumb + below
    plot_h = R * row_px
    gap_x = 0.03
    width, height = (1 - gap_x * (C - 1)) / C, thumb / plot_h
    data: list[dict] = []
    layout: dict = {}
    meta_cells, annotations = [], []
    # click targets: a few points spread over each thumbnail (on existing categories, so the axes stay categorical)
    ti = np.unique(np.linspace(0, Tq - 1, min(Tq, 4)).round().astype(int))
    tj = np.unique(np.linspace(0, Tk - 1, min(Tk, 4)).round().astype(int))
    px = [xl[j] for _ in ti for j in tj]
    py = [yl[i] for i in ti for _ in tj]
    for idx, cell in enumerate(cells[:N]):
        r, c = divmod(idx, C)
        ax = "" if idx == 0 else str(idx + 1)
        name = _cell_name(cell, row_names)
        data.append(dict(
            type="heatmap", z=w[idx], x=xl, y=yl, xaxis=f"x{ax}", yaxis=f"y{ax}", colorscale=WEIGHT_SCALE,
            zmin=0, zmax=1,
            showscale=(idx == 0), colorbar={"title": {"text": "weight"}, "thickness": 12}, hoverongaps=False,
            hovertemplate=f"{name}<br>query %{{y}}<br>key %{{x}}<br>weight %{{z:.4f}}<extra></extra>"))
        data.append(dict(
            type="scatter", x=px, y=py, xaxis=f"x{ax}", yaxis=f"y{ax}", mode="markers", showlegend=False,
            marker={"size": 28, "opacity": 0.01, "color": "white"},
            hovertemplate=f"{name}: click to open<extra></extra>"))
        meta_cells += [list(cell), list(cell)]
        x0, y1 = c * (width + gap_x), 1 - (r * row_px + label) / plot_h
        annotations.append({"text": name, "x": x0 + width / 2, "y": min(1.0, y1), "xref": "paper",
                            "yref": "paper", "yanchor": "bottom", "showarrow": False, "font": {"size": 11},
                            "yshift": 1})
        layout[f"xaxis{ax}"] = {"domain": [max(0.0, x0), min(1.0, x0 + width)], "type": "category", "showgrid": False,
                                "showticklabels": show_ticks, "anchor": f"y{ax}", "tickfont": {"size": 9}, "ticks": "",
                                "range": [-0.5, Tk - 0.5], "fixedrange": True}
        layout[f"yaxis{ax}"] = {"domain": [max(0.0, y1 - height), min(1.0, y1)], "type": "category", "showgrid": False,
                                "showticklabels": show_ticks and c == 0, "anchor": f"x{ax}", "fixedrange": True,
                                "ticks": "",
                                "range": [Tq - 0.5, -0.5], "tickfont": {"size": 9}}
    return figure(data, dict(title={"text": title, "x": 0}, height=int((60 if title else 20) + plot_h),
                             annotations=annotations,
                             margin={"l": 90 if show_ticks else 10, "r": 10, "t": 50 if title else 10, "b": 10},
                             plot_bgcolor=BACKGROUND,
                             meta={"cells": meta_cells}, clickmode="event+select", dragmode=False, **layout))


def _cell_name(cell: tuple[int, int], row_names: Sequence[str] | None) -> str:
    r, c = cell
    return f"{row_names[r] if row_names else f'layer {r}'}, head {c}"


def clicked_cell(selection, cells: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The (layer, head) a click on a ``thumbnail_grid`` selected, from Streamlit's selection state; None if none."""
    try:
        points = selection["selection"]["points"]
    except (KeyError, TypeError):
        return None
    if not points:
        return None
    curve = points[0].get("curve_number")
    if curve is None or not 0 <= int(curve) // 2 < len(cells):
        return None
    r, c = cells[int(curve) // 2]
    return int(r), int(c)
