"""Plotly figures and tables for the teaching playground: matrices as heatmaps, the scaling curve, heads side by
side, one query's numbers as tables and formulas.

Pure: NumPy arrays, model.teaching's records and token labels in, ``plotly.graph_objects.Figure``,
``pandas.DataFrame`` or LaTeX text out. Labels are HTML-escaped
(Plotly renders a subset of HTML in tick and hover text) and shortened; axes are integers with ticktext.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from model.teaching import (
    CrossAttentionSteps,
    MaskComparison,
    MultiHeadSteps,
    PatchSteps,
    QueryBreakdown,
    ScalingCurve,
    SelfAttentionSteps,
)

from .heatmap import MASK_COLOUR, WEIGHT_SCALE, mask_regions
from .tiles import REASON_HATCHES

DIVERGING = "RdBu_r"  # scores and raw matrices: blue < 0 < red, centred on 0
SEQUENTIAL = WEIGHT_SCALE  # attention weights, fixed 0..1: Viridis, as in the inspector
ANNOTATE_MAX_CELLS = 144  # write the value in each cell up to this many cells...
ANNOTATE_MAX_COLS = 8  # ...and this many columns (wider matrices leave no room for the digits)
MAX_LABEL_CHARS = 16


def safe_label(label: str, max_chars: int = MAX_LABEL_CHARS) -> str:
    """Shortened and HTML-escaped, so a token is shown as text and never interpreted."""
    label = str(label)
    if len(label) > max_chars:
        label = label[: max_chars - 1] + "…"
    return html.escape(label)


def dim_labels(n: int, prefix: str = "") -> list[str]:
    """Column labels for feature dimensions: 0..n-1, as in the inspector (optionally prefixed)."""
    return [f"{prefix}{i}" for i in range(n)]


def _check_finite(values: np.ndarray, title: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"{title}: expected a 2-D matrix, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{title}: matrix has NaN or infinite values; show them as a table, not a chart")
    return values


def _height(n_rows: int) -> int:
    per_row = max(10, min(32, 560 // max(n_rows, 1)))
    return 110 + per_row * n_rows


def _heatmap_trace(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], kind: str,
                   name: str, row_title: str, col_title: str, annotate: bool | None,
                   coloraxis: str | None = None, showscale: bool = True) -> go.Heatmap:
    n_rows, n_cols = values.shape
    rows = [safe_label(r) for r in row_labels]
    cols = [safe_label(c) for c in col_labels]
    custom = np.empty((n_rows, n_cols, 2), dtype=object)
    for i in range(n_rows):
        for j in range(n_cols):
            custom[i, j] = (rows[i], cols[j])
    if annotate is None:
        annotate = n_rows * n_cols <= ANNOTATE_MAX_CELLS and n_cols <= ANNOTATE_MAX_COLS
    colour: dict = {}
    if coloraxis is None:
        if kind == "weights":
            colour = dict(colorscale=SEQUENTIAL, zmin=0.0, zmax=1.0)
        else:
            colour = dict(colorscale=DIVERGING, zmid=0.0)
        colour["showscale"] = showscale
        colour["colorbar"] = dict(thickness=12)
    else:
        colour = dict(coloraxis=coloraxis)
    return go.Heatmap(
        z=values, x=list(range(n_cols)), y=list(range(n_rows)), name=name, customdata=custom,
        hovertemplate=(f"{html.escape(row_title)}: %{{customdata[0]}}<br>{html.escape(col_title)}: "
                       "%{customdata[1]}<br>value: %{z:.4f}<extra>" + html.escape(name) + "</extra>"),
        texttemplate="%{z:.2f}" if annotate else None, textfont=dict(size=10), xgap=1, ygap=1, **colour)


def _tickangle(labels: Sequence[str]) -> int:
    """Slant column labels that would overlap when written flat."""
    return -45 if len(labels) > 3 and max(len(str(s)) for s in labels) > 3 else 0


def _token_axis(labels: Sequence[str], title: str, tickangle: int | None = None) -> dict:
    axis = dict(tickmode="array", tickvals=list(range(len(labels))), ticktext=[safe_label(s) for s in labels],
                title=dict(text=html.escape(title)), showgrid=False, zeroline=False)
    if tickangle is not None:
        axis["tickangle"] = tickangle
    return axis


def _mask_overlay(masked: np.ndarray, reason: str = "causal") -> go.Scatter:
    """Masked cells hatched grey, as in the inspector (cell centres at integers, edges at +-0.5)."""
    xs, ys = mask_regions(np.asarray(masked, dtype=bool))
    return go.Scatter(x=xs, y=ys, mode="lines", fill="toself", line=dict(width=0, color=MASK_COLOUR),
                      fillcolor=MASK_COLOUR, fillpattern=dict(shape=REASON_HATCHES[reason], bgcolor=MASK_COLOUR,
                                                              fgcolor="#ffffff", size=6),
                      hoveron="fills", hoverinfo="text", text=f"masked ({reason}): −∞ before the softmax",
                      showlegend=False, name="masked")


def matrix_figure(values: np.ndarray, title: str, row_labels: Sequence[str] | None = None,
                  col_labels: Sequence[str] | None = None, row_title: str = "row", col_title: str = "column",
                  kind: str = "diverging", name: str | None = None, annotate: bool | None = None,
                  masked: np.ndarray | None = None) -> go.Figure:
    """One matrix as a heatmap, shape in the title. kind: "diverging" (centred on 0) or "weights" (0..1).
    ``masked``: bool cells hatched grey on top (the causal mask's -inf cells)."""
    values = _check_finite(values, title)
    n_rows, n_cols = values.shape
    row_labels = list(row_labels) if row_labels is not None else dim_labels(n_rows)
    col_labels = list(col_labels) if col_labels is not None else dim_labels(n_cols)
    trace = _heatmap_trace(values, row_labels, col_labels, kind, name or title, row_title, col_title, annotate)
    fig = go.Figure(trace)
    if masked is not None and np.asarray(masked).any():
        fig.add_trace(_mask_overlay(masked))
    fig.update_layout(
        title=dict(text=f"{html.escape(title)}  <span style='font-size:12px'>({n_rows} × {n_cols})</span>",
                   x=0.0, xanchor="left", font=dict(size=14)),
        height=_height(n_rows), margin=dict(l=10, r=30, t=40, b=10),
        xaxis={**_token_axis(col_labels, col_title, tickangle=_tickangle(col_labels)), "range": [-0.5, n_cols - 0.5]},
        yaxis={**_token_axis(row_labels, row_title), "range": [n_rows - 0.5, -0.5]},
        plot_bgcolor="white",
    )
    return fig


def mask_figure(allowed: np.ndarray, labels: Sequence[str], diagonal: int) -> go.Figure:
    """The causal mask: ``allowed`` = ~triu(ones(T, T), diagonal) (True = may attend); the triu cells, masked,
    hatched grey (−∞), visible cells white."""
    values = (~np.asarray(allowed, dtype=bool)).astype(float)
    n = values.shape[0]
    trace = go.Heatmap(
        z=np.zeros_like(values), x=list(range(n)), y=list(range(n)), name="mask", zmin=0, zmax=1, xgap=1, ygap=1,
        colorscale=[[0.0, "#ffffff"], [1.0, "#ffffff"]], showscale=False,
        customdata=values, hovertemplate="query: %{y}<br>key: %{x}<br>masked: %{customdata}<extra></extra>",
    )
    fig = go.Figure(trace)
    if values.any():
        fig.add_trace(_mask_overlay(values > 0))
    fig.update_layout(
        title=dict(text=f"mask = triu(ones({n}, {n}), diagonal={diagonal}): hatched = −∞", x=0.0,
                   font=dict(size=14)),
        height=_height(n), margin=dict(l=10, r=30, t=40, b=10), plot_bgcolor="white",
        xaxis={**_token_axis(labels, "key", tickangle=_tickangle(labels)), "range": [-0.5, n - 0.5]},
        yaxis={**_token_axis(labels, "query"), "range": [n - 0.5, -0.5]},
    )
    return fig


def query_weights_figure(weights: np.ndarray, labels: Sequence[str], query_label: str) -> go.Figure:
    """Bar chart of one query's attention weights over the keys (0..1)."""
    weights = _check_finite(np.asarray(weights)[None, :], "weights")[0]
    n = len(weights)
    fig = go.Figure(go.Bar(
        x=list(range(n)), y=weights, name="alpha", marker_color="#2171b5",
        text=[f"{w:.2f}" for w in weights] if n <= 24 else None, textposition="outside",
        customdata=[safe_label(s) for s in labels],
        hovertemplate="key: %{customdata}<br>weight: %{y:.4f}<extra></extra>"))
    fig.update_layout(
        title=dict(text=f"attention weights of query {safe_label(query_label)}", x=0.0, font=dict(size=14)),
        height=300, margin=dict(l=10, r=30, t=40, b=10),
        xaxis=_token_axis(labels, "key", tickangle=_tickangle(labels)),
        yaxis=dict(range=[0, 1.15], title=dict(text="weight α")),
    )
    return fig


def scaling_figure(d_k: np.ndarray, entropy_scaled: np.ndarray, entropy_unscaled: np.ndarray,
                   max_weight_scaled: np.ndarray, max_weight_unscaled: np.ndarray, n_keys: int,
                   current_d_k: int | None = None) -> go.Figure:
    """Row entropy and max weight against d_k: scaled stays spread out, unscaled saturates."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean row entropy (nats)", "mean largest weight per row"))
    styles = (("scaled: softmax(q·k / √d_k)", "#2171b5", "solid"), ("unscaled: softmax(q·k)", "#cb181d", "dash"))
    for col, (scaled, unscaled) in enumerate(((entropy_scaled, entropy_unscaled),
                                              (max_weight_scaled, max_weight_unscaled)), start=1):
        for series, (label, colour, dash) in zip((scaled, unscaled), styles, strict=True):
            fig.add_trace(go.Scatter(x=d_k, y=series, mode="lines+markers", name=label, legendgroup=label,
                                     showlegend=col == 1, line=dict(color=colour, dash=dash),
                                     hovertemplate="d_k=%{x}<br>%{y:.3f}<extra>" + label + "</extra>"),
                          row=1, col=col)
    uniform = float(np.log(n_keys))
    fig.add_trace(go.Scatter(x=[d_k[0], d_k[-1]], y=[uniform, uniform], mode="lines", name=f"uniform (log {n_keys})",
                             line=dict(color="grey", dash="dot"), hoverinfo="skip"), row=1, col=1)
    if current_d_k is not None:
        for col in (1, 2):
            fig.add_vline(x=current_d_k, line=dict(color="black", width=1, dash="dot"), row=1, col=col)
    fig.update_xaxes(type="log", title=dict(text="d_k (log scale)"), tickvals=list(d_k))
    fig.update_yaxes(title=dict(text="nats"), rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title=dict(text="weight"), range=[0, 1.05], row=1, col=2)
    fig.update_layout(height=360, margin=dict(l=10, r=30, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25, x=0.0))
    return fig


def patches_figure(image: np.ndarray, grid: tuple[int, int], labels: Sequence[str], title: str) -> go.Figure:
    """The picture cut into a grid of patches: grid lines, and each patch's label in the hover ("r0c0"...)."""
    from .grids import click_targets
    from .overlay import cell_edges, image_uri

    img = np.asarray(image, dtype=np.uint8)
    H, W = img.shape[:2]
    rows, cols = grid
    ys, xs = cell_edges(H, rows), cell_edges(W, cols)
    cy, cx = (ys[:-1] + ys[1:]) / 2, (xs[:-1] + xs[1:]) / 2
    grid_line = dict(color="#9a9a9a", width=1)  # grey: seen on the scenes' black background and on the objects
    lines = [dict(type="line", x0=x, x1=x, y0=ys[0], y1=ys[-1], line=grid_line) for x in xs] + \
        [dict(type="line", x0=xs[0], x1=xs[-1], y0=y, y1=y, line=grid_line) for y in ys]
    text = [f"patch {n}: {html.escape(str(labels[n]))}" for n in range(rows * cols)]
    targets = click_targets(np.tile(cx, rows).tolist(), np.repeat(cy, cols).tolist(), range(rows * cols), text)
    fig = go.Figure([go.Image(source=image_uri(img), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip", name="picture"),
                     go.Scatter(targets)])
    fig.update_layout(title=dict(text=html.escape(title), x=0.0, font=dict(size=14)), height=420, shapes=lines,
                      margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white", hoverdistance=-1,
                      xaxis=dict(range=[-0.5, W - 0.5], visible=False, constrain="domain"),
                      yaxis=dict(range=[H - 0.5, -0.5], visible=False, scaleanchor="x", constrain="domain"))
    return fig


def cls_query_figures(steps: PatchSteps) -> tuple[go.Figure, go.Figure]:
    """The [CLS] query's scores q·k_j (diverging around 0) and weights (0 .. their largest) over the picture."""
    from .overlay import overlay_figure, patch_values

    positions, labels = steps.patch_positions, steps.labels[1:]
    scores = patch_values(steps.scores, positions, steps.grid)
    m = float(np.abs(scores).max()) or 1.0
    note = f"[CLS] itself: {steps.scores[0]:.2f}"
    score_fig = overlay_figure(steps.image, scores, labels, title="scores q·k_j of the [CLS] query",
                               value_name="score", zmin=-m, zmax=m, colorscale=DIVERGING, note=note, height=420)
    weights = patch_values(steps.weights, positions, steps.grid)
    weight_fig = overlay_figure(steps.image, weights, labels, title="weights softmax(q·k_j / √d_k)",
                                note=f"[CLS] itself: {steps.weights[0]:.3f}; the patches: {weights.sum():.3f}",
                                height=420)
    return score_fig, weight_fig


def heads_figure(matrices: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], kind: str = "weights",
                 row_title: str = "query", col_title: str = "key", name: str = "head") -> go.Figure:
    """(H, R, C) matrices side by side, one subplot per head, sharing one colour bar."""
    matrices = np.asarray(matrices, dtype=float)
    n_heads = matrices.shape[0]
    for h in range(n_heads):
        _check_finite(matrices[h], f"{name} {h}")
    fig = make_subplots(rows=1, cols=n_heads, subplot_titles=[f"{name} {h}" for h in range(n_heads)],
                        horizontal_spacing=min(0.08, 0.4 / max(n_heads, 1)))
    n_rows, n_cols = matrices.shape[1:]
    annotate = n_heads * n_rows * n_cols <= 2 * ANNOTATE_MAX_CELLS and n_cols <= ANNOTATE_MAX_COLS
    for h in range(n_heads):
        fig.add_trace(_heatmap_trace(matrices[h], row_labels, col_labels, kind, f"{name} {h}", row_title,
                                     col_title, annotate, coloraxis="coloraxis"), row=1, col=h + 1)
        fig.update_xaxes(_token_axis(col_labels, col_title, tickangle=_tickangle(col_labels)), row=1, col=h + 1)
        fig.update_yaxes({**_token_axis(row_labels, row_title if h == 0 else ""), "autorange": "reversed",
                          "showticklabels": h == 0}, row=1, col=h + 1)
    if kind == "weights":
        coloraxis = dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=1.0)
    else:
        coloraxis = dict(colorscale=DIVERGING, cmid=0.0)
    fig.update_layout(coloraxis=coloraxis, height=_height(n_rows) + 20, margin=dict(l=10, r=30, t=40, b=10))
    return fig


