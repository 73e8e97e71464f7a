"""An image model's attention over its picture: one query's weights on the patches as a heat layer over the image,
a head grid of small overlays, and each token's norm beside the attention it gets.

Pure: arrays in (the picture as uint8 (H, W, 3), a query's weights over every token, the patches' positions in the
sequence), Plotly figures, PNG bytes and DataFrames out. The patches are the model's own cut of the picture: patch
(r, c) covers rows r·H/rows .. (r+1)·H/rows of the image shown, row-major. The heat layer is a heatmap whose ``z``
is exactly the weights of the patches (``patch_values``); tokens that are no patch ([CLS], a distillation token,
registers) cannot be drawn on the picture and are listed beside it (``other_tokens``).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .grids import click_targets
from .heatmap import WEIGHT_SCALE, esc, figure

OPACITY = 0.8  # the heat layer's opacity at the largest value; it fades to a tenth of that at 0, so the picture
# shows through where the query reads little and the patches it reads stand out in colour
ALPHA_FLOOR = 0.1  # the share of OPACITY left at 0 (a faint tint: the grid stays visible)
QUERY_COLOUR = "#ff2d55"  # the outline of the query's own patch (not in Viridis)
MARKED_COLOUR = "#ffffff"  # the outline of patches picked for a knockout
FLAG_COLOUR = "#d62728"  # a token flagged for its norm
COLOUR_BAR_PX = 110  # room for the heat layer's colour bar and its labels
SMOOTH_FROM = 160  # pictures with a side of at least this many pixels are smoothed when scaled; smaller stay crisp


def patch_values(row: np.ndarray, patch_positions: Sequence[int], grid: tuple[int, int]) -> np.ndarray:
    """(T,) one query's values over every key -> (rows, cols) float32 the values at the patches, row-major."""
    rows, cols = int(grid[0]), int(grid[1])
    positions = np.asarray(patch_positions, dtype=np.int64)
    if positions.shape != (rows * cols,):
        raise ValueError(f"{positions.size} patch positions for a {rows} x {cols} grid")
    return np.asarray(row, dtype=np.float32)[positions].reshape(rows, cols)


def other_tokens(row: np.ndarray, patch_positions: Sequence[int],
                 labels: Sequence[str]) -> list[tuple[int, str, float]]:
    """(position, label, value) of every token that is no patch ([CLS], registers...), in sequence order."""
    patches = set(int(p) for p in patch_positions)
    return [(i, str(labels[i]), float(v)) for i, v in enumerate(np.asarray(row, dtype=np.float32)) if i not in patches]


def patch_table(row: np.ndarray, patch_positions: Sequence[int], grid: tuple[int, int], labels: Sequence[str],
                value_name: str = "weight") -> pd.DataFrame:
    """Every token of one query's row: position, label, the patch's grid row and column (empty for other tokens)
    and the value: the numbers the overlay draws, and the ones it lists beside the picture."""
    cols = int(grid[1])
    where = {int(p): divmod(n, cols) for n, p in enumerate(patch_positions)}
    values = np.asarray(row, dtype=np.float32)
    return pd.DataFrame({
        "position": np.arange(len(values)), "token": [str(t) for t in labels][: len(values)],
        "grid_row": pd.array([where[i][0] if i in where else None for i in range(len(values))], dtype="Int64"),
        "grid_col": pd.array([where[i][1] if i in where else None for i in range(len(values))], dtype="Int64"),
        value_name: values})


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def image_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def cell_edges(size: int, n: int) -> np.ndarray:
    """(n + 1,) the pixel edges of n equal cells over ``size`` pixels, in Plotly image coordinates (pixel i spans
    i - 0.5 .. i + 0.5)."""
    return np.linspace(0, size, n + 1) - 0.5


