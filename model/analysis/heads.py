"""Per-head statistics of captured attention weights. Every function takes the weights a trace holds and the
mask that was applied; masked keys never count, and query rows with no allowed key are left out.

Shapes: ``weights`` (H, Tq, Tk); ``allowed`` bool broadcastable to it (True = may attend). Results are (H,) arrays
(NaN where a statistic has no defined value, e.g. an induction score on an input that never repeats).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STAT_DEFINITIONS = {
    "entropy": "mean over query rows of -Σ_j α_ij ln α_ij (nats), allowed keys only",
    "entropy_norm": "entropy divided by ln(number of allowed keys), per row, then averaged (rows with one key "
                    "left out): 0 = all weight on one key, 1 = uniform",
    "distance": "mean over query rows of Σ_j α_ij |i − j|: how far back (or ahead) a head looks, in tokens "
                "(self-attention only)",
    "max_weight": "mean over query rows of max_j α_ij",
    "first_share": "mean weight on the first key (BOS / [CLS] / the first token): an attention sink",
    "sep_share": "mean total weight on special tokens after the first ([SEP], [EOS], </s>, ...)",
    "self_share": "mean weight of a token on itself, α_ii (self-attention only)",
    "prev_token": "mean weight on the previous token, α_i,i−1, over rows i ≥ 1 (self-attention only)",
    "induction": "at each token seen before, the mean total weight on the tokens that followed its earlier "
                 "occurrences (decoder self-attention, inputs that repeat)",
}


def _prepare(weights, allowed):
    w = np.asarray(weights, dtype=np.float64)
    H, Tq, Tk = w.shape
    ok = np.ones((H, Tq, Tk), dtype=bool) if allowed is None else np.broadcast_to(np.asarray(allowed, bool),
                                                                                  (H, Tq, Tk))
    w = np.where(ok, w, 0.0)
    rows = ok.any(-1)  # (H, Tq) query rows with at least one allowed key
    return w, ok, rows


def _row_mean(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean of (H, Tq) values over the True rows of each head (NaN when a head has none)."""
    n = rows.sum(-1)
    total = np.where(rows, values, 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def entropy(weights, allowed=None) -> tuple[np.ndarray, np.ndarray]:
    """(entropy in nats, entropy normalised by ln(allowed keys)), each (H,)."""
    w, ok, rows = _prepare(weights, allowed)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)
    ent = -plogp.sum(-1)  # (H, Tq)
    n_keys = ok.sum(-1)
    norm_rows = rows & (n_keys > 1)
    norm = np.where(norm_rows, ent / np.log(np.maximum(n_keys, 2)), 0.0)
    return _row_mean(ent, rows), _row_mean(norm, norm_rows)


def mean_distance(weights, allowed=None, q_positions=None, k_positions=None) -> np.ndarray:
    """Σ_j α_ij |i − j| averaged over rows, (H,). Positions default to 0..T-1 on both axes."""
    w, ok, rows = _prepare(weights, allowed)
    H, Tq, Tk = w.shape
    qp = np.arange(Tq) if q_positions is None else np.asarray(q_positions)
    kp = np.arange(Tk) if k_positions is None else np.asarray(k_positions)
    dist = np.abs(qp[:, None] - kp[None, :])
    return _row_mean((w * dist).sum(-1), rows)


def max_weight(weights, allowed=None) -> np.ndarray:
    w, ok, rows = _prepare(weights, allowed)
    return _row_mean(w.max(-1), rows)


def key_share(weights, keys: Sequence[int] | np.ndarray, allowed=None) -> np.ndarray:
    """Mean over rows of the total weight on the given key positions, (H,)."""
    w, ok, rows = _prepare(weights, allowed)
    keys = np.asarray(list(keys), dtype=int)
    if keys.size == 0:
        return np.zeros(w.shape[0])
    return _row_mean(w[..., keys].sum(-1), rows)


def diagonal_score(weights, allowed=None) -> np.ndarray:
    """Mean weight of each query on its own position (self-attention), (H,)."""
    w, ok, rows = _prepare(weights, allowed)
    T = min(w.shape[1], w.shape[2])
    diag = np.zeros(w.shape[:2])
    diag[:, :T] = w[:, np.arange(T), np.arange(T)]
    return _row_mean(diag, rows)


def previous_token_score(weights, allowed=None) -> np.ndarray:
    """Mean weight on key i−1 over query rows i ≥ 1 (self-attention), (H,)."""
    w, ok, rows = _prepare(weights, allowed)
    H, Tq, Tk = w.shape
    prev = np.zeros((H, Tq))
    i = np.arange(1, min(Tq, Tk + 1))
    prev[:, i] = w[:, i, i - 1]
    use = rows.copy()
    use[:, 0] = False
    return _row_mean(prev, use)


def induction_targets(ids: Sequence[int], ignore: Sequence[int] = ()) -> list[list[int]]:
    """For each position i: the positions j + 1 where ids[j] == ids[i] for an earlier j < i (the token that came
    after each earlier occurrence). Empty when the token has not occurred before (or is in ``ignore``)."""
    seen: dict[int, list[int]] = {}
    out: list[list[int]] = []
    skip = set(ignore)
    for i, t in enumerate(ids):
        out.append([j + 1 for j in seen.get(t, []) if j + 1 <= i] if t not in skip else [])
        seen.setdefault(t, []).append(i)
    return out