def concat_figure(concat: np.ndarray, row_labels: Sequence[str], n_heads: int) -> go.Figure:
    """The heads' outputs side by side (T, H * d_v), with a line between heads."""
    d_v = concat.shape[1] // max(n_heads, 1)
    cols = [f"h{h}.{i}" for h in range(n_heads) for i in range(d_v)]
    fig = matrix_figure(concat, f"concat(head 0, ..., head {n_heads - 1})", row_labels, cols, "query",
                        "head.dimension",
                        name="concat")
    for h in range(1, n_heads):
        fig.add_vline(x=h * d_v - 0.5, line=dict(color="black", width=2))
    return fig


# The playground's figures, section by section (trace names are the matrices' names: the tests read them back)

Figures3 = tuple[go.Figure, go.Figure, go.Figure]


def projection_figures(steps: SelfAttentionSteps, labels: Sequence[str]) -> dict[str, Figures3]:
    """X @ W = output for each of Q, K and V: {"Q": (X, W_query, Q), ...}."""
    x = matrix_figure(steps.X, "X (embeddings)", labels, None, "token", "embedding dim", name="X")
    out = {}
    for w_name, w, name, values in (("W_query", steps.W_query, "Q", steps.Q), ("W_key", steps.W_key, "K", steps.K),
                                    ("W_value", steps.W_value, "V", steps.V)):
        out[name] = (x, matrix_figure(w, w_name, None, None, "input dim", "output dim", name=w_name),
                     matrix_figure(values, name, labels, None, "token", "dim", name=name))
    return out


