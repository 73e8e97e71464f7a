"""The trace of one call: a read-only mapping from attention names to records, and the questions it answers.

``Trace`` is the contract; ``FullTrace`` holds every record, ``model.capture.lazy.LazyTrace`` recomputes what is asked
from what the call kept. Both answer every method alike: ``trace[name]`` (the complete record), ``layers``,
``window`` (one head's values for a range of rows and columns, any stage), ``row`` (one query over every key),
``overview`` (pooled uint8 maps of every head), ``row_stats`` (per-row statistics), ``item``, ``to_dataframe``,
``numpy`` and ``to``. Where a lazy trace must compute, the method's docstring says so. Why a cell is masked is
model.core.reasons; one record as a long DataFrame, model.capture.dataframe; the pooled overviews, model.core.pooling.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
import torch

from ..core.attention import STAGES, AttentionRecord, RecordShape, held_bytes, to_numpy
from ..core.names import RecordName
from ..core.pooling import block_max, overview_factor, pool_weights, thumbnails
from ..core.reasons import forbidden_by_reason
from ..core.rowstats import KeyFacts, RowStats, collect, row_statistics
from .dataframe import record_to_dataframe


@dataclass(frozen=True)
class Window:
    """One head's values of one stage over a range of query rows and key columns, as the call computed them.

    ``values`` (rows, cols) float32 (float16/bfloat16 models: their values, held as float32); ``reasons``
    {reason: (rows, cols) bool} for the cells the mask forbids (weight 0), as in ``forbidden_by_reason``.
    """

    name: str
    head: int
    stage: str
    rows: range
    cols: range
    values: np.ndarray
    reasons: dict[str, np.ndarray]
    exact: bool  # bitwise what the full record holds (False: normalised by the kept row log-sum-exp, to ~1e-7)


@dataclass(frozen=True)
class QueryRow:
    """One query's weights over every key, and its strongest keys."""

    name: str
    head: int
    query: int
    weights: np.ndarray  # (Tk,) float32
    allowed: np.ndarray  # (Tk,) bool
    top_keys: np.ndarray  # (k,) key positions, strongest first
    top_weights: np.ndarray  # (k,)


def _top(weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, weights.shape[0])
    idx = np.argpartition(-weights, k - 1)[:k] if k < weights.shape[0] else np.arange(weights.shape[0])
    idx = idx[np.argsort(-weights[idx], kind="stable")]
    return idx, weights[idx]


