"""Plotly heatmaps: tokens on both axes, masked cells drawn apart, binary float32 payloads.

The attention map itself is the canvas (viz/tiles.py, viz/canvas/); these are the Plotly matrices that remain: Step
by step's panels, the rollout, flow and difference maps, the playground. One visual language with the canvas:
tokens labelled ``position·token`` (0-based, so "1·2" never reads as twelve), decoder rows ``0·[BOS] → 2`` (what
the row produces), softmax weights in Viridis 0..1, scores diverging around 0, and masked cells in one grey
(MASK_COLOUR, the canvas's MASK_GREY), hatched as the canvas hatches them (tiles.REASON_HATCHES), the reason in the
hover.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .tiles import REASON_HATCHES

COMPACT_ABOVE = 256  # above this many tokens on an axis, matrices are sent as uint8 (1 byte per cell)
GRID_MAX_TOKENS = 128  # head grids of exact weights up to this length; longer ones use pooled overviews
MASK_COLOUR = "#8c8c8c"  # one grey for every masked cell: outside every colour scale used here, colour-blind safe
BACKGROUND = "#9e9e9e"  # shows through masked (NaN) cells of thumbnails
WEIGHT_SCALE = "Viridis"  # sequential, 0..1, for softmax weights
SCORE_SCALE = "RdBu_r"  # diverging, centred on 0, for scores / scaled / masked scores
VALUE_SCALE = "PuOr_r"  # diverging, for activations (X, Q, K, V, context, output)
DIFF_SCALE = "RdBu_r"  # differences between two runs, centred on 0
TEMPLATE: dict = {}  # no default Plotly template in the spec (~9 kB of JSON); Streamlit's theme styles the chart
STAGE_NAMES = {"scores": "scores", "scaled": "scaled scores", "adjusted": "adjusted scores",
               "masked": "masked scores", "weights": "weights"}
SEPARATOR = "·"


def figure(data: list[dict], layout: dict) -> go.Figure:
    """A Figure from plain trace/layout dicts, without Plotly's per-property validation (~20 ms per heatmap);
    the tests validate every figure kind once."""
    return go.Figure({"data": data, "layout": {"template": TEMPLATE, **layout}}, _validate=False)


def esc(text) -> str:
    """Model-derived text for Plotly's HTML subset (titles, ticks, hovers): shown, never interpreted."""
    return html.escape(str(text), quote=True)


def token_labels(tokens: Sequence[str], produces: Sequence[str] | None = None) -> list[str]:
    """Position-prefixed, HTML-escaped labels ("0·Saturday", "1·,"): distinct even when a token repeats, never
    read as a number. With ``produces`` (decoder rows): "0·[BOS] → 2", what each position reads and produces."""
    out = []
    for i, t in enumerate(tokens):
        label = f"{i}{SEPARATOR}{esc(t)}"
        if produces is not None and i < len(produces):
            label += f" → {esc(produces[i])}"
        out.append(label)
    return out


def stage_colours(stage: str) -> dict:
    """Colour scale arguments that fit one attention stage (weights: 0..1; scores: diverging around 0)."""
    if stage == "weights":
        return {"colorscale": WEIGHT_SCALE, "zmin": 0.0, "zmax": 1.0}
    if stage in ("scores", "scaled", "adjusted", "masked"):
        return {"colorscale": SCORE_SCALE, "zmid": 0.0}
    if stage == "mask":  # may attend: white; forbidden cells are hatched grey by the mask overlay
        return {"colorscale": [[0, "#ffffff"], [1, "#ffffff"]], "zmin": 0, "zmax": 1, "showscale": False}
    if stage == "diff":
        return {"colorscale": DIFF_SCALE, "zmid": 0.0}
    return {"colorscale": VALUE_SCALE, "zmid": 0.0}