def score_figures(steps: SelfAttentionSteps, labels: Sequence[str]) -> tuple[Figures3, Figures3]:
    """Q @ Kᵀ = ω (the scores), and α @ V = Z (α hatched where the causal mask forbids)."""
    how = "ω / √d_k" if steps.scale else "ω (unscaled)"
    masked = f", masked with triu(diagonal={steps.diagonal})" if steps.allowed is not None else ""
    scores = (matrix_figure(steps.Q, "Q", labels, None, "query", "dim", name="Q"),
              matrix_figure(steps.K.T, "Kᵀ", None, labels, "dim", "key", name="K^T"),
              matrix_figure(steps.omega, "ω = Q Kᵀ (scores)", labels, labels, "query", "key", name="omega"))
    context = (matrix_figure(steps.weights, f"α = softmax({how}){masked}", labels, labels, "query", "key",
                             kind="weights", name="alpha", masked=None if steps.allowed is None else ~steps.allowed),
               matrix_figure(steps.V, "V", labels, None, "key", "dim", name="V"),
               matrix_figure(steps.Z, "Z = α V (context vectors)", labels, None, "query", "dim", name="Z"))
    return scores, context


def masking_figures(mc: MaskComparison, labels: Sequence[str], diagonal: int) -> Figures3:
    """The mask, the weights masked before the softmax (−∞) and after it (zeroed, renormalised)."""
    return (mask_figure(mc.allowed, labels, diagonal),
            matrix_figure(mc.before, "mask before softmax (−∞)", labels, labels, "query", "key", kind="weights",
                          name="masked_before", masked=~mc.allowed),
            matrix_figure(mc.after, "softmax, zero future, renormalise", labels, labels, "query", "key",
                          kind="weights", name="masked_after", masked=~mc.allowed))


