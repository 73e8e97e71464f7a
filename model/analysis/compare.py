"""Comparing two runs' attention: token alignment, Jensen-Shannon distances per head, and difference maps."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Alignment:
    """Positions of run A and run B that hold the same token, matched in order (difflib's longest matching blocks).

    Identical token sequences align every position; otherwise only the matched ones are compared.
    """

    a: np.ndarray  # (N,) positions in A
    b: np.ndarray  # (N,) positions in B, a[k] <-> b[k]
    identical: bool

    @property
    def size(self) -> int:
        return int(self.a.size)


def align_tokens(tokens_a: Sequence[str], tokens_b: Sequence[str]) -> Alignment:
    tokens_a, tokens_b = list(tokens_a), list(tokens_b)
    if tokens_a == tokens_b:
        idx = np.arange(len(tokens_a))
        return Alignment(a=idx, b=idx.copy(), identical=True)
    matcher = difflib.SequenceMatcher(a=tokens_a, b=tokens_b, autojunk=False)
    a, b = [], []
    for block in matcher.get_matching_blocks():
        a.extend(range(block.a, block.a + block.size))
        b.extend(range(block.b, block.b + block.size))
    return Alignment(a=np.asarray(a, dtype=int), b=np.asarray(b, dtype=int), identical=False)


def restrict(weights, rows: np.ndarray, cols: np.ndarray, allowed=None) -> tuple[np.ndarray, np.ndarray]:
    """(H, Tq, Tk) weights on the aligned rows and columns, each row renormalised over the kept keys; with the
    matching "may attend" mask."""
    w = np.asarray(weights, dtype=np.float64)[:, rows][:, :, cols]
    ok = np.ones_like(w, dtype=bool) if allowed is None else \
        np.broadcast_to(np.asarray(allowed, bool), np.asarray(weights).shape)[:, rows][:, :, cols]
    w = np.where(ok, w, 0.0)
    sums = w.sum(-1, keepdims=True)
    return np.where(sums > 0, w / np.where(sums > 0, sums, 1.0), 0.0), ok


def js_distance_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2, in [0, 1]) between matching rows of two (..., K) distributions."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = 0.5 * (p + q)

    def kl(x, y):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log2(np.where(x > 0, x, 1.0) / np.where(y > 0, y, 1.0)), 0.0).sum(-1)

    return np.sqrt(np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0))


def head_js_distances(weights_a, weights_b, rows_a, cols_a, rows_b, cols_b, allowed_a=None,
                      allowed_b=None) -> np.ndarray:
    """(H,) mean JS distance over the aligned query rows that have at least one allowed key in both runs."""
    wa, oka = restrict(weights_a, rows_a, cols_a, allowed_a)
    wb, okb = restrict(weights_b, rows_b, cols_b, allowed_b)
    d = js_distance_rows(wa, wb)  # (H, N)
    use = (wa.sum(-1) > 0) & (wb.sum(-1) > 0)
    with np.errstate(invalid="ignore"):
        return np.where(use.any(-1), np.where(use, d, 0.0).sum(-1) / np.maximum(use.sum(-1), 1), np.nan)


def similarity_to_reference(weights, reference, allowed=None) -> np.ndarray:
    """(H,) 1 − the mean Jensen-Shannon distance (base 2) between each query row of ``weights`` (H, Tq, Tk) and
    the same row of ``reference`` (e.g. the final model's weights on the same input), over the rows with an allowed
    key: exactly 1 for the reference itself, 0 when every row's weight lies on keys the reference row gives none."""
    w = np.asarray(weights, np.float64)
    _, Tq, Tk = w.shape
    q, k = np.arange(Tq), np.arange(Tk)
    return 1.0 - head_js_distances(w, reference, q, k, q, k, allowed, allowed)