def heat_alpha(levels: np.ndarray, opacity: float, diverging: bool = False) -> np.ndarray:
    """The heat layer's opacity at colour-scale positions 0..1: from ALPHA_FLOOR x ``opacity`` at the low end (at
    the centre for a diverging scale) to ``opacity`` at the high end (at both ends)."""
    s = np.asarray(levels, dtype=np.float64)
    strength = np.abs(2 * s - 1) if diverging else s
    return opacity * (ALPHA_FLOOR + (1 - ALPHA_FLOOR) * strength)


def heat_scale(colorscale: str, opacity: float, diverging: bool = False, stops: int = 21) -> list[list]:
    """A Plotly colour scale of ``colorscale``'s colours with the heat layer's opacity in each (rgba)."""
    at = np.linspace(0.0, 1.0, stops)
    colours = sample_colorscale(colorscale, list(at), colortype="tuple")
    alpha = heat_alpha(at, opacity, diverging)
    return [[float(p), f"rgba({round(r * 255)},{round(g * 255)},{round(b * 255)},{a:.3f})"]
            for p, (r, g, b), a in zip(at, colours, alpha, strict=True)]


def in_grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the picture's luminance (ITU-R 601) in all three channels. Under a heat layer a picture's
    own colours (a yellow object under Viridis) would read as weights: in grey, every colour on it is the scale's."""
    img = np.asarray(image, dtype=np.float32)
    y = np.round(img[..., :3] @ np.asarray([0.299, 0.587, 0.114], np.float32)).clip(0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


def overlay_figure(image: np.ndarray, values: np.ndarray, patch_labels: Sequence[str], *, title: str = "",
                   value_name: str = "weight", opacity: float = OPACITY, zmax: float | None = None,
                   zmin: float = 0.0, colorscale: str = WEIGHT_SCALE, query_patch: int | None = None,
                   marked: Sequence[int] = (), height: int = 520, note: str = "", grey: bool = True) -> go.Figure:
    """The picture with a heat layer: patch (r, c) coloured by ``values[r, c]`` (Viridis, ``zmin`` .. ``zmax``,
    default 0 .. the largest value; colour bar beside it), more opaque the larger the value (``heat_alpha``: the
    picture shows through where the query reads little; a diverging scale fades at its centre, 0). The hover names
    the patch and its value;
    a click on a patch selects its click target (``customdata`` = the patch's index, row-major), a box or lasso
    selects several. ``query_patch``: outlined (the query, when it is a patch); ``marked``: outlined in white
    (picked for a knockout). ``grey``: the picture in grey under the heat layer (``in_grey``).
    """
    img = in_grey(image) if grey else np.asarray(image, dtype=np.uint8)
    H, W = img.shape[:2]
    v = np.asarray(values, dtype=np.float32)
    rows, cols = v.shape
    ys, xs = cell_edges(H, rows), cell_edges(W, cols)
    cy, cx = (ys[:-1] + ys[1:]) / 2, (xs[:-1] + xs[1:]) / 2
    finite = v[np.isfinite(v)]
    top = float(zmax) if zmax is not None else (float(finite.max()) if finite.size else 1.0)
    top = top if top > zmin else zmin + 1.0
    labels = [esc(t) for t in patch_labels]
    hover = np.asarray([[f"{labels[r * cols + c]}<br>{esc(value_name)} {v[r, c]:.4f}" for c in range(cols)]
                        for r in range(rows)], dtype=object)
    data = [
        dict(type="image", source=image_uri(img), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip", name="picture",
             zsmooth="fast" if max(H, W) >= SMOOTH_FROM else False),
        dict(type="heatmap", z=v, x=cx, y=cy, colorscale=heat_scale(colorscale, opacity, zmin < 0),
             zmin=float(zmin), zmax=top, xgap=0, ygap=0, hoverinfo="skip", name=value_name, meta={"grid": [rows, cols]},
             colorbar={"title": {"text": esc(value_name)}, "thickness": 14, "len": 0.9}),
        click_targets(np.tile(cx, rows).tolist(), np.repeat(cy, cols).tolist(), range(rows * cols),
                      hover.ravel().tolist()),
    ]
    data[-1]["marker"] = {**data[-1]["marker"], "size": max(6, min(40, int(height / max(rows, cols) * 0.9)))}
    data[-1]["selected"] = {"marker": {"opacity": 0.0}}
    data[-1]["unselected"] = {"marker": {"opacity": 0.0}}
    shapes = []
    for n in marked:
        r, c = divmod(int(n), cols)
        shapes.append(dict(type="rect", x0=xs[c], x1=xs[c + 1], y0=ys[r], y1=ys[r + 1], line={"color": MARKED_COLOUR,
                                                                                             "width": 2}))
    if query_patch is not None:
        r, c = divmod(int(query_patch), cols)
        shapes.append(dict(type="rect", x0=xs[c], x1=xs[c + 1], y0=ys[r], y1=ys[r + 1],
                           line={"color": QUERY_COLOUR, "width": 3}))
    sub = f"<br><sup>{esc(note)}</sup>" if note else ""
    top_margin = 70 if note else 45
    # as wide as the picture drawn at this height, and its colour bar: the bar stays beside the picture
    width = int((height - top_margin - 10) * W / H) + 20 + COLOUR_BAR_PX
    return figure(data, dict(
        title={"text": title + sub, "x": 0}, height=height, width=width, shapes=shapes, hoverdistance=-1,
        margin={"l": 10, "r": 10, "t": top_margin, "b": 10}, plot_bgcolor="white",
        xaxis={"range": [-0.5, W - 0.5], "visible": False, "fixedrange": True, "constrain": "domain"},
        yaxis={"range": [H - 0.5, -0.5], "visible": False, "fixedrange": True, "scaleanchor": "x",
               "constrain": "domain"},
        meta={"grid": [rows, cols], "zmax": top, "query_patch": query_patch, "marked": [int(n) for n in marked]},
        clickmode="event+select", dragmode=False))


def drawn_values(fig: go.Figure) -> np.ndarray:
    """(rows, cols) the values an overlay figure's heat layer draws (its heatmap's ``z``), read back from the
    figure as it would be sent."""
    spec = fig.to_plotly_json()
    trace = next(t for t in spec["data"] if t.get("type") == "heatmap")
    z = trace["z"]
    if isinstance(z, dict) and "bdata" in z:  # a typed array, as plotly.py sends NumPy data
        shape = tuple(int(s) for s in str(z["shape"]).split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.asarray(z, dtype=np.float32)


def picked_patches(selection, n_patches: int) -> list[int]:
    """The patches (indices, row-major) a click, box or lasso on an overlay selected, from Streamlit's selection
    state; [] when none. Anything that is not a patch index of this grid is ignored."""
    try:
        points = selection["selection"]["points"]
    except (KeyError, TypeError):
        return []
    picked = []
    for p in points if isinstance(points, list) else []:
        custom = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(custom, (list, tuple)) and custom:
            custom = custom[0]
        if isinstance(custom, (int, float)) and not isinstance(custom, bool) and float(custom).is_integer() \
                and 0 <= int(custom) < n_patches and int(custom) not in picked:
            picked.append(int(custom))
    return picked


def heat_colours(values: np.ndarray, zmax: float, opacity: float = OPACITY) -> tuple[np.ndarray, np.ndarray]:
    """Values on 0 .. zmax -> ((..., 3) uint8 Viridis colours, (...) float opacities): the heat layer's pixels, as
    ``overlay_figure``'s colour scale draws them."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64) / (zmax if zmax > 0 else 1.0)), 0.0, 1.0)
    levels = np.round(v * 255).astype(np.int64)
    palette = np.asarray(sample_colorscale(WEIGHT_SCALE, [i / 255 for i in range(256)], colortype="tuple"))
    return np.round(palette * 255).astype(np.uint8)[levels], heat_alpha(levels / 255, opacity)


def blend(image: np.ndarray, values: np.ndarray, zmax: float, side: int, opacity: float = OPACITY, *,
          grey: bool = True) -> np.ndarray:
    """The picture (in grey: ``in_grey``, unless ``grey`` is False), scaled to ``side`` pixels on its longer side,
    with the heat layer composited over it: (h, w, 3) uint8. Nearest-neighbour for small pictures (crisp pixels),
    Lanczos for photos."""
    from PIL import Image

    img = in_grey(image) if grey else np.asarray(image, dtype=np.uint8)
    H, W = img.shape[:2]
    scale = side / max(H, W)
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    resample = Image.Resampling.LANCZOS if max(H, W) >= SMOOTH_FROM else Image.Resampling.NEAREST
    base = np.asarray(Image.fromarray(img, "RGB").resize((w, h), resample), dtype=np.float32)
    v = np.asarray(values, dtype=np.float32)
    rows, cols = v.shape
    ry = np.minimum(np.arange(h) * rows // h, rows - 1)
    rx = np.minimum(np.arange(w) * cols // w, cols - 1)
    colours, alpha = heat_colours(v, zmax, opacity)
    heat, a = colours[ry][:, rx].astype(np.float32), alpha[ry][:, rx][..., None]
    return np.round((1 - a) * base + a * heat).astype(np.uint8)


def overlay_png(image: np.ndarray, values: np.ndarray, zmax: float | None = None, side: int = 512,
                opacity: float = OPACITY) -> bytes:
    """The overlay as one PNG (for a download): the picture and its heat layer composited, ``side`` pixels."""
    v = np.asarray(values, dtype=np.float32)
    top = float(np.nanmax(v)) if zmax is None else float(zmax)
    return png_bytes(blend(image, v, top, side, opacity))


def head_grid_figure(image: np.ndarray, values: np.ndarray, titles: Sequence[str], *, cols: int = 6,
                     tile: int | None = None, title: str = "", note: str = "", opacity: float = OPACITY) -> go.Figure:
    """One small overlay per head: ``values`` (N, rows, cols), ``tile`` pixels each (default: ``cols`` of them fill
    about 900 pixels), each panel on its own scale (0 .. its largest
    value, said in its title), composited into one PNG with a click target per panel (``customdata`` = its index,
    see viz.clicked_cell)."""
    v = np.asarray(values, dtype=np.float32)
    N = v.shape[0]
    C = max(1, min(cols, N))
    R = -(-N // C)
    gap = 8
    tile = tile or min(240, 900 // C - gap)  # the panels fill about 900 pixels across
    tiles = [blend(image, v[n], float(np.nanmax(v[n])) if np.isfinite(v[n]).any() else 1.0, tile, opacity)
             for n in range(N)]
    th, tw = tiles[0].shape[:2]
    W, H = C * tw + (C - 1) * gap, R * (th + 22) + (R - 1) * gap
    canvas = np.full((H, W, 3), 255, dtype=np.uint8)
    xs, ys = [], []
    for n, t in enumerate(tiles):
        r, c = divmod(n, C)
        y0, x0 = r * (th + 22 + gap) + 22, c * (tw + gap)
        canvas[y0:y0 + th, x0:x0 + tw] = t
        xs.append(x0 + (tw - 1) / 2)
        ys.append(y0 + (th - 1) / 2)
    data = [dict(type="image", source=image_uri(canvas), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip", name="heads"),
            click_targets(xs, ys, range(N), [esc(t) for t in titles], suffix=": click to open")]
    data[-1]["marker"] = {**data[-1]["marker"], "size": max(12, int(tile * 0.8))}
    annotations = [{"text": esc(titles[n]), "x": xs[n], "y": ys[n] - th / 2 - 2, "xref": "x", "yref": "y",
                    "yanchor": "bottom", "showarrow": False, "font": {"size": 11}} for n in range(N)]
    sub = f"<br><sup>{esc(note)}</sup>" if note else ""
    return figure(data, dict(
        title={"text": title + sub, "x": 0}, height=int(H + (80 if note else 55)), annotations=annotations,
        hoverdistance=-1, margin={"l": 0, "r": 0, "t": 70 if note else 45, "b": 0}, plot_bgcolor="white",
        xaxis={"range": [-0.5, W - 0.5], "visible": False, "fixedrange": True, "constrain": "domain"},
        yaxis={"range": [H - 0.5, -0.5], "visible": False, "fixedrange": True, "scaleanchor": "x",
               "constrain": "domain"},
        meta={"panels": N}, clickmode="event+select", dragmode=False))


def norms_figure(labels: Sequence[str], attention: np.ndarray, norms: dict[str, np.ndarray], flagged: np.ndarray, *,
                 thresholds: dict[str, float], attention_name: str = "attention received",
                 title: str = "") -> go.Figure:
    """Per token, the attention it receives (top panel) and each of its ``norms`` (name -> (T,), a panel each,
    ``thresholds[name]`` drawn as a dashed line where finite), on one token axis; ``flagged`` tokens in red in every
    panel."""
    flag = np.asarray(flagged, dtype=bool)
    T = len(flag)
    x = list(range(T))
    names = [esc(t) for t in labels][:T]
    colours = [FLAG_COLOUR if f else "#440154" for f in flag]
    panels = [(attention_name, np.asarray(attention, dtype=np.float32), ".4f")]
    panels += [(name, np.asarray(v, dtype=np.float32), ".3f") for name, v in norms.items()]
    n, gap = len(panels), 0.06
    height = (1.0 - gap * (n - 1)) / n
    step = max(1, -(-T // 40))
    ticks = {"tickmode": "array", "tickvals": x[::step], "ticktext": names[::step], "tickangle": -90,
             "tickfont": {"size": 9}, "range": [-0.5, T - 0.5]}
    data, layout, shapes = [], {}, []
    for i, (name, values, fmt) in enumerate(panels):
        axis = "" if i == 0 else str(i + 1)
        top = 1.0 - i * (height + gap)
        data.append(dict(type="bar", x=x, y=values, marker={"color": colours}, customdata=names, xaxis=f"x{axis}",
                         yaxis=f"y{axis}", name=name,
                         hovertemplate=f"%{{customdata}}<br>{esc(name)} %{{y:{fmt}}}<extra></extra>"))
        layout[f"xaxis{axis}"] = {**ticks, "anchor": f"y{axis}", "showticklabels": i == n - 1,
                                  **({"matches": "x"} if i else {})}
        layout[f"yaxis{axis}"] = {"domain": [max(0.0, top - height), top], "title": {"text": esc(name)}}
        line = thresholds.get(name, math.inf)
        if math.isfinite(line):
            shapes.append(dict(type="line", xref=f"x{axis}", yref=f"y{axis}", x0=-0.5, x1=T - 0.5, y0=line, y1=line,
                               line={"color": FLAG_COLOUR, "dash": "dash", "width": 1}))
    return figure(data, dict(
        title={"text": title, "x": 0}, height=160 + 150 * n, showlegend=False, bargap=0.1,
        margin={"l": 10, "r": 10, "t": 45, "b": 10}, shapes=shapes, **layout,
        meta={"flagged": [int(i) for i in np.flatnonzero(flag)],
              "thresholds": {k: (float(v) if math.isfinite(v) else None) for k, v in thresholds.items()}}))


__all__ = ["ALPHA_FLOOR", "OPACITY", "blend", "cell_edges", "drawn_values", "head_grid_figure", "heat_alpha",
           "heat_colours", "heat_scale", "image_uri", "norms_figure", "other_tokens", "overlay_figure", "overlay_png",
           "patch_table", "patch_values", "picked_patches", "png_bytes"]