def scaling_curve_figure(curve: ScalingCurve, current_d_k: int | None = None) -> go.Figure:
    """``scaling_figure`` of model.teaching.scaling_curve's record."""
    return scaling_figure(curve.d_k, curve.entropy_scaled, curve.entropy_unscaled, curve.max_weight_scaled,
                          curve.max_weight_unscaled, curve.n_keys, current_d_k)


def cross_figures(cr: CrossAttentionSteps, labels_1: Sequence[str],
                  labels_2: Sequence[str]) -> tuple[go.Figure, go.Figure, go.Figure, go.Figure]:
    """Cross-attention: X₂, K = X₂ W_key, the weights (sentence 1's queries over sentence 2's keys), Z = α V."""
    return (matrix_figure(cr.X2, "X₂ (second sentence)", labels_2, None, "token", "embedding dim", name="X2"),
            matrix_figure(cr.K, "K = X₂ W_key", labels_2, None, "key", "dim", name="K2"),
            matrix_figure(cr.weights, "α (cross-attention weights)", labels_1, labels_2, "query (sentence 1)",
                          "key (sentence 2)", kind="weights", name="cross_alpha"),
            matrix_figure(cr.Z, "Z = α V", labels_1, None, "query (sentence 1)", "dim", name="cross_Z"))


