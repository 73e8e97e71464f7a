"""What a call may change in the model's attention, passed in the call (never left on the shared model).

- ablations: ``{name: {head: "zero" | "mean" | tensor}}``: the head's context is replaced by 0, by its mean over the
  real query positions, or by a given (Tq, d_v) tensor (head patching: the context the head had on another input);
- knockouts: ``{name: {head: cells}}``: cells (query, key) removed from that head's mask, as (query, key) pairs or a
  bool (Tq, Tk) array (True = knocked out); each row renormalises over the keys left, a row with none left gives
  zeros.

Both are given for the final lengths of the call; while decoding (which runs the whole prefix at each step) each
step applies the rows and keys that exist so far.

Either may be a list with one such dict per batch element (one batched pass, each element its own intervention).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

ABLATION_MODES = ("zero", "mean")  # replace a head's context by 0, or by its mean over the real query positions

Ablations = Mapping[str, Mapping[int, object]] | Sequence[Mapping[str, Mapping[int, object]]]
Knockouts = Mapping[str, Mapping[int, object]] | Sequence[Mapping[str, Mapping[int, object]]]


def per_item(spec) -> tuple[Mapping, ...]:
    """One dict, or a list of them (one per batch element) -> a tuple of dicts."""
    if spec is None:
        return ()
    return (spec,) if isinstance(spec, Mapping) else tuple(spec)


@dataclass(frozen=True)
class Interventions:
    """The ablations and knockouts of one call, one dict per batch element (or one for all)."""

    ablations: tuple[Mapping[str, Mapping[int, object]], ...] = ()
    knockouts: tuple[Mapping[str, Mapping[int, object]], ...] = ()

    @classmethod
    def of(cls, ablations: Ablations | None = None, knockouts: Knockouts | None = None) -> Interventions:
        return cls(per_item(ablations), per_item(knockouts))

    def __bool__(self) -> bool:
        return any(self.ablations) or any(self.knockouts)

    def ablation_for(self, name: str) -> tuple[dict[int, object], ...] | None:
        items = tuple({int(h): m for h, m in spec.get(name, {}).items()} for spec in self.ablations)
        return items if any(items) else None

    def knockouts_for(self, name: str) -> tuple[dict[int, object], ...] | None:
        items = tuple({int(h): c for h, c in spec.get(name, {}).items()} for spec in self.knockouts)
        return items if any(items) else None


def validate(interventions: Interventions, names: Collection[str], n_heads: int) -> None:
    """A clear ValueError for an unknown attention name, head or mode."""
    for kind, specs in (("ablate", interventions.ablations), ("knock out", interventions.knockouts)):
        for spec in specs:
            for name, heads in spec.items():
                if name not in names:
                    raise ValueError(f"cannot {kind} {name!r}: this model has {sorted(names)}")
                for head, value in heads.items():
                    if not isinstance(head, (int, np.integer)) or not 0 <= int(head) < n_heads:
                        raise ValueError(f"{name} has heads 0..{n_heads - 1}, not {head!r}")
                    if kind == "ablate" and not isinstance(value, torch.Tensor) and value not in ABLATION_MODES:
                        raise ValueError(f"ablation must be one of {ABLATION_MODES} or a tensor, got {value!r}")


def ablate(context: torch.Tensor, per_item: tuple[dict[int, object], ...], query_valid: torch.Tensor | None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """context (B, H, Tq, d_v) with the named heads zeroed, set to their mean over the real query positions, or
    replaced by a given (Tq, d_v) tensor (patching). Returns (new context, ablated (B, H) bool)."""
    B, H, Tq, d_v = context.shape
    out = context.clone()
    ablated = torch.zeros(B, H, dtype=torch.bool)
    for b in range(B):
        spec = per_item[b] if len(per_item) > 1 else per_item[0]
        valid = None if query_valid is None else query_valid[b if query_valid.shape[0] > 1 else 0]
        for head, mode in spec.items():
            ablated[b, head] = True
            if isinstance(mode, torch.Tensor):
                # a context for the final length: while decoding, a call sees its first rows (a prefix)
                if mode.dim() != 2 or mode.shape[0] < Tq or mode.shape[1] != d_v:
                    raise ValueError(f"a patched head's context must be ({Tq}, {d_v}), got {tuple(mode.shape)}")
                out[b, head] = mode[:Tq].to(out.dtype).to(out.device)
            elif mode == "zero":
                out[b, head] = 0
            else:
                rows = context[b, head] if valid is None else context[b, head][valid]
                out[b, head] = rows.mean(0, keepdim=True) if rows.shape[0] else 0
    return out, ablated


def knockout_cells(cells, tq: int, tk: int) -> torch.Tensor:
    """(query, key) pairs, or a bool (Tq, Tk) array (NumPy, torch or nested lists) -> bool (Tq, Tk), True = knocked
    out. Cells beyond this call's lengths are left out: while decoding, a call sees a prefix of the final sequence
    (its first query rows, and for self-attention its first keys), so an array may be larger than (tq, tk) and
    pairs may lie beyond them. A smaller array, a negative index or a cell that is not a pair of integers is a
    ValueError."""
    arr = cells.detach().cpu().numpy() if isinstance(cells, torch.Tensor) else np.asarray(
        cells if isinstance(cells, np.ndarray) else list(cells))
    if arr.dtype == bool:
        if arr.ndim != 2 or arr.shape[0] < tq or arr.shape[1] < tk:
            raise ValueError(f"a knockout array must be ({tq}, {tk}), got {tuple(arr.shape)}")
        return torch.from_numpy(np.ascontiguousarray(arr[:tq, :tk]))
    out = torch.zeros(tq, tk, dtype=torch.bool)
    if arr.size == 0:
        return out
    if arr.dtype.kind not in "iu" or arr.shape[-1] != 2:
        raise ValueError(f"knockout cells must be (query, key) pairs of integers or a bool array, got {arr.dtype} "
                         f"of shape {tuple(arr.shape)}")
    pairs = arr.reshape(-1, 2).astype(np.int64)
    if (pairs < 0).any():
        raise ValueError("knockout cells must be (query, key) positions >= 0")
    pairs = pairs[(pairs[:, 0] < tq) & (pairs[:, 1] < tk)]
    out[torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])] = True
    return out


def knocked_cells(per_item: tuple[dict[int, object], ...], batch: int, tq: int, tk: int
                  ) -> dict[tuple[int, int], torch.Tensor]:
    """{(batch element, head): bool (Tq, Tk), True = knocked out} for the heads that have knockouts."""
    out = {}
    for b in range(batch):
        spec = per_item[b] if len(per_item) > 1 else per_item[0]
        for head, cells in spec.items():
            out[b, int(head)] = knockout_cells(cells, tq, tk)
    return out


def knockout_block(knocked: dict[tuple[int, int], torch.Tensor], batch: int, heads: range, rows: range,
                   tk: int, device=None) -> torch.Tensor | None:
    """bool (B, h, r, Tk), True where a cell is knocked out, for some heads and rows; None when none is."""
    if not any(h in heads for _, h in knocked):
        return None
    out = torch.zeros(batch, len(heads), len(rows), tk, dtype=torch.bool)
    for (b, h), cells in knocked.items():
        if h in heads:
            out[b, heads.index(h)] = cells[rows.start:rows.stop]
    return out.to(device)


__all__ = ["ABLATION_MODES", "Ablations", "Interventions", "Knockouts", "ablate", "knockout_block", "knockout_cells",
           "knocked_cells", "per_item", "validate"]
