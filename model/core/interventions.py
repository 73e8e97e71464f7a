"""What a call may change in the model's attention, passed in the call (never left on the shared model).

- ablations: ``{name: {head: "zero" | "mean" | tensor}}``: the head's context is replaced by 0, by its mean over the
  real query positions, or by a given (Tq, d_v) tensor (head patching: the context the head had on another input);
- knockouts: ``{name: {head: cells}}``: cells (query, key) removed from that head's mask, as ``Cells`` (key columns,
  query rows, rectangles and single pairs, never a (Tq, Tk) array: what a long input needs), (query, key) pairs, or a
  bool (Tq, Tk) array of a small map (True = knocked out; up to DENSE_MAX_CELLS cells); each row renormalises over
  the keys left, a row with none left gives zeros. The call computes the mask a block of query rows at a time.

Both are given for the final lengths of the call; while decoding (which runs the whole prefix at each step) each
step applies the rows and keys that exist so far.

Either may be a list with one such dict per batch element (one batched pass, each element its own intervention).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

ABLATION_MODES = ("zero", "mean")  # replace a head's context by 0, or by its mean over the real query positions
DENSE_MAX_CELLS = 1 << 22  # a bool array of knockout cells is taken up to this many cells (2,048 x 2,048); give Cells
COUNT_BLOCK_CELLS = 1 << 22  # Cells.count and friends look at this many cells at a time

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


Rect = tuple[int, int | None, int, int | None]  # (first row, row end, first column, column end); None = the axis's end


def _no_pairs() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Cells:
    """The knocked-out cells of one head, without a (Tq, Tk) array: rectangles of query rows x key columns (a key
    column, a query row, a block) and single (query, key) pairs, or, for a small map, a bool array. ``block(rows, tk)``
    gives the bool cells of some query rows, as a pass over the call needs them. Positions beyond a call's lengths are
    left out (while decoding a call sees a prefix of the final sequence)."""

    rects: tuple[Rect, ...] = ()
    pairs: np.ndarray = field(default_factory=_no_pairs)  # (N, 2) int64 (query, key), sorted and unique
    dense: np.ndarray | None = None  # bool (Tq', Tk') of a small map, True = knocked out

    @classmethod
    def of(cls, cells) -> Cells:
        """Cells as given: Cells, (query, key) pairs, or a bool (Tq, Tk) array (NumPy, torch or nested lists; at most
        DENSE_MAX_CELLS). ValueError for a negative index or a cell that is not a pair of integers."""
        if isinstance(cells, Cells):
            return cells
        arr = cells.detach().cpu().numpy() if isinstance(cells, torch.Tensor) else np.asarray(
            cells if isinstance(cells, np.ndarray) else list(cells))
        if arr.dtype == bool:
            if arr.ndim != 2:
                raise ValueError(f"a knockout array must be 2-D (Tq, Tk), got {tuple(arr.shape)}")
            if arr.size > DENSE_MAX_CELLS:
                raise ValueError(f"a knockout array of {arr.shape[0]:,} x {arr.shape[1]:,} cells is too large: give "
                                 "key columns, query rows, rectangles or pairs (model.core.interventions.Cells)")
            return cls(dense=np.ascontiguousarray(arr))
        if arr.size == 0:
            return cls()
        if arr.dtype.kind not in "iu" or arr.shape[-1] != 2:
            raise ValueError(f"knockout cells must be (query, key) pairs of integers or a bool array, got {arr.dtype} "
                             f"of shape {tuple(arr.shape)}")
        pairs = arr.reshape(-1, 2).astype(np.int64)
        if (pairs < 0).any():
            raise ValueError("knockout cells must be (query, key) positions >= 0")
        return cls(pairs=np.unique(pairs, axis=0))

    @classmethod
    def select(cls, tq: int, tk: int, *, keys: Iterable[int] = (), queries: Iterable[int] = (),
               rows: range | None = None, cols: range | None = None,
               pairs: Iterable[tuple[int, int]] = ()) -> Cells:
        """Every query's cell at ``keys`` (key columns, e.g. an attention sink), every key of ``queries`` (query rows),
        the rectangle ``rows`` x ``cols`` and single ``pairs`` (query, key) of a (tq, tk) map. A position outside the
        map is a ValueError."""
        def check(values, n, what):
            values = [int(v) for v in values]
            bad = [v for v in values if not 0 <= v < n]
            if bad:
                raise ValueError(f"{what} {bad[:10]} outside 0..{n - 1}")
            return values

        rects: list[Rect] = [(0, None, k, k + 1) for k in sorted(set(check(keys, tk, "key")))]
        rects += [(q, q + 1, 0, None) for q in sorted(set(check(queries, tq, "query")))]
        if rows is not None or cols is not None:
            rows = range(tq) if rows is None else rows
            cols = range(tk) if cols is None else cols
            if len(rows) and len(cols):
                check([rows.start, rows.stop - 1], tq, "rows")
                check([cols.start, cols.stop - 1], tk, "columns")
                rects.append((rows.start, rows.stop, cols.start, cols.stop))
        pairs = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
        check(pairs[:, 0], tq, "query")
        check(pairs[:, 1], tk, "key")
        return cls(rects=tuple(rects), pairs=np.unique(pairs, axis=0))

    def __bool__(self) -> bool:
        return bool(self.rects) or len(self.pairs) > 0 or (self.dense is not None and bool(self.dense.any()))

    def check(self, tq: int, tk: int) -> None:
        """ValueError when a bool array is smaller than the (tq, tk) map it is applied to."""
        if self.dense is not None and (self.dense.shape[0] < tq or self.dense.shape[1] < tk):
            raise ValueError(f"a knockout array must be ({tq}, {tk}), got {tuple(self.dense.shape)}")

    def block(self, rows: range, tk: int) -> torch.Tensor:
        """bool (len(rows), tk), True = knocked out: the cells of some query rows."""
        out = torch.zeros(len(rows), tk, dtype=torch.bool)
        if self.dense is not None:
            part = self.dense[rows.start:rows.stop, :tk]
            out[: part.shape[0], : part.shape[1]] = torch.from_numpy(np.ascontiguousarray(part))
        for r0, r1, c0, c1 in self.rects:
            a, b = max(r0, rows.start), min(rows.stop if r1 is None else r1, rows.stop)
            if a < b:
                out[a - rows.start:b - rows.start, c0:tk if c1 is None else min(c1, tk)] = True
        if len(self.pairs):
            inside = (self.pairs[:, 0] >= rows.start) & (self.pairs[:, 0] < rows.stop) & (self.pairs[:, 1] < tk)
            p = self.pairs[inside]
            out[torch.from_numpy(p[:, 0] - rows.start), torch.from_numpy(p[:, 1])] = True
        return out

    def row_blocks(self, tq: int, tk: int) -> Iterable[tuple[range, torch.Tensor]]:
        """(rows, block) over the whole (tq, tk) map, COUNT_BLOCK_CELLS cells at a time."""
        step = max(1, COUNT_BLOCK_CELLS // max(1, tk))
        for r0 in range(0, tq, step):
            rows = range(r0, min(tq, r0 + step))
            yield rows, self.block(rows, tk)

    def dense_array(self, tq: int, tk: int) -> np.ndarray:
        """bool (tq, tk): for a small map only (at most DENSE_MAX_CELLS cells)."""
        if tq * tk > DENSE_MAX_CELLS:
            raise ValueError(f"{tq:,} x {tk:,} cells are too many for one array")
        self.check(tq, tk)
        return self.block(range(tq), tk).numpy()

    def count(self, tq: int, tk: int) -> int:
        """The distinct cells inside a (tq, tk) map."""
        return sum(int(b.sum()) for _, b in self.row_blocks(tq, tk))

    def first_row(self) -> int | None:
        """The first query row with a knocked-out cell (None: no cell)."""
        starts = [r0 for r0, r1, c0, c1 in self.rects if (r1 is None or r1 > r0) and (c1 is None or c1 > c0)]
        if len(self.pairs):
            starts.append(int(self.pairs[:, 0].min()))
        if self.dense is not None and self.dense.any():
            starts.append(int(np.flatnonzero(self.dense.any(1))[0]))
        return min(starts) if starts else None

    def nbytes(self) -> int:
        return self.pairs.nbytes + 32 * len(self.rects) + (0 if self.dense is None else self.dense.nbytes)

    def digest(self) -> str:
        """A short hash of the cells (for cache keys: never the cells themselves)."""
        h = hashlib.sha256()
        h.update(repr(self.rects).encode())
        h.update(np.ascontiguousarray(self.pairs).tobytes())
        if self.dense is not None:
            h.update(repr(self.dense.shape).encode())
            h.update(np.packbits(self.dense).tobytes())
        return h.hexdigest()[:32]

    def describe(self, limit: int = 10_000) -> dict:
        """The cells as JSON: rectangles [r0, r1, c0, c1] (null: to the end) and pairs (the first ``limit``)."""
        pairs = self.pairs
        if self.dense is not None:
            pairs = np.concatenate([pairs, np.argwhere(self.dense)]) if len(pairs) else np.argwhere(self.dense)
        return {"rectangles": [list(r) for r in self.rects], "pairs": pairs[:limit].tolist(),
                "pairs_left_out": max(0, len(pairs) - limit)}


def knockout_cells(cells, tq: int, tk: int) -> torch.Tensor:
    """Cells, (query, key) pairs, or a bool (Tq, Tk) array (NumPy, torch or nested lists) -> bool (Tq, Tk), True =
    knocked out, for a small map. Cells beyond this call's lengths are left out: while decoding, a call sees a prefix
    of the final sequence (its first query rows, and for self-attention its first keys), so an array may be larger
    than (tq, tk) and pairs may lie beyond them. A smaller array, a negative index or a cell that is not a pair of
    integers is a ValueError."""
    return torch.from_numpy(Cells.of(cells).dense_array(tq, tk))


def knocked_cells(per_item: tuple[dict[int, object], ...], batch: int, tq: int, tk: int
                  ) -> dict[tuple[int, int], Cells]:
    """{(batch element, head): Cells} for the heads that have knockouts (checked against the call's lengths)."""
    out = {}
    for b in range(batch):
        spec = per_item[b] if len(per_item) > 1 else per_item[0]
        for head, cells in spec.items():
            out[b, int(head)] = Cells.of(cells)
            out[b, int(head)].check(tq, tk)
    return out


def knockout_block(knocked: dict[tuple[int, int], Cells], batch: int, heads: range, rows: range,
                   tk: int, device=None) -> torch.Tensor | None:
    """bool (B, h, r, Tk), True where a cell is knocked out, for some heads and rows; None when none is."""
    if not any(h in heads for _, h in knocked):
        return None
    out = torch.zeros(batch, len(heads), len(rows), tk, dtype=torch.bool)
    for (b, h), cells in knocked.items():
        if h in heads:
            out[b, heads.index(h)] = cells.block(rows, tk)
    return out.to(device)


__all__ = ["ABLATION_MODES", "Ablations", "Cells", "DENSE_MAX_CELLS", "Interventions", "Knockouts", "ablate",
           "knockout_block", "knockout_cells", "knocked_cells", "per_item", "validate"]
