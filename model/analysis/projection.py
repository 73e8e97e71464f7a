"""Queries and keys of one head in one picture (AttentionViz): q and k vectors of many tokens projected jointly onto
their first principal components, after two changes that leave every attention weight as it was.

- Keys are translated so that their mean is the mean query: q . (k + c) = q . k + q . c, the same shift for every
  key a query sees, which the softmax removes.
- Queries are scaled by s and keys by 1 / s so that their mean norms agree: (s q) . (k / s) = q . k.

Without them the queries and the keys of a head often sit in two far-apart clouds and the picture shows only that.
PCA is NumPy's SVD of the centred points (no extra dependency; UMAP would add one and a random layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Projection:
    """``points`` (n_q + n_k, dims): the queries' rows first, then the keys'."""

    points: np.ndarray
    explained: np.ndarray  # (dims,) share of the variance along each component
    components: np.ndarray  # (dims, d) unit vectors
    mean: np.ndarray  # (d,) what was subtracted before projecting
    key_shift: np.ndarray  # (d,) c, added to every key
    scale: float  # s: queries x s, keys / s


def balance_queries_and_keys(q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(q s, (k + c) / s, c, s): keys moved onto the queries' centroid, norms balanced; every q . k changes by a
    constant per query (q . c), so no attention weight changes."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    shift = q.mean(0) - k.mean(0) if len(q) and len(k) else np.zeros(q.shape[1] if q.ndim == 2 else 0)
    k = k + shift
    nq = float(np.linalg.norm(q, axis=1).mean()) if len(q) else 0.0
    nk = float(np.linalg.norm(k, axis=1).mean()) if len(k) else 0.0
    scale = float(np.sqrt(nk / nq)) if nq > 0 and nk > 0 else 1.0
    return q * scale, k / scale, shift, scale


def qk_projection(q: np.ndarray, k: np.ndarray, dims: int = 2, balance: bool = True) -> Projection:
    """Joint PCA of query vectors (n_q, d) and key vectors (n_k, d) -> Projection."""
    q, k = np.asarray(q, dtype=np.float64), np.asarray(k, dtype=np.float64)
    d = q.shape[-1] if q.ndim == 2 else k.shape[-1]
    q, k = q.reshape(-1, d), k.reshape(-1, d)
    if balance:
        q, k, shift, scale = balance_queries_and_keys(q, k)
    else:
        shift, scale = np.zeros(d), 1.0
    x = np.concatenate([q, k], axis=0)
    mean = x.mean(0) if len(x) else np.zeros(d)
    centred = x - mean
    if len(x) < 2:
        comps = np.eye(d)[:dims]
        return Projection(points=centred @ comps.T, explained=np.zeros(len(comps)), components=comps, mean=mean,
                          key_shift=shift, scale=scale)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    # a fixed sign per component (largest coordinate positive), so the picture does not flip between runs
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    comps = vt[:dims]
    var = sv ** 2
    explained = var[:dims] / var.sum() if var.sum() > 0 else np.zeros(len(comps))
    if len(comps) < dims:  # fewer points or dimensions than asked: pad with zero axes
        pad = dims - len(comps)
        comps = np.vstack([comps, np.zeros((pad, d))])
        explained = np.concatenate([explained, np.zeros(pad)])
    return Projection(points=centred @ comps.T, explained=explained, components=comps, mean=mean, key_shift=shift,
                      scale=scale)


__all__ = ["Projection", "balance_queries_and_keys", "qk_projection"]