def multi_head_figures(mh: MultiHeadSteps, labels: Sequence[str]) -> tuple[go.Figure, go.Figure, Figures3]:
    """Every head's weights, every head's output, and concat @ W_out = output."""
    n_heads, d_v = mh.heads.shape[0], mh.heads.shape[2]
    return (heads_figure(mh.weights, labels, labels, "weights", name="head"),
            heads_figure(mh.heads, labels, dim_labels(d_v), "diverging", "query", "dim", name="Z head"),
            (concat_figure(mh.concat, labels, n_heads),
             matrix_figure(mh.W_out, "W_out", None, None, "concat dim", "model dim", name="W_out"),
             matrix_figure(mh.output, "output", labels, None, "token", "model dim", name="mh_output")))


def figure_columns(fig: go.Figure) -> int:
    """A matrix figure's width beside others, in grid columns: its cells plus room for tick labels and colour bar."""
    return len(fig.data[0].x) + 7


def tokens_table(tokens: Sequence[str]) -> pd.DataFrame:
    """The tokens in one row, their 0-based positions as the columns."""
    return pd.DataFrame([list(tokens)], index=["token"], columns=[str(i) for i in range(len(tokens))])


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def query_formulas(b: QueryBreakdown, k_0: np.ndarray, scale: bool, show_row: bool) -> list[str]:
    """One query's formulas in LaTeX with its numbers: the score with key 0 term by term (up to 6 terms), the
    softmax of its row (the weights written out when ``show_row``) and the context vector."""
    n, d_k = b.index, b.q.size
    terms = " + ".join(f"({_fmt(a)})({_fmt(c)})" for a, c in zip(b.q[:6], k_0[:6], strict=True))
    more = r" + \dots" if d_k > 6 else ""
    denom = rf"\sqrt{{{d_k}}}" if scale else "1"
    softmax = rf"\alpha_{{{n}}} = \mathrm{{softmax}}\!\left(\frac{{\omega_{{{n}}}}}{{{denom}}}\right)"
    if show_row:
        softmax += " = [" + ",\\ ".join(_fmt(w) for w in b.weights) + "]"
    return [rf"\omega_{{{n},j}} = q_{{{n}}}\cdot k_j",
            rf"\omega_{{{n},0}} = q_{{{n}}}\cdot k_0 = {terms}{more} = {_fmt(b.omega[0])}",
            softmax,
            rf"z_{{{n}}} = \sum_j \alpha_{{{n},j}}\, v_j"]


def query_table(b: QueryBreakdown, labels: Sequence[str]) -> pd.DataFrame:
    """One query's row, key by key: the score, what the softmax sees, whether the key is visible, the weight."""
    n = b.index
    return pd.DataFrame({"key j": list(labels), f"ω_{n},j = q_{n}·k_j": b.omega, "softmax input": b.logits,
                         "visible": b.visible, f"α_{n},j": b.weights})


def weighted_values_table(b: QueryBreakdown) -> pd.DataFrame:
    """α_ij · v_j for every key j, their sum, and row i of Z as attention() computed it (the two last rows agree)."""
    n = b.index
    table = pd.DataFrame(b.weighted_values, index=[f"α_{n},{j} · v_{j}" for j in range(len(b.weights))],
                         columns=dim_labels(b.z.size, "dim "))
    table.loc[f"sum = z_{n}"] = b.z_sum
    table.loc[f"row {n} of Z from attention()"] = b.z
    return table


def naive_table(naive: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """A plain softmax's weights as text, "NaN" where a fully masked row divided 0 by 0."""
    return pd.DataFrame(naive, index=list(labels), columns=list(labels)).map(
        lambda x: "NaN" if np.isnan(x) else f"{x:.2f}")