def payload(z: np.ndarray, allowed: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """The matrix as it goes to the browser, and any extra heatmap arguments.

    float32 (NaN where masked) up to COMPACT_ABOVE tokens; above it uint8 quantised (255 = masked),
    with the scale in the hover and on the colour bar.
    """
    z = np.asarray(z, dtype=np.float32)
    if allowed is not None:
        z = np.where(allowed, z, np.float32(np.nan)).astype(np.float32)
    if max(z.shape) <= COMPACT_ABOVE:
        return z, {}
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    step = (hi - lo) / 254 if hi > lo else 1.0
    q = np.where(np.isfinite(z), np.round((np.nan_to_num(z, nan=lo) - lo) / step), 255).astype(np.uint8)
    return q, {"quantised": (lo, step)}


def decode_quantised(q: np.ndarray, lo: float, step: float) -> np.ndarray:
    """Inverse of the uint8 payload (255 = masked -> NaN)."""
    return np.where(q == 255, np.nan, lo + q.astype(np.float32) * step)


def mask_regions(forbidden: np.ndarray) -> tuple[list, list]:
    """Outline of the True cells of a (Tq, Tk) bool matrix as None-separated polygons (cell edges at +-0.5).

    Consecutive rows whose forbidden cells form one run ending at the same column (causal and padding masks)
    become a single staircase polygon: O(rows) points instead of one rectangle per row.
    """
    f = np.asarray(forbidden, dtype=bool)
    R, C = f.shape
    padded = np.zeros((R, C + 2), dtype=np.int8)
    padded[:, 1:-1] = f
    step = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past where it ends
    starts_r, starts_c = np.nonzero(step == 1)  # row-major: the k-th start pairs with the k-th end
    ends_c = np.nonzero(step == -1)[1]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(starts_r, minlength=R))]).tolist()
    s_list, e_list = starts_c.tolist(), ends_c.tolist()
    runs = [list(zip(s_list[bounds[r]:bounds[r + 1]], e_list[bounds[r]:bounds[r + 1]], strict=True))
            for r in range(R)]  # per row: (start, end) column runs, end exclusive
    xs, ys = [], []
    i = 0
    while i < len(runs):
        if len(runs[i]) == 1:  # a staircase block: rows i..j-1 with one run each, all ending at the same column
            end = runs[i][0][1]
            j = i
            while j < len(runs) and len(runs[j]) == 1 and runs[j][0][1] == end:
                j += 1
            xs += [end - 0.5, end - 0.5]
            ys += [i - 0.5, j - 0.5]
            for r in range(j - 1, i - 1, -1):
                xs += [runs[r][0][0] - 0.5, runs[r][0][0] - 0.5]
                ys += [r + 0.5, r - 0.5]
            xs += [end - 0.5, None]
            ys += [i - 0.5, None]
            i = j
            continue
        for a, b in runs[i]:  # anything else: one rectangle per run
            xs += [a - 0.5, b - 0.5, b - 0.5, a - 0.5, a - 0.5, None]
            ys += [i - 0.5, i - 0.5, i + 0.5, i + 0.5, i - 0.5, None]
        i += 1
    return xs, ys


def _mask_traces(reasons: dict[str, np.ndarray], value_text: str) -> list[dict]:
    """Hatched grey fills over masked cells, one trace per reason (its own hatch and hover)."""
    traces = []
    for reason, forbidden in reasons.items():
        xs, ys = mask_regions(forbidden)
        if not xs:
            continue
        shape = REASON_HATCHES.get(reason.split("+")[0], REASON_HATCHES["other"])  # the canvas's hatch
        traces.append(dict(
            type="scatter", x=xs, y=ys, xaxis="x2", yaxis="y2", mode="lines", fill="toself",
            line={"width": 0, "color": MASK_COLOUR},
            fillcolor=MASK_COLOUR, fillpattern={"shape": shape, "bgcolor": MASK_COLOUR, "fgcolor": "#ffffff",
                                                "size": 6},
            hoveron="fills", name=f"masked ({reason})", text=f"masked ({esc(reason)}): {value_text}",
            hoverinfo="text", showlegend=False,
        ))
    return traces