class Trace(Mapping):
    """Read-only mapping ``encoder.{i}.self_attn`` / ``decoder.{i}.self_attn`` / ``decoder.{i}.cross_attn`` ->
    AttentionRecord, plus the ids the call saw (``src_ids`` (B, S), ``tgt_ids`` (B, T)). See the module docstring
    for the methods every trace answers."""

    lazy = False

    def __init__(self, names: Sequence[str], src_ids=None, tgt_ids=None, key_facts=None):
        self._names = tuple(names)
        self.src_ids = src_ids
        self.tgt_ids = tgt_ids
        # per stack, per batch item: what the statistics need to know about that stack's tokens
        self.key_facts: dict[str, list[KeyFacts]] = dict(key_facts or {})

    # ---- the mapping ------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._names)})"

    def __getitem__(self, name: str) -> AttentionRecord:
        raise NotImplementedError

    def layers(self, stack: str, sublayer: str) -> list[str]:
        """Names of one stack and sub-layer in layer order, e.g. every ``decoder.*.cross_attn``."""
        picked = [RecordName.parse(n) for n in self._names]
        return [str(n) for n in sorted(picked, key=lambda n: n.layer) if n.stack == stack and n.sublayer == sublayer]

    def shape(self, name: str) -> RecordShape:
        raise NotImplementedError

    # ---- questions -------------------------------------------------------------------------------------------
    def window(self, name: str, head: int, rows: range | slice, cols: range | slice, stage: str = "weights",
               batch_index: int = 0) -> Window:
        raise NotImplementedError

    def row(self, name: str, head: int, query: int, top: int = 10, batch_index: int = 0) -> QueryRow:
        """One query's weights over every key (a lazy trace computes that row only)."""
        shape = self.shape(name)
        win = self.window(name, head, range(query, query + 1), range(shape.tk), "weights", batch_index)
        weights = win.values[0]
        allowed = ~np.any([m[0] for m in win.reasons.values()], axis=0) if win.reasons else \
            np.ones(shape.tk, dtype=bool)
        top_keys, top_weights = _top(np.where(allowed, weights, -np.inf), top)
        ok = np.isfinite(top_weights)
        return QueryRow(name=name, head=head, query=query, weights=weights, allowed=allowed,
                        top_keys=top_keys[ok], top_weights=top_weights[ok])

    def columns(self, name: str, cols: range, rows: range | None = None, batch_index: int = 0) -> np.ndarray:
        """(H, rows, cols) float32 weights of every head on some key columns (a lazy trace computes only those
        columns, normalised by each row's kept log-sum-exp: equal to the row's softmax to float rounding)."""
        raise NotImplementedError

    def overview(self, name: str, how: str = "max", batch_index: int = 0) -> np.ndarray:
        """(H, r, c) uint8 weights pooled over ``overview_pool(name)``-sized square blocks (255 = weight 1);
        ``how`` = "max" or "mean"."""
        raise NotImplementedError

    def overview_pool(self, name: str) -> int:
        shape = self.shape(name)
        return overview_factor(shape.tq, shape.tk)

    def thumbnails(self, name: str, batch_index: int = 0) -> np.ndarray:
        """(H, <= 64, <= 64) uint8: the max overview pooled further."""
        return thumbnails(self.overview(name, "max", batch_index))

    def row_stats(self, name: str) -> RowStats:
        raise NotImplementedError

    def stage_overview(self, name: str, stage: str, batch_index: int = 0) -> np.ndarray:
        """(H, r, c) float32: each ``overview_pool``-sized block's largest value of one stage, exact (the weights'
        overview is ``overview``). A lazy trace computes it a block of rows at a time, once per stage."""
        raise NotImplementedError

    def block_reasons(self, name: str, batch_index: int = 0) -> dict[str, np.ndarray]:
        """{reason: (r, c) bool}: the overview blocks every cell of which that reason forbids."""
        raise NotImplementedError

    def item(self, index: int, src_len: int | None = None, tgt_len: int | None = None) -> "Trace":
        raise NotImplementedError

    def nbytes(self) -> int:
        raise NotImplementedError

    # ---- whole records -----------------------------------------------------------------------------------------
    def numpy(self) -> "FullTrace":
        """A FullTrace with every tensor as a NumPy array on the CPU (a lazy trace computes every record)."""
        return self._map(to_numpy)

    def to(self, device: str | torch.device) -> "FullTrace":
        """A FullTrace on ``device`` (a lazy trace computes every record)."""
        return self._map(lambda t: t.to(device))

    def _map(self, fn) -> "FullTrace":
        ids = [None if x is None else fn(x) for x in (self.src_ids, self.tgt_ids)]
        return FullTrace({n: self[n].map(fn) for n in self._names}, *ids, key_facts=self.key_facts)

    def to_dataframe(self, src_tokens: Sequence[str] | None = None, tgt_tokens: Sequence[str] | None = None,
                     names: Sequence[str] | None = None, batch_index: int = 0) -> pd.DataFrame:
        """Long table, one row per (attention, head, query, key) of one batch element (a lazy trace computes each
        record in turn).

        Columns: stack, layer, sublayer, kind, head, query_pos, query_token, key_pos, key_token, score, scaled,
        masked_score, weight, masked (True = the mask forbids this key), mask_reason ("padding", "causal",
        "window", "knocked out", combinations joined by "+", "other", or "").
        """
        frames = [record_to_dataframe(self[n], n, src_tokens, tgt_tokens, batch_index)
                  for n in (names if names is not None else self._names)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class FullTrace(Trace):
    """Every record of the call, held in full."""

    def __init__(self, records: Mapping[str, AttentionRecord], src_ids=None, tgt_ids=None, key_facts=None):
        super().__init__(list(records), src_ids, tgt_ids, key_facts)
        self._records = MappingProxyType(dict(records))
        self._stats: dict[str, RowStats] = {}

    def __getitem__(self, name: str) -> AttentionRecord:
        return self._records[name]

    def shape(self, name: str) -> RecordShape:
        return shape_of(self._records[name])

    def window(self, name: str, head: int, rows: range | slice, cols: range | slice, stage: str = "weights",
               batch_index: int = 0) -> Window:
        """Sliced from the record: the numbers the call computed."""
        rec = self._records[name]
        rows, cols = clamp_range(rows, rec.weights.shape[2]), clamp_range(cols, rec.weights.shape[3])
        h = checked_head(head, rec.n_heads)
        values = stage_values(rec, stage)
        block = to_numpy(values[batch_index, h, rows.start:rows.stop, cols.start:cols.stop])
        reasons = forbidden_by_reason(rec, h, batch_index, rows, cols)
        return Window(name=name, head=h, stage=stage, rows=rows, cols=cols, values=np.asarray(block, np.float32),
                      reasons=reasons, exact=True)

    def columns(self, name: str, cols: range, rows: range | None = None, batch_index: int = 0) -> np.ndarray:
        w = self._records[name].weights
        rows = range(w.shape[2]) if rows is None else rows
        return np.asarray(to_numpy(w[batch_index, :, rows.start:rows.stop, cols.start:cols.stop]), np.float32)

    def overview(self, name: str, how: str = "max", batch_index: int = 0) -> np.ndarray:
        w = self._records[name].weights
        w = torch.as_tensor(np.asarray(w)) if not isinstance(w, torch.Tensor) else w
        mx, mean = pool_weights(w[batch_index], self.overview_pool(name))
        return mx if how == "max" else mean

    def stage_overview(self, name: str, stage: str, batch_index: int = 0) -> np.ndarray:
        rec = self._records[name]
        values = stage_values(rec, stage)
        values = torch.as_tensor(np.asarray(values)) if not isinstance(values, torch.Tensor) else values
        return block_max(values[batch_index].float(), self.overview_pool(name)).numpy()

    def block_reasons(self, name: str, batch_index: int = 0) -> dict[str, np.ndarray]:
        f = self.overview_pool(name)
        per_reason: dict[str, np.ndarray] = {}
        for reason, cells in forbidden_by_reason(self._records[name], 0, batch_index).items():
            for part in reason.split("+"):
                per_reason[part] = per_reason.get(part, np.zeros_like(cells)) | cells
        out = {}
        for reason, cells in per_reason.items():  # every cell of the block: the minimum over it
            full = -block_max(-torch.from_numpy(cells.astype(np.float32))[None], f)[0].numpy() > 0
            if full.any():
                out[reason] = full
        return out

    def row_stats(self, name: str) -> RowStats:
        """Computed once from the record, with the function the first pass of a lazy trace uses."""
        if name not in self._stats:
            self._stats[name] = record_row_stats(self._records[name], name, self.key_facts)
        return self._stats[name]

    def item(self, index: int, src_len: int | None = None, tgt_len: int | None = None) -> "FullTrace":
        """One batch element, cut to its real lengths (drops the padding added for batching)."""
        S = src_len if src_len is not None else (None if self.src_ids is None else self.src_ids.shape[1])
        T = tgt_len if tgt_len is not None else (None if self.tgt_ids is None else self.tgt_ids.shape[1])
        records = {}
        for name, rec in self._records.items():
            n = RecordName.parse(name)
            tq = S if n.query_stack == "encoder" else T
            tk = S if n.key_stack == "encoder" else T
            records[name] = _slice_record(rec, index, tq, tk)
        src = None if self.src_ids is None else self.src_ids[index:index + 1, :S]
        tgt = None if self.tgt_ids is None else self.tgt_ids[index:index + 1, :T]
        facts = {s: [f[index if len(f) > 1 else 0]] for s, f in self.key_facts.items()}
        return FullTrace(records, src, tgt, key_facts=facts)

    def nbytes(self) -> int:
        """Bytes held by the records' tensors (shared storages counted once)."""
        return held_bytes(getattr(rec, f) for rec in self._records.values() for f in rec.__dataclass_fields__)


def record_row_stats(rec: AttentionRecord, name: str, key_facts: Mapping[str, list[KeyFacts]]) -> RowStats:
    """RowStats of a complete record (every row in one block)."""
    w = rec.weights if isinstance(rec.weights, torch.Tensor) else torch.as_tensor(np.asarray(rec.weights))
    B, H, Tq, Tk = w.shape
    n = RecordName.parse(name)
    mask = None if rec.mask is None else torch.as_tensor(np.asarray(rec.mask)) if not isinstance(
        rec.mask, torch.Tensor) else rec.mask
    q_positions = torch.arange(Tq) + (Tk - Tq if not n.is_cross else 0)
    masked = rec.masked if rec.masked is not None else None
    logits_max = None
    if masked is not None:
        masked = masked if isinstance(masked, torch.Tensor) else torch.as_tensor(np.asarray(masked))
        logits_max = masked.float().amax(-1, keepdim=True)
    valid = torch.ones(B, Tq, dtype=torch.bool)
    if rec.padding_mask is not None and not n.is_cross and n.query_stack == n.key_stack:
        pm = torch.as_tensor(np.asarray(rec.padding_mask)) if not isinstance(rec.padding_mask, torch.Tensor) else \
            rec.padding_mask
        valid = pm.reshape(pm.shape[0], -1)[:, -Tq:].expand(B, Tq).clone()
    stats = row_statistics(w, mask, q_positions, self_attention=not n.is_cross, logits_max=logits_max,
                           keys=key_facts.get(n.key_stack), query_valid=valid)
    return collect([stats], valid, q_positions, not n.is_cross)


def shape_of(rec: AttentionRecord) -> RecordShape:
    B, H, Tq, d_k = rec.q.shape
    Tk, d_v = rec.k.shape[-2], rec.v.shape[-1]
    qi = rec.query_input.shape[-1] if rec.query_input is not None else 0
    ki = rec.key_input.shape[-1] if rec.key_input is not None else 0
    out = rec.output.shape[-1] if rec.output is not None else H * d_v
    size = rec.weights.element_size() if isinstance(rec.weights, torch.Tensor) else np.asarray(rec.weights).itemsize
    return RecordShape(batch=B, n_heads=H, n_kv_heads=rec.k.shape[1], tq=Tq, tk=Tk, d_k=d_k, d_v=d_v, d_query_in=qi,
                       d_key_in=ki, d_out=out, adjusted=rec.adjusted is not None, element_size=size)


def clamp_range(r: range | slice, n: int) -> range:
    if isinstance(r, slice):
        start, stop, _ = r.indices(n)
        return range(start, max(start, stop))
    start, stop = max(0, r.start), min(n, r.stop)
    return range(start, max(start, stop))


def checked_head(head: int, n_heads: int) -> int:
    if not 0 <= int(head) < n_heads:
        raise IndexError(f"head {head} is not one of this record's {n_heads} heads (0..{n_heads - 1})")
    return int(head)


def check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def stage_values(rec: AttentionRecord, stage: str):
    """One stage's tensor of a record (or of a block of one); "adjusted" is the scaled scores when nothing
    adjusted them."""
    check_stage(stage)
    values = getattr(rec, stage)
    if values is None and stage == "adjusted":
        values = rec.scaled  # nothing adjusted the scaled scores
    return values


def _slice_record(rec: AttentionRecord, b: int, tq: int, tk: int) -> AttentionRecord:
    def cut(name, t):
        if t is None:
            return None
        if name in ("query_input", "concat", "output"):
            return t[b:b + 1, :tq]
        if name == "key_input":
            return t[b:b + 1, :tk]
        if name in ("q", "context"):
            return t[b:b + 1, :, :tq]
        if name in ("k", "v"):
            return t[b:b + 1, :, :tk]
        if name == "ablated":
            return t[b:b + 1] if t.dim() == 2 else t
        # (B|1, H|1, Tq|1, Tk) matrices and broadcastable masks
        bb = slice(b, b + 1) if t.shape[0] > 1 else slice(None)
        qq = slice(None, tq) if t.shape[2] > 1 else slice(None)
        return t[bb, :, qq, :tk]
    return AttentionRecord(**{n: cut(n, getattr(rec, n)) for n in rec.__dataclass_fields__})


__all__ = ["FullTrace", "QueryRow", "Trace", "Window", "record_row_stats", "shape_of"]
