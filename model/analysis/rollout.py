"""Attention rollout and attention flow (Abnar & Zuidema, 2020), and the source attribution of an encoder-decoder.

Both treat each layer's residual connection as half of the mixing: Â = 0.5 I + 0.5 A, rows renormalised, where
A is one layer's attention (heads fused: mean, max or min over heads, or one head).

- rollout: R = Â_L · … · Â_1, so R[i, j] is how much of input token j reaches position i at the top;
- flow: the maximum flow from input token j to position i in the graph whose layer-to-layer edges have
  capacities Â_l[i, j] (exact, computed with integer capacities of 1e-6 resolution; costly, so bounded in size);
- source attribution (encoder-decoder): every decoder position carries a share from the decoder's own inputs (D)
  and from the source tokens (S), starting from D = I, S = 0. Each decoder layer applies its masked
  self-attention (D ← Â_self D, S ← Â_self S) and then its cross-attention, whose residual keeps half and whose
  attention brings half from the encoder outputs, traced back to source tokens by the encoder rollout:
  D ← 0.5 D, S ← 0.5 S + 0.5 C R_enc (C: cross weights, heads fused). Each row of [D | S] sums to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HEAD_FUSIONS = ("mean", "max", "min")
FLOW_SCALE = 1_000_000  # integer capacities: 1e-6 resolution


def fuse_heads(weights, how: str | int = "mean") -> np.ndarray:
    """(H, Tq, Tk) -> (Tq, Tk): mean, max or min over heads (max/min rows renormalised), or one head (an int)."""
    w = np.asarray(weights, dtype=np.float64)
    if isinstance(how, (int, np.integer)) and not isinstance(how, bool):
        return w[int(how)]
    if how == "mean":
        return w.mean(0)
    if how not in HEAD_FUSIONS:
        raise ValueError(f"head fusion must be one of {HEAD_FUSIONS} or a head index, got {how!r}")
    fused = w.max(0) if how == "max" else w.min(0)
    sums = fused.sum(-1, keepdims=True)
    return np.where(sums > 0, fused / np.where(sums > 0, sums, 1.0), 0.0)


def residual_attention(a: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """(T, T) -> residual * I + (1 - residual) * A, rows renormalised (a fully masked row becomes the identity)."""
    a = np.asarray(a, dtype=np.float64)
    mixed = residual * np.eye(a.shape[0], a.shape[1]) + (1.0 - residual) * a
    return mixed / mixed.sum(-1, keepdims=True)


def rollout(layers: Sequence[np.ndarray], how: str | int = "mean", residual: float = 0.5,
            last_layer: str | int | None = None) -> np.ndarray:
    """Rollout over self-attention layers, bottom to top: each (H, T, T) -> (T, T), rows summing to 1.

    ``last_layer``: fuse the top layer differently (e.g. one head: "where does head 3 at the top ultimately look").
    """
    if not layers:
        raise ValueError("rollout needs at least one layer")
    result = None
    for i, w in enumerate(layers):
        how_here = last_layer if (last_layer is not None and i == len(layers) - 1) else how
        a = residual_attention(fuse_heads(w, how_here), residual)
        result = a if result is None else a @ result
    return result


def source_attribution(encoder_layers: Sequence[np.ndarray], decoder_self: Sequence[np.ndarray],
                       decoder_cross: Sequence[np.ndarray], how: str | int = "mean",
                       residual: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(S (T, S_src) share of each decoder position from each source token, D (T, T) share from the decoder's own
    inputs); see the module docstring for the composition. Rows of [D | S] sum to 1."""
    if len(decoder_self) != len(decoder_cross):
        raise ValueError("need one self- and one cross-attention per decoder layer")
    S_len = np.asarray(decoder_cross[0]).shape[-1]
    r_enc = rollout(encoder_layers, how, residual) if encoder_layers else np.eye(S_len)
    T = np.asarray(decoder_self[0]).shape[-1]
    D, S = np.eye(T), np.zeros((T, S_len))
    for self_w, cross_w in zip(decoder_self, decoder_cross, strict=True):
        a = residual_attention(fuse_heads(self_w, how), residual)
        D, S = a @ D, a @ S
        c = fuse_heads(cross_w, how)  # (T, S): rows sum to 1 (or 0 for a row with no allowed key)
        keep = np.where(c.sum(-1, keepdims=True) > 0, residual, 1.0)
        D = keep * D
        S = keep * S + (1.0 - keep) * (c @ r_enc)
    return S, D


