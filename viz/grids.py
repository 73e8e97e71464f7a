"""Small multiples: all heads of one layer, and layers x heads; a click anywhere on a thumbnail opens that head.

Plotly cannot select heatmap cells, so each figure carries one invisible scatter trace of click targets (its
``customdata`` names the thumbnail) and ``hoverdistance = -1``: a click anywhere picks the nearest target, which
belongs to the thumbnail under the pointer. Short sequences get one target per cell, whose hover gives the value.

Two renderings: ``thumbnail_grid`` draws exact weights as heatmaps (short sequences, a few heads);
``overview_mosaic`` draws max-pooled uint8 thumbnails of any number of heads as one palette PNG (well under
1 byte per thumbnail cell), for 144 heads at T = 1024.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .heatmap import BACKGROUND, GRID_MAX_TOKENS, MASK_COLOUR, SCORE_SCALE, STAGE_NAMES, WEIGHT_SCALE, esc, figure

PER_CELL_TARGETS = 20_000  # up to this many cells in a grid, every cell is a click target with its value
COARSE_TARGETS = 6  # otherwise a 6 x 6 lattice of targets per thumbnail


def grid_is_readable(n_queries: int, n_keys: int) -> bool:
    """Exact-weight grids only for short sequences; longer ones use pooled overviews."""
    return max(n_queries, n_keys) <= GRID_MAX_TOKENS


def _cell_name(cell: tuple[int, int], row_names: Sequence[str] | None) -> str:
    r, c = cell
    return f"{row_names[r] if row_names else f'layer {r}'}, head {c}"


def click_targets(centres_x, centres_y, idx, text, xaxis="x", yaxis="y", suffix: str = "") -> dict:
    return dict(type="scatter", x=centres_x, y=centres_y, mode="markers", xaxis=xaxis, yaxis=yaxis,
                marker={"size": 18, "opacity": 0.0, "color": "white", "symbol": "square"},
                customdata=[[int(i)] for i in idx], text=text, hovertemplate=f"%{{text}}{suffix}<extra></extra>",
                showlegend=False, name="click targets")


def _thumb_ticks(labels: Sequence[str], most: int) -> tuple[list[int], list[str]]:
    """At most ``most`` evenly spaced tick positions and their labels (cut to 12 characters)."""
    n = len(labels)
    step = max(1, -(-n // most))
    idx = list(range(0, n, step))
    return idx, [lab if len(lab) <= 12 else lab[:11] + "…" for lab in (labels[i] for i in idx)]


def grid_colours(values: np.ndarray, stage: str) -> dict:
    """One colour scale for every thumbnail of a grid: weights Viridis 0..1; any score stage diverging around 0,
    symmetric over the finite values of all the thumbnails together."""
    if stage == "weights":
        return {"colorscale": WEIGHT_SCALE, "zmin": 0.0, "zmax": 1.0}
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    m = float(np.abs(finite).max()) if finite.size else 1.0
    m = m if m > 0 else 1.0
    return {"colorscale": SCORE_SCALE, "zmin": -m, "zmax": m, "zmid": 0.0}


def thumbnail_grid(values: np.ndarray, q_labels: Sequence[str], k_labels: Sequence[str], *,
                   cells: Sequence[tuple[int, int]], cols: int, allowed: np.ndarray | None = None,
                   row_names: Sequence[str] | None = None, title: str = "", show_ticks: bool | None = None,
                   stage: str = "weights", value_name: str | None = None,
                   panel_titles: Sequence[str] | None = None) -> go.Figure:
    """(N, Tq, Tk) one stage of N heads -> a grid of N heatmaps, ``cols`` per row, on one colour scale (weights
    0..1; scores diverging, symmetric over every thumbnail). Cells stay square (each panel's y axis is anchored to
    its x axis); tick labels are thinned to a dozen per axis. Masked cells (``allowed`` False) are grey.

    ``cells[n]`` names thumbnail n as (layer, head); its title is ``panel_titles[n]`` (default "head h"), centred
    on its panel; the hover names it in full (``row_names``). The last trace of each panel holds its click targets,
    whose ``customdata`` is the thumbnail's index (see ``clicked_cell``).
    """
    w = np.asarray(values, dtype=np.float32)
    N, Tq, Tk = w.shape
    C = max(1, min(cols, N))
    R = -(-N // C)
    if allowed is not None:
        w = np.where(np.broadcast_to(allowed, w.shape), w, np.float32(np.nan)).astype(np.float32)
    w = np.where(np.isfinite(w), w, np.float32(np.nan))  # -inf (masked scores) is drawn as masked
    value_name = value_name or STAGE_NAMES.get(stage, stage)
    colours = grid_colours(w, stage)
    yl, xl = list(q_labels)[:Tq], list(k_labels)[:Tk]
    show_ticks = (max(Tq, Tk) <= GRID_MAX_TOKENS) if show_ticks is None else show_ticks
    cells = list(cells)
    titles = list(panel_titles) if panel_titles is not None else [f"head {c[1]}" for c in cells]
    # pixels per row of panels: the title strip, the panel (its width decides: cells stay square), tick labels below
    label, thumb, below = 22, (190 if C <= 4 else 130) if show_ticks else (110 if C <= 4 else 80), \
        (64 if show_ticks else 6)
    row_px = label + thumb + below
    plot_h = R * row_px
    gap_x = 0.035 if show_ticks else 0.02
    width, height = (1 - gap_x * (C - 1)) / C, thumb / plot_h
    xt, xtt = _thumb_ticks(xl, 12)
    yt, ytt = _thumb_ticks(yl, 12)
    data: list[dict] = []
    layout: dict = {}
    annotations = []
    per_cell = N * Tq * Tk <= PER_CELL_TARGETS
    for idx, cell in enumerate(cells[:N]):
        r, c = divmod(idx, C)
        ax = "" if idx == 0 else str(idx + 1)
        name = esc(_cell_name(cell, row_names))
        data.append(dict(
            type="heatmap", z=w[idx], x=list(range(Tk)), y=list(range(Tq)), xaxis=f"x{ax}", yaxis=f"y{ax}",
            showscale=(idx == 0), colorbar={"title": {"text": esc(value_name)}, "thickness": 12, "len": min(
                1.0, max(0.3, 300 / max(plot_h, 1))), "y": 1, "yanchor": "top"},
            hoverongaps=False, hoverinfo="skip", **colours))
        x0, y1 = c * (width + gap_x), 1 - (r * row_px + label) / plot_h
        annotations.append({"text": esc(titles[idx]) if idx < len(titles) else "", "x": x0 + width / 2,
                            "y": min(1.0, y1), "xref": "paper", "yref": "paper", "xanchor": "center",
                            "yanchor": "bottom", "showarrow": False, "font": {"size": 12}, "yshift": 2})
        # square cells: the y axis keeps the x axis's scale and the panel sticks to the top of its box, under its
        # title (a wide box centres the panel, and the title with it)
        layout[f"xaxis{ax}"] = {"domain": [max(0.0, x0), min(1.0, x0 + width)], "showgrid": False,
                                "showticklabels": show_ticks, "anchor": f"y{ax}", "tickfont": {"size": 9},
                                "ticks": "", "range": [-0.5, Tk - 0.5], "fixedrange": True, "zeroline": False,
                                "tickmode": "array", "tickvals": xt, "ticktext": xtt, "tickangle": -90,
                                "constrain": "domain", "constraintoward": "center"}
        layout[f"yaxis{ax}"] = {"domain": [max(0.0, y1 - height), min(1.0, y1)], "showgrid": False,
                                "showticklabels": show_ticks and c == 0, "anchor": f"x{ax}", "fixedrange": True,
                                "ticks": "", "range": [Tq - 0.5, -0.5], "tickfont": {"size": 9}, "zeroline": False,
                                "tickmode": "array", "tickvals": yt, "ticktext": ytt,
                                "scaleanchor": f"x{ax}", "scaleratio": 1, "constrain": "domain",
                                "constraintoward": "top"}
        if per_cell:
            qq, kk = np.meshgrid(np.arange(Tq), np.arange(Tk), indexing="ij")
            vals = w[idx][qq, kk]
            pts = [(float(kk[i, j]), float(qq[i, j]),
                    f"{name}<br>query {yl[qq[i, j]]}<br>key {xl[kk[i, j]]}<br>"
                    + ("masked" if np.isnan(vals[i, j]) else f"{esc(value_name)} {vals[i, j]:.4f}")
                    + "<br>click to open")
                   for i in range(Tq) for j in range(Tk)]
        else:
            gy = np.linspace(0, Tq - 1, min(Tq, COARSE_TARGETS))
            gx = np.linspace(0, Tk - 1, min(Tk, COARSE_TARGETS))
            pts = [(float(x), float(y), f"{name}: click to open") for y in gy for x in gx]
        # one trace of targets per thumbnail's axes: customdata carries the thumbnail index
        data.append(click_targets([p[0] for p in pts], [p[1] for p in pts], [idx] * len(pts), [p[2] for p in pts],
                             f"x{ax}", f"y{ax}"))
    return figure(data, dict(title={"text": title, "x": 0}, height=int((60 if title else 20) + plot_h),
                             annotations=annotations, hoverdistance=-1,
                             margin={"l": 90 if show_ticks else 10, "r": 10, "t": 50 if title else 10, "b": 10},
                             plot_bgcolor=BACKGROUND, meta={"cells": [list(c) for c in cells[:N]], "stage": stage},
                             clickmode="event+select", dragmode=False, **layout))


_PALETTE_CACHE: dict[str, bytes] = {}
MASKED, BACKGROUND_INDEX = 254, 255  # palette indices of masked cells and of the gaps between thumbnails


def _palette() -> bytes:
    """256 RGB entries: Viridis for weight levels 0..253, the mask grey at 254, the background (transparent in the
    PNG) at 255."""
    if "v" not in _PALETTE_CACHE:
        colours = sample_colorscale(WEIGHT_SCALE, [i / 253 for i in range(254)], colortype="tuple")
        rgb = [tuple(int(round(ch * 255)) for ch in col) for col in colours]
        grey = tuple(int(MASK_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
        _PALETTE_CACHE["v"] = bytes(v for col in rgb + [grey, (255, 255, 255)] for v in col)
    return _PALETTE_CACHE["v"]


def _levels(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail -> palette indices: uint8 overviews (255 = weight 1) rescaled to 0..253; float weights in 0..1
    to 0..253; NaN (masked) to MASKED."""
    a = np.asarray(thumb)
    if a.dtype == np.uint8:
        return np.round(a.astype(np.float32) * (253 / 255)).astype(np.uint8)
    f = a.astype(np.float32)
    out = np.round(np.clip(np.nan_to_num(f, nan=0.0), 0, 1) * 253).astype(np.uint8)
    out[np.isnan(f)] = MASKED
    return out


