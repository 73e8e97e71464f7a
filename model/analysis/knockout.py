"""Attention knockouts as a what-if: cells chosen on a map (a key column, a query row, a rectangle or single
(query, key) cells) removed from one head's mask, the same input run again with them passed in the call, and what
changed. The cells travel as model.core.interventions.Cells (never a Tq x Tk array), the run computes the knocked
attention a block of query rows at a time, and the output head runs only at the positions a knockout can change (a
decoder-only model: from the first knocked query row on); the effect is computed a block of positions at a time.

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
import torch

from ..call import intervened_outputs
from ..capture.logits import KeptLogits
from ..core.interventions import Cells
from ..core.names import RecordName
from .ablation import AblationEffect, effect_of

SELECTIONS = ("key column", "query row", "rectangle", "cells")  # the ways the app picks cells
EFFECT_BLOCK_BYTES = 32 * 2**20  # the effect is computed over blocks of positions whose (rows, V) logits hold this


def select_cells(tq: int, tk: int, *, keys: Iterable[int] = (), queries: Iterable[int] = (),
                 rows: range | None = None, cols: range | None = None,
                 pairs: Iterable[tuple[int, int]] = ()) -> np.ndarray:
    """bool (Tq, Tk) of a small map, True = knock out: every query's cell at ``keys`` (key columns, e.g. an attention
    sink), every key of ``queries`` (query rows), the rectangle ``rows`` x ``cols``, and single ``pairs`` (query, key).
    A position outside the map is a ValueError. A long map: ``Cells.select`` (the same, without the array)."""
    return Cells.select(tq, tk, keys=keys, queries=queries, rows=rows, cols=cols, pairs=pairs).dense_array(tq, tk)


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


def knockout_spec(name: str, heads: Iterable[int], cells) -> dict[str, dict[int, Cells]]:
    """The knockouts of one call: the same cells (Cells, pairs or a small bool array) in each of ``heads`` of
    attention ``name``."""
    cells = Cells.of(cells)
    return {str(RecordName.parse(name)): {int(h): cells for h in heads}}


@dataclass(frozen=True)
class KnockoutEffect:
    """What knocking out some cells changed on the same input."""

    spec: dict  # {name: {head: Cells}}
    effect: AblationEffect  # per position: the original prediction before / after, and the KL
    knocked: int  # cells knocked out (summed over heads)
    already_masked: int  # of those, cells the model's mask forbade anyway (knocking them out changes nothing)
    empty_rows: int  # query rows left with no key (their context is zero)
    seconds: float


def first_position(pipe, spec: dict) -> int:
    """The first position of the output axis a knockout can change: a decoder-only model's attention is causal, so
    a position reads no query row after its own; other models' positions all may change."""
    if pipe.arch != "decoder-only":
        return 0
    rows = [Cells.of(cells).first_row() for heads in spec.values() for cells in heads.values()]
    rows = [r for r in rows if r is not None]
    return min(rows) if rows else 0


def effect_in_blocks(before: torch.Tensor | KeptLogits, after: torch.Tensor, start: int) -> AblationEffect:
    """``effect_of`` over blocks of positions (never four (T, V) float32 arrays at once): ``before`` the original
    call's logits (a tensor, or what the call kept: its blocks computed one at a time), ``after`` (T - start, V) the
    logits from position ``start`` on; the positions before it are unchanged (their effect is exactly none: read from
    the kept top logits where the call kept them, else ``effect_of`` of the same logits)."""
    T, V = before.shape
    step = max(1, EFFECT_BLOCK_BYTES // max(1, 4 * V))
    parts = []
    if isinstance(before, KeptLogits):
        if start > 0:
            parts.append(unchanged_effect(before, start))
        blocks = ((first, stop, z) for first, stop, z in before.each_block_from(start))
    else:
        blocks = ((r0, min(T, r0 + step), before[r0:min(T, r0 + step)]) for r0 in range(0, T, step))
    for first, stop, z in blocks:
        for r0 in range(first, stop, step):  # (rows, V) at a time within the block
            r1 = min(stop, r0 + step)
            if r0 < start and not isinstance(before, KeptLogits):  # (kept: unchanged_effect has these rows)
                parts.append(effect_of(z[r0 - first:min(r1, start) - first], z[r0 - first:min(r1, start) - first]))
            a = max(r0, start)
            if a < r1:
                parts.append(effect_of(z[a - first:r1 - first], after[a - start:r1 - start]))
    fields = AblationEffect.__dataclass_fields__
    return AblationEffect(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def unchanged_effect(kept: KeptLogits, stop: int) -> AblationEffect:
    """The effect at positions 0..stop - 1, which a knockout cannot change: none, from the logits the call kept (its
    top logit and log-sum-exp), without running the output head again."""
    ids, top = kept.top_ids[:stop, 0], kept.top_logits[:stop, 0]
    p = torch.exp(top - kept.lse[:stop]).numpy()
    return AblationEffect(token_ids=ids.numpy(), p_before=p, p_after=p.copy(), logit_before=top.numpy(),
                          logit_after=top.numpy().copy(), kl=np.zeros(stop, dtype=np.float32),
                          argmax_after=ids.numpy().copy())


def attention_lengths(result, name: str) -> tuple[int, int]:
    """(Tq, Tk) of attention ``name`` in ``result``'s call."""
    n = RecordName.parse(name)

    def length(stack: str) -> int:
        enc = result.source if stack == "encoder" and result.source is not None else result.target
        return len(enc.ids)
    return length(n.query_stack), length(n.key_stack)


def knockout_effect(pipe, result, spec: dict, allowed: dict[str, np.ndarray] | None = None) -> KnockoutEffect:
    """``result``'s input run again with the knockouts ``spec`` ({name: {head: cells}}) passed in the call ->
    KnockoutEffect. ``allowed``: name -> (H, Tq, Tk) bool may-attend cells of the original run (for the counts of a
    small map; model.allowed_matrix of its records). Memory: the original call's inputs, one block of rows of the
    knocked attention, and the logits of the positions the knockout can change."""
    if result.logits is None:
        raise ValueError("this model has no output head: a knockout's effect is measured on its predictions")
    started = time.perf_counter()
    spec = {name: {int(h): Cells.of(c) for h, c in heads.items()} for name, heads in spec.items()}
    T = len(result.logits)
    start = min(first_position(pipe, spec), T)
    after = intervened_outputs(pipe, result, [{"knockouts": spec}], positions=range(start, T))[0] if start < T \
        else torch.empty(0, result.logits.shape[1])
    eff = effect_in_blocks(result.logits, after, start)
    del after
    knocked = masked = empty = 0
    for name, heads in spec.items():
        tq, tk = attention_lengths(result, name)
        for h, cells in heads.items():
            knocked += cells.count(tq, tk)
            if allowed is not None and name in allowed:
                dense = cells.dense_array(tq, tk)
                ok = np.asarray(allowed[name][h], dtype=bool)[:tq, :tk]
                masked += int((dense & ~ok).sum())
                empty += int(((ok & ~dense).sum(-1) == 0).sum() - (ok.sum(-1) == 0).sum())
    return KnockoutEffect(spec=spec, effect=eff, knocked=knocked, already_masked=masked, empty_rows=empty,
                          seconds=time.perf_counter() - started)


__all__ = ["SELECTIONS", "KnockoutEffect", "attention_lengths", "effect_in_blocks", "first_position", "knockout_effect",
           "knockout_spec", "parse_pairs", "select_cells"]