def _flow_graph(layers: Sequence[np.ndarray], how: str | int, residual: float):
    """Node (l, t) = l * T + t for l = 0..L; edge (l-1, j) -> (l, i) with capacity Â_l[i, j]."""
    from scipy.sparse import csr_array

    mats = [residual_attention(fuse_heads(w, how), residual) for w in layers]
    T = mats[0].shape[0]
    rows, cols, caps = [], [], []
    for layer, a in enumerate(mats, start=1):
        i, j = np.nonzero(a > 0)
        rows.append((layer - 1) * T + j)
        cols.append(layer * T + i)
        caps.append(np.round(a[i, j] * FLOW_SCALE).astype(np.int32))
    n = (len(mats) + 1) * T
    graph = csr_array((np.concatenate(caps), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return graph, T, len(mats)


def flow(layers: Sequence[np.ndarray], how: str | int = "mean", residual: float = 0.5,
         outputs: Sequence[int] | None = None) -> np.ndarray:
    """Attention flow: (len(outputs), T) maximum flow from each input token to each chosen top position
    (all positions when ``outputs`` is None). Exact up to the 1e-6 capacity resolution."""
    from scipy.sparse.csgraph import maximum_flow

    graph, T, L = _flow_graph(layers, how, residual)
    outs = list(range(T)) if outputs is None else [int(o) for o in outputs]
    result = np.zeros((len(outs), T))
    for r, i in enumerate(outs):
        sink = L * T + i
        for j in range(T):
            result[r, j] = maximum_flow(graph, j, sink).flow_value / FLOW_SCALE
    return result


# Flow solves one max-flow per (input, output) pair; its cost grows like L * T^2 edges per solve. Measured on this
# project's 2-core CPU: the full T x T matrix at L * T^4 = 3.4e7 (2 layers, T = 64) took 1.9 s and one output's
# row at L * T^3 = 3.1e6 (12 layers, T = 64) took 0.23 s.
FLOW_MATRIX_MAX_COST = 3.4e7  # L * T^4: the full matrix stays under ~2 s
FLOW_ROW_MAX_COST = 3.0e7  # L * T^3: one output position's row stays under ~2 s


def flow_matrix_affordable(n_layers: int, T: int) -> bool:
    return n_layers * T ** 4 <= FLOW_MATRIX_MAX_COST


def flow_row_affordable(n_layers: int, T: int) -> bool:
    return n_layers * T ** 3 <= FLOW_ROW_MAX_COST


def most_focused_row(matrix: np.ndarray, exclude: Sequence[bool] | None = None) -> int:
    """The row of a (Tq, Tk) rollout, flow or attribution matrix whose mass is most concentrated (the largest share
    of its total on one key), skipping rows marked in ``exclude`` (special tokens) and empty rows: the row a reader
    learns most from, where a flat one (an [EOS] row often is) shows little. 0 when every row is excluded."""
    m = np.asarray(matrix, dtype=np.float64)
    total = m.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        focus = np.where(total > 0, m.max(-1) / np.where(total > 0, total, 1.0), -np.inf)
    if exclude is not None:
        skip = np.zeros(len(focus), bool)
        skip[: len(exclude)] = np.asarray(list(exclude), bool)[: len(focus)]
        focus = np.where(skip, -np.inf, focus)
    return int(np.argmax(focus)) if np.isfinite(focus).any() else 0