def mask_reasons(reason, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """{why masked: forbidden (Tq, Tk) bool} (as ``model.forbidden_by_reason`` gives it), or (Tq, Tk) reason
    strings ("" = may attend; see ``model.mask_reason_matrix``) -> {why masked: forbidden (Tq, Tk) bool}."""
    if reason is None:
        return {}
    if isinstance(reason, Mapping):
        return {str(k): np.broadcast_to(np.asarray(f, dtype=bool), shape) for k, f in reason.items()
                if np.asarray(f).any()}
    r = np.broadcast_to(np.asarray(reason, dtype=object), shape)
    return {str(name): r == name for name in sorted(set(r.ravel().tolist()) - {""})}


def _tick_step(n: int, max_ticks: int = 40) -> int:
    return max(1, int(np.ceil(n / max_ticks)))


def token_axis(labels: list[str], title: str, reverse: bool = False, show: bool = True, max_ticks: int = 40) -> dict:
    n = len(labels)
    step = _tick_step(n, max_ticks)
    axis = {"title": {"text": title}, "type": "category", "range": [n - 0.5, -0.5] if reverse else [-0.5, n - 0.5],
            "showgrid": False, "showticklabels": show, "tickfont": {"size": 11 if n <= 40 else 9}}
    if step > 1:  # long sequences: label every step-th token, the hover still names each cell
        axis["tickmode"] = "array"
        axis["tickvals"] = labels[::step]
        axis["ticktext"] = labels[::step]
    return axis


def attention_heatmap(matrix: np.ndarray, q_labels: Sequence[str], k_labels: Sequence[str], *,
                      stage: str = "weights", reasons: Mapping | np.ndarray | None = None, title: str = "",
                      value_name: str | None = None, height: int | None = None) -> go.Figure:
    """One (Tq, Tk) attention matrix: queries down, keys across (labels from ``token_labels``); masked cells are
    hatched grey with their reason (``reasons``: {why: forbidden (Tq, Tk) bool}, or (Tq, Tk) strings, "" = may
    attend)."""
    matrix = np.asarray(matrix)
    Tq, Tk = matrix.shape
    yl, xl = list(q_labels)[:Tq], list(k_labels)[:Tk]
    by_reason = mask_reasons(reasons, (Tq, Tk))
    forbidden = np.zeros((Tq, Tk), dtype=bool)
    for f in by_reason.values():
        forbidden |= f
    # masked cells carry 0 under the hatched overlay (which owns their hover): NaN / -inf would cost ~1.7 extra
    # bytes per masked cell on the wire (their float32 bytes base64-encode to "/", which Plotly escapes as \u002f)
    z, extra = payload(np.where(forbidden, np.float32(0), matrix))
    value_name = value_name or STAGE_NAMES.get(stage, stage)
    colours = stage_colours(stage)
    hover = f"query %{{y}}<br>key %{{x}}<br>{value_name} %{{z:.4f}}<extra></extra>"
    colorbar = {"title": {"text": value_name}, "thickness": 12}
    if "quantised" in extra:
        lo, step = extra["quantised"]
        hover = (f"query %{{y}}<br>key %{{x}}<br>{value_name} ≈ {lo:.4g} + %{{z}} × {step:.4g}"
                 f" (uint8 quantised)<extra></extra>")
        colours = {"colorscale": colours["colorscale"], "zmin": 0, "zmax": 254}
        colorbar.update(tickvals=[0, 127, 254], ticktext=[f"{lo + i * step:.3g}" for i in (0, 127, 254)])
    value_text = {"weights": "weight 0", "masked": "−∞"}.get(stage, "set to −∞ before the softmax")
    data = [dict(type="heatmap", z=z, x=xl, y=yl, hovertemplate=hover, hoverongaps=False, colorbar=colorbar,
                 **colours)] + _mask_traces(by_reason, value_text)
    cell = 22 if max(Tq, Tk) <= 24 else (14 if max(Tq, Tk) <= 64 else 6)
    return figure(data, dict(
        title={"text": title, "x": 0}, height=height or int(min(760, max(320, 190 + cell * Tq))),
        margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 10},
        xaxis=token_axis(xl, "key"), yaxis=token_axis(yl, "query", reverse=True),
        xaxis2={"overlaying": "x", "range": [-0.5, Tk - 0.5], "visible": False, "fixedrange": True},
        yaxis2={"overlaying": "y", "range": [Tq - 0.5, -0.5], "visible": False, "fixedrange": True},
        plot_bgcolor="white",
    ))


def matrix_heatmap(matrix: np.ndarray, row_labels: Sequence[str], *, col_title: str = "dimension",
                   row_title: str = "token", col_labels: Sequence[str] | None = None, stage: str = "values",
                   title: str = "", value_name: str = "value", height: int | None = None) -> go.Figure:
    """A token x dimension (or any 2-D) matrix: rows = tokens (labels from ``token_labels``), columns = dimensions.

    Wide matrices (d_model 768, 128 dims) stay readable: at most 16 dimension ticks, the hover names each cell."""
    m = np.asarray(matrix, dtype=np.float32)
    if m.ndim == 1:
        m = m[None, :]
    R, C = m.shape
    rl = list(row_labels)[:R]
    cl = [str(j) for j in range(C)] if col_labels is None else list(col_labels)[:C]
    z, extra = payload(m)
    hover = f"{row_title} %{{y}}<br>{col_title} %{{x}}<br>{value_name} %{{z:.4f}}<extra></extra>"
    colours = stage_colours(stage)
    colorbar = {"thickness": 12}
    if "quantised" in extra:
        lo, step = extra["quantised"]
        hover = (f"{row_title} %{{y}}<br>{col_title} %{{x}}<br>{value_name} ≈ {lo:.4g} + %{{z}} × {step:.4g}"
                 f" (uint8 quantised)<extra></extra>")
        colours = {"colorscale": colours["colorscale"], "zmin": 0, "zmax": 254}
        colorbar.update(tickvals=[0, 127, 254], ticktext=[f"{lo + i * step:.3g}" for i in (0, 127, 254)])
    data = [dict(type="heatmap", z=z, x=cl, y=rl, hovertemplate=hover, colorbar=colorbar, **colours)]
    return figure(data, dict(
        title={"text": title, "x": 0},
        height=height or int(min(700, max(180, 110 + (22 if R <= 24 else 9) * R))),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        xaxis=token_axis(cl, col_title, max_ticks=16), yaxis=token_axis(rl, row_title, reverse=True),
    ))


def figure_matrices(spec: dict) -> list[np.ndarray]:
    """Decode every heatmap ``z`` of a Plotly JSON spec (base64 typed arrays or lists) into arrays (for tests)."""
    import base64

    out = []
    for trace in spec.get("data", []):
        if trace.get("type") != "heatmap":
            continue
        z = trace["z"]
        if isinstance(z, dict) and "bdata" in z:
            shape = tuple(int(s) for s in str(z["shape"]).split(","))
            out.append(np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape))
        else:
            out.append(np.array(z, dtype=float))
    return out
