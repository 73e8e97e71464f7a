"""Per-head statistics of attention weights, named and tested, all defined once in ``model.core.rowstats`` (per query
row, a block of rows at a time) and averaged per head: the same numbers for a full trace, a lazy trace's first
pass at any length, the Statistics view and the corpus atlas.

Shapes here: ``weights`` (H, Tq, Tk); ``allowed`` bool broadcastable to it (True = may attend). Results are (H,)
arrays (NaN where a statistic has no defined value, e.g. an induction score on an input that never repeats).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..capture.trace import Trace
from ..core.names import RecordName
from ..core.rowstats import STAT_DEFINITIONS, KeyFacts, collect, head_statistics, induction_targets, row_statistics


def _statistics(weights, allowed=None, *, self_attention: bool = True, ids: Sequence[int] | None = None,
                ignore: Sequence[int] = (), special: Sequence[bool] | None = None) -> dict[str, np.ndarray]:
    """Every statistic of (H, Tq, Tk) weights as one full block through model.core.rowstats."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    H, Tq, Tk = w.shape
    ok = None
    if allowed is not None:
        ok = torch.from_numpy(np.array(np.broadcast_to(np.asarray(allowed, bool), (H, Tq, Tk))))[None]
        w = torch.where(ok[0], w, torch.zeros((), dtype=w.dtype))
    qp = torch.arange(Tq)
    facts = KeyFacts(special=special, induction=None if ids is None else induction_targets(list(ids)[:Tq], ignore))
    valid = torch.ones(1, Tq, dtype=torch.bool)
    block = row_statistics(w[None], ok, qp, self_attention=self_attention, keys=[facts], query_valid=valid)
    return head_statistics(collect([block], valid, qp, self_attention))


def entropy(weights, allowed=None) -> tuple[np.ndarray, np.ndarray]:
    """(entropy in nats, entropy normalised by ln(allowed keys)), each (H,)."""
    s = _statistics(weights, allowed)
    return s["entropy"], s["entropy_norm"]


def mean_distance(weights, allowed=None) -> np.ndarray:
    """Σ_j α_ij |i − j| averaged over rows, (H,) (self-attention positions 0..T-1 on both axes)."""
    return _statistics(weights, allowed)["distance"]


def max_weight(weights, allowed=None) -> np.ndarray:
    return _statistics(weights, allowed)["max_weight"]


def key_share(weights, keys: Sequence[int] | np.ndarray, allowed=None) -> np.ndarray:
    """Mean over rows of the total weight on the given key positions, (H,)."""
    w = np.asarray(weights, dtype=np.float64)
    keys = np.asarray(list(keys), dtype=int)
    if keys.size == 0:
        return np.zeros(w.shape[0])
    H, Tq, Tk = w.shape
    ok = np.ones((H, Tq, Tk), bool) if allowed is None else np.broadcast_to(np.asarray(allowed, bool), (H, Tq, Tk))
    rows = ok.any(-1)
    total = np.where(ok, w, 0.0)[..., keys].sum(-1)
    n = rows.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(rows, total, 0.0).sum(-1) / np.maximum(n, 1), np.nan)


def diagonal_score(weights, allowed=None) -> np.ndarray:
    """Mean weight of each query on its own position (self-attention), (H,)."""
    return _statistics(weights, allowed)["self_share"]


def previous_token_score(weights, allowed=None) -> np.ndarray:
    """Mean weight on key i−1 over query rows i ≥ 1 (self-attention), (H,)."""
    return _statistics(weights, allowed)["prev_token"]


def induction_score(weights, ids: Sequence[int], allowed=None, ignore: Sequence[int] = ()) -> np.ndarray:
    """Mean over repeated-token positions of the total weight on the induction targets, (H,); NaN when no token
    repeats. A perfect induction head scores 1; uniform causal attention scores the chance level."""
    s = _statistics(weights, allowed, ids=ids, ignore=ignore)
    return s.get("induction", np.full(np.asarray(weights).shape[0], np.nan))


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
    """The statistics of one record's weights (H, Tq, Tk) for one input."""
    ids = key_ids if self_attention and causal else None
    s = _statistics(weights, allowed, self_attention=self_attention, ids=ids, ignore=special_ids,
                    special=key_special)
    return HeadScores(entropy=s["entropy"], entropy_norm=s["entropy_norm"], distance=s.get("distance"),
                      max_weight=s["max_weight"], first_share=s["first_share"], sep_share=s["sep_share"],
                      self_share=s.get("self_share"), prev_token=s.get("prev_token"), induction=s.get("induction"))


def head_table(trace: Trace, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Every head of every named attention of a trace, one row each, with every statistic of STAT_DEFINITIONS (NaN
    where undefined) and ``sink_key``: from the trace's row statistics (a lazy trace's first pass: no record is
    computed, at any length)."""
    rows = []
    for name in (names if names is not None else list(trace)):
        n = RecordName.parse(name)
        values = head_statistics(trace.row_stats(name))
        H = len(values["entropy"])
        for h in range(H):
            row = {"attention": name, "stack": n.stack, "layer": n.layer, "sublayer": n.sublayer, "kind": n.kind,
                   "head": h}
            for stat in STAT_DEFINITIONS:
                v = values.get(stat)
                row[stat] = float(v[h]) if v is not None else float("nan")
            row["sink_key"] = int(values["sink_key"][h])
            rows.append(row)
    return pd.DataFrame(rows)


def alignment_score(weights, reference, allowed=None) -> np.ndarray:
    """(H,) mean over query rows of the weight on the key that ``reference`` (same shape: e.g. the final model's
    weights on the same input) attends to most in that row: 1 when a snapshot already looks where the trained model
    looks, about 1/keys for uniform attention."""
    w = np.asarray(weights, dtype=np.float64)
    H, Tq, Tk = w.shape
    ok = np.ones((H, Tq, Tk), bool) if allowed is None else np.broadcast_to(np.asarray(allowed, bool), (H, Tq, Tk))
    w = np.where(ok, w, 0.0)
    rows = ok.any(-1)
    ref = np.where(ok, np.asarray(reference, dtype=np.float64), -np.inf)
    target = ref.argmax(-1)  # (H, Tq)
    picked = np.take_along_axis(w, target[..., None], axis=-1)[..., 0]
    n = rows.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(rows, picked, 0.0).sum(-1) / np.maximum(n, 1), np.nan)


__all__ = ["HeadScores", "STAT_DEFINITIONS", "alignment_score", "diagonal_score", "entropy", "head_scores",
           "head_table", "induction_score", "induction_targets", "key_share", "max_weight", "mean_distance",
           "previous_token_score", "uniform_weights"]
