"""Attention knockouts as a what-if: cells chosen on a map (a key column, a query row, a rectangle or single
(query, key) cells) removed from one head's mask, the same input run again with them passed in the call, and what
changed.

The knocked-out cells join the mask (reason "knocked out"), each row renormalises over the keys left, and a row
with no key left gives zeros (model.core.interventions). Effects per position, as for an ablation
(model.analysis.ablation): the original prediction's probability and logit before and after, and
KL(before || after).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..call import intervened_outputs
from ..core.names import RecordName
from .ablation import AblationEffect, effect_of

SELECTIONS = ("key column", "query row", "rectangle", "cells")  # the ways the app picks cells


def select_cells(tq: int, tk: int, *, keys: Iterable[int] = (), queries: Iterable[int] = (),
                 rows: range | None = None, cols: range | None = None,
                 pairs: Iterable[tuple[int, int]] = ()) -> np.ndarray:
    """bool (Tq, Tk), True = knock out: every query's cell at ``keys`` (key columns, e.g. an attention sink), every
    key of ``queries`` (query rows), the rectangle ``rows`` x ``cols``, and single ``pairs`` (query, key). A position
    outside the map is a ValueError."""
    cells = np.zeros((tq, tk), dtype=bool)

    def check(values, n, what):
        values = [int(v) for v in values]
        bad = [v for v in values if not 0 <= v < n]
        if bad:
            raise ValueError(f"{what} {bad} outside 0..{n - 1}")
        return values

    cells[:, check(keys, tk, "key")] = True
    cells[check(queries, tq, "query"), :] = True
    if rows is not None or cols is not None:
        rows = range(tq) if rows is None else rows
        cols = range(tk) if cols is None else cols
        if len(rows) and len(cols):
            check([rows.start, rows.stop - 1], tq, "rows")
            check([cols.start, cols.stop - 1], tk, "columns")
            cells[rows.start:rows.stop, cols.start:cols.stop] = True
    for q, k in pairs:
        check([q], tq, "query")
        check([k], tk, "key")
        cells[int(q), int(k)] = True
    return cells


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """``"3,5; 4 5"`` -> [(3, 5), (4, 5)]: (query, key) pairs separated by ";" or new lines; ValueError naming the
    piece that is not a pair of integers."""
    pairs = []
    for piece in text.replace("\n", ";").split(";"):
        piece = piece.strip().strip("()")
        if not piece:
            continue
        parts = piece.replace(",", " ").split()
        if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError(f"{piece[:40]!r} is not a (query, key) pair of integers")
        pairs.append((int(parts[0]), int(parts[1])))
    return pairs


def knockout_spec(name: str, heads: Iterable[int], cells: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
    """The knockouts of one call: the same cells in each of ``heads`` of attention ``name``."""
    return {str(RecordName.parse(name)): {int(h): np.asarray(cells, dtype=bool) for h in heads}}


@dataclass(frozen=True)
class KnockoutEffect:
    """What knocking out some cells changed on the same input."""

    spec: dict  # {name: {head: bool (Tq, Tk)}}
    effect: AblationEffect  # per position: the original prediction before / after, and the KL
    knocked: int  # cells knocked out (summed over heads)
    already_masked: int  # of those, cells the model's mask forbade anyway (knocking them out changes nothing)
    empty_rows: int  # query rows left with no key (their context is zero)
    seconds: float


def knockout_effect(pipe, result, spec: dict, allowed: dict[str, np.ndarray] | None = None) -> KnockoutEffect:
    """``result``'s input run again with the knockouts ``spec`` ({name: {head: cells}}) passed in the call ->
    KnockoutEffect. ``allowed``: name -> (H, Tq, Tk) bool may-attend cells of the original run (for the counts;
    model.allowed_matrix of its records)."""
    if result.logits is None:
        raise ValueError("this model has no output head: a knockout's effect is measured on its predictions")
    started = time.perf_counter()
    after = intervened_outputs(pipe, result, [{"knockouts": spec}])[0]
    eff = effect_of(result.logits, after)
    knocked = masked = empty = 0
    for name, heads in spec.items():
        for h, cells in heads.items():
            cells = np.asarray(cells, dtype=bool)
            knocked += int(cells.sum())
            if allowed is not None and name in allowed:
                ok = np.asarray(allowed[name][h], dtype=bool)[: cells.shape[0], : cells.shape[1]]
                masked += int((cells & ~ok).sum())
                empty += int(((ok & ~cells).sum(-1) == 0).sum() - (ok.sum(-1) == 0).sum())
    return KnockoutEffect(spec=spec, effect=eff, knocked=knocked, already_masked=masked, empty_rows=empty,
                          seconds=time.perf_counter() - started)


__all__ = ["SELECTIONS", "KnockoutEffect", "knockout_effect", "knockout_spec", "parse_pairs", "select_cells"]