def mosaic_png(thumbs: Sequence[np.ndarray], cols: int, tile: tuple[int, int], gap: int = 4) -> tuple[bytes, int, int]:
    """Tile thumbnails (nearest-neighbour to ``tile`` pixels) into one palette PNG -> (png, width, height)."""
    from PIL import Image

    th, tw = tile
    R = -(-len(thumbs) // cols)
    W, H = cols * tw + (cols - 1) * gap, R * th + (R - 1) * gap
    canvas = np.full((H, W), BACKGROUND_INDEX, dtype=np.uint8)
    for n, t in enumerate(thumbs):
        lv = _levels(t)
        ry = np.minimum((np.arange(th) * lv.shape[0]) // th, lv.shape[0] - 1)
        rx = np.minimum((np.arange(tw) * lv.shape[1]) // tw, lv.shape[1] - 1)
        r, c = divmod(n, cols)
        canvas[r * (th + gap): r * (th + gap) + th, c * (tw + gap): c * (tw + gap) + tw] = lv[ry][:, rx]
    img = Image.fromarray(canvas, mode="P")
    img.putpalette(_palette())
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True, transparency=BACKGROUND_INDEX)
    return buf.getvalue(), W, H


def overview_mosaic(thumbs: Sequence[np.ndarray], cells: Sequence[tuple[int, int]], cols: int, *,
                    row_names: Sequence[str] | None = None, title: str = "", note: str = "") -> go.Figure:
    """Many heads' thumbnails as one PNG image (one figure, any number of heads), with click targets and
    labels. ``note`` states what the thumbnails are (e.g. "max-pooled to 64 x 64")."""
    cells = list(cells)
    th = max(int(np.asarray(t).shape[0]) for t in thumbs)
    tw = max(int(np.asarray(t).shape[1]) for t in thumbs)
    # One image pixel per thumbnail cell; the browser scales it up (pixelated, no smoothing) so that small
    # thumbnails are drawn at least ~64 px. Coordinates below are image pixels.
    scale = max(1, 64 // max(th, tw))
    gap = max(1, 6 // scale)
    png, W, H = mosaic_png(thumbs, cols, (th, tw), gap)
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    data = [dict(type="image", source=uri, x0=0, y0=0, dx=1, dy=1, hoverinfo="skip", name="thumbnails")]
    # One click target per thumbnail, at its centre: with hoverdistance -1 the nearest target takes the click,
    # and on a regular grid of equal tiles the nearest centre is the tile's own, wherever the click lands.
    xs, ys, idx, text = [], [], [], []
    for n, cell in enumerate(cells[:len(thumbs)]):
        r, c = divmod(n, cols)
        xs.append(c * (tw + gap) + (tw - 1) / 2)
        ys.append(r * (th + gap) + (th - 1) / 2)
        idx.append(n)
        text.append(esc(_cell_name(cell, row_names)))
    data.append(click_targets(xs, ys, idx, text, suffix=": click to open"))
    px = min(2.0 * scale, 900 / max(W, 1))  # screen pixels per image pixel
    R = -(-len(thumbs) // cols)
    row_label_names = [esc(row_names[cells[r * cols][0]]) if row_names else f"layer {cells[r * cols][0]}"
                       for r in range(R)]
    annotations = [{"text": f"head {cells[c][1]}", "x": c * (tw + gap) + (tw - 1) / 2, "y": -0.5 - 2 / px,
                    "xref": "x", "yref": "y", "yanchor": "bottom", "showarrow": False, "font": {"size": 10}}
                   for c in range(min(cols, len(cells)))]
    annotations += [{"text": row_label_names[r], "x": -0.5 - 4 / px, "y": r * (th + gap) + (th - 1) / 2,
                     "xref": "x", "yref": "y", "xanchor": "right", "showarrow": False, "font": {"size": 10}}
                    for r in range(R)]
    return figure(data, dict(
        title={"text": title + (f"<br><sup>{esc(note)}</sup>" if note else ""), "x": 0},
        height=int(min(1400, max(240, H * px + 130))), annotations=annotations, hoverdistance=-1,
        # the axes' ranges hold the labels' room: plotly.js hides annotations anchored outside the ranges
        margin={"l": 10, "r": 10, "t": 80 if note else 50, "b": 10},
        xaxis={"range": [-0.5 - 110 / px, W - 0.5], "visible": False, "fixedrange": True},
        yaxis={"range": [H - 0.5, -0.5 - 20 / px], "visible": False, "fixedrange": True, "scaleanchor": "x"},
        plot_bgcolor="white", meta={"cells": [list(c) for c in cells], "png_bytes": len(png)},
        clickmode="event+select", dragmode=False))


def clicked_numbers(selection, n: int) -> list[int] | None:
    """The first ``n`` numbers of the customdata of the first point a click selected, from Streamlit's selection state
    (the browser's: anything may be there); None unless each is a whole number."""
    points = selection.get("selection", {}).get("points") if isinstance(selection, dict) and \
        isinstance(selection.get("selection"), dict) else None
    point = points[0] if isinstance(points, list) and points and isinstance(points[0], dict) else None
    custom = None if point is None else point.get("customdata")
    custom = list(custom[:n]) if isinstance(custom, (list, tuple)) else [custom]
    if len(custom) < n:
        return None
    out = []
    for x in custom:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x != int(x):
            return None
        out.append(int(x))
    return out


def clicked_cell(selection, cells: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The (layer, head) a click on a grid or mosaic selected, from Streamlit's selection state; None if none (or
    anything but the index of one of ``cells``)."""
    custom = clicked_numbers(selection, 1)
    if custom is None or not 0 <= custom[0] < len(cells):
        return None
    r, c = cells[custom[0]]
    return int(r), int(c)