def induction_score(weights, ids: Sequence[int], allowed=None, ignore: Sequence[int] = ()) -> np.ndarray:
    """Mean over repeated-token positions of the total weight on the induction targets, (H,); NaN when no token
    repeats. A perfect induction head scores 1; uniform causal attention scores ``induction_chance``."""
    w, ok, rows = _prepare(weights, allowed)
    H, Tq, Tk = w.shape
    targets = induction_targets(list(ids)[:Tq], ignore)
    values, use = np.zeros((H, Tq)), np.zeros((H, Tq), dtype=bool)
    for i, tg in enumerate(targets):
        tg = [t for t in tg if t < Tk]
        if tg:
            values[:, i] = w[:, i, tg].sum(-1)
            use[:, i] = rows[:, i]
    return _row_mean(values, use)


def uniform_weights(allowed: np.ndarray) -> np.ndarray:
    """Uniform attention over the allowed keys of each row: the chance baseline of every score."""
    ok = np.asarray(allowed, dtype=np.float64)
    n = ok.sum(-1, keepdims=True)
    return np.where(n > 0, ok / np.maximum(n, 1), 0.0)


@dataclass(frozen=True)
class HeadScores:
    """One attention's statistics, one value per head (see STAT_DEFINITIONS)."""

    entropy: np.ndarray
    entropy_norm: np.ndarray
    distance: np.ndarray | None  # None for cross-attention (positions of two different sequences)
    max_weight: np.ndarray
    first_share: np.ndarray
    sep_share: np.ndarray
    self_share: np.ndarray | None
    prev_token: np.ndarray | None
    induction: np.ndarray | None  # None unless decoder self-attention on an input with a repeated token

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def head_scores(weights, allowed, *, self_attention: bool, causal: bool, key_ids: Sequence[int] | None = None,
                key_special: Sequence[bool] | None = None, special_ids: Sequence[int] = ()) -> HeadScores:
    """Every statistic of one record's weights (H, Tq, Tk) for one input."""
    ent, ent_norm = entropy(weights, allowed)
    Tk = np.asarray(weights).shape[-1]
    seps = [j for j in range(1, Tk) if key_special is not None and j < len(key_special) and key_special[j]]
    induction = None
    if self_attention and causal and key_ids is not None:
        score = induction_score(weights, key_ids, allowed, ignore=special_ids)
        induction = None if np.all(np.isnan(score)) else score
    return HeadScores(
        entropy=ent, entropy_norm=ent_norm,
        distance=mean_distance(weights, allowed) if self_attention else None,
        max_weight=max_weight(weights, allowed), first_share=key_share(weights, [0], allowed),
        sep_share=key_share(weights, seps, allowed),
        self_share=diagonal_score(weights, allowed) if self_attention else None,
        prev_token=previous_token_score(weights, allowed) if self_attention else None,
        induction=induction)


def head_table(get_record, names: Sequence[str], ids: dict[str, Sequence[int]],
               special: dict[str, Sequence[bool]], special_ids: Sequence[int] = ()):
    """Every head of every named attention, one row each, with every statistic (NaN where undefined): a DataFrame.

    ``get_record(name)`` gives a NumPy AttentionRecord (batch item 0); ``ids`` / ``special``: per stack
    ("encoder" / "decoder"), the token ids and special-token flags on that stack's axis.
    """
    import pandas as pd

    from ..trace import allowed_matrix, parse_name

    rows = []
    for name in names:
        rec = get_record(name)
        stack, layer, kind = parse_name(name)
        key_stack = "encoder" if kind == "cross_attn" else stack
        weights = np.asarray(rec.weights)[0]
        allowed = allowed_matrix(rec)
        causal = rec.causal_mask is not None
        scores = head_scores(weights, allowed, self_attention=kind == "self_attn", causal=causal,
                             key_ids=ids.get(key_stack), key_special=special.get(key_stack), special_ids=special_ids)
        values = scores.as_dict()
        for h in range(weights.shape[0]):
            row = {"attention": name, "stack": stack, "layer": layer, "kind": kind, "head": h}
            for stat in STAT_DEFINITIONS:
                v = values.get(stat)
                row[stat] = float(v[h]) if v is not None else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def alignment_score(weights, reference, allowed=None) -> np.ndarray:
    """(H,) mean over query rows of the weight on the key that ``reference`` (same shape: e.g. the final model's
    weights on the same input) attends to most in that row: 1 when a snapshot already looks where the trained model
    looks, about 1/keys for uniform attention."""
    w, ok, rows = _prepare(weights, allowed)
    ref = np.where(ok, np.asarray(reference, dtype=np.float64), -np.inf)
    target = ref.argmax(-1)  # (H, Tq)
    picked = np.take_along_axis(w, target[..., None], axis=-1)[..., 0]
    return _row_mean(picked, rows)
