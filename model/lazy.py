"""Capture that grows with T, not T^2 x H: what one attention received, a first pass a block of query rows at a time,
and a trace that recomputes records, windows and rows on demand through the same ``attention()``.

The first pass keeps, per attention, its inputs (q and k after RoPE / QK-norm, v, the masks, the projections'
inputs), per head and query row the statistics of ``model.rowstats`` (the row's log-sum-exp among them), and
max- and mean-pooled overviews of every head (at most OVERVIEW_MAX per axis). It never holds more than one block
of rows x every key x heads. Recomputation uses the same block partition and the same lane (thread count) as the
first pass, so a record, a window or a row is bitwise what the call computed.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .attention import AttentionRecord, attention, held_bytes
from .interventions import ablate, knockout_block
from .names import RecordName
from .rowstats import KeyFacts, RowStats, collect, row_statistics
from .runtime import Lane
from .trace import (
                    STAGES,
                    FullTrace,
                    RecordShape,
                    Trace,
                    Window,
                    _as_range,
                    _head,
                    _reason_codes,
                    _to_numpy,
                    overview_factor,
                    pool_weights,
                    reasons_from_codes,
)


class RecordTooLarge(ValueError):
    """A complete record over the budget a trace may compute at once (windows and rows still answer)."""


def block_bytes() -> int:
    """$ATTN_BLOCK_MB (default 48): the most one block of rows x keys x heads of the first pass may hold."""
    try:
        return int(float(os.environ.get("ATTN_BLOCK_MB", "48")) * 2**20)
    except ValueError:
        return 48 * 2**20


@dataclass(frozen=True)
class AttentionInputs:
    """What one attention call received: enough to recompute its complete record, bitwise."""

    name: str
    q: torch.Tensor  # (B, H, Tq, d_k)
    k: torch.Tensor  # (B, H_kv, Tk, d_k)
    v: torch.Tensor  # (B, H_kv, Tk, d_v)
    mask: torch.Tensor | None  # bool, True = may attend (before knockouts)
    scale: float | None
    bias: torch.Tensor | None
    softcap: float | None
    query_input: torch.Tensor | None
    key_input: torch.Tensor | None
    padding_mask: torch.Tensor | None
    causal_mask: torch.Tensor | None
    window_mask: torch.Tensor | None
    query_valid: torch.Tensor | None  # bool (B, Tq): real query positions (mean ablation, statistics)
    ablation: tuple[dict[int, object], ...] | None  # per batch element
    knocked: dict[tuple[int, int], torch.Tensor]  # (batch element, head) -> bool (Tq, Tk), True = knocked out
    out_proj: Callable[[torch.Tensor], torch.Tensor] | None  # the module's output projection (never mutated)
    block_rows: int  # the first pass's block of query rows (recomputation uses the same partition)

    @property
    def shape(self) -> RecordShape:
        B, H, Tq, d_k = self.q.shape
        Tk, d_v = self.k.shape[-2], self.v.shape[-1]
        qi = 0 if self.query_input is None else self.query_input.shape[-1]
        ki = 0 if self.key_input is None else self.key_input.shape[-1]
        adjusted = self.bias is not None or self.softcap is not None
        return RecordShape(batch=B, n_heads=H, n_kv_heads=self.k.shape[1], tq=Tq, tk=Tk, d_k=d_k, d_v=d_v,
                           d_query_in=qi, d_key_in=ki, d_out=H * d_v, adjusted=adjusted,
                           element_size=self.q.element_size())

    def nbytes(self) -> int:
        return held_bytes([getattr(self, f.name) for f in dataclasses.fields(self)] + list(self.knocked.values()))

    def record_bytes(self) -> int:
        """About what the complete record adds to these inputs: its (B, H, Tq, Tk) matrices and its vectors."""
        s = self.shape
        matrices = 4 + s.adjusted
        return (matrices * s.batch * s.n_heads * s.tq * s.tk + 3 * s.batch * s.n_heads * s.tq * s.d_v) * \
            s.element_size

    @property
    def q_positions(self) -> torch.Tensor:
        """(Tq,) each query's position on the key axis (self-attention: the last Tq keys, as with a cache)."""
        Tq, Tk = self.q.shape[2], self.k.shape[2]
        offset = 0 if RecordName.parse(self.name).is_cross else Tk - Tq
        return torch.arange(Tq, device=self.q.device) + offset

    def blocks(self, rows: range | None = None) -> list[range]:
        """The first pass's row blocks (those that meet ``rows``)."""
        Tq = self.q.shape[2]
        out = [range(r, min(r + self.block_rows, Tq)) for r in range(0, Tq, self.block_rows)]
        if rows is None:
            return out
        return [b for b in out if b.start < rows.stop and b.stop > rows.start]

    def item(self, b: int, tq: int, tk: int) -> "AttentionInputs":
        """One batch element, cut to its real lengths."""
        def mat(t):
            if t is None:
                return None
            bb = slice(b, b + 1) if t.shape[0] > 1 else slice(None)
            qq = slice(None, tq) if t.shape[2] > 1 else slice(None)
            return t[bb, :, qq, :tk]
        return dataclasses.replace(
            self, q=self.q[b:b + 1, :, :tq], k=self.k[b:b + 1, :, :tk], v=self.v[b:b + 1, :, :tk],
            mask=mat(self.mask), bias=mat(self.bias),
            query_input=None if self.query_input is None else self.query_input[b:b + 1, :tq],
            key_input=None if self.key_input is None else self.key_input[b:b + 1, :tk],
            padding_mask=mat(self.padding_mask), causal_mask=mat(self.causal_mask), window_mask=mat(self.window_mask),
            query_valid=None if self.query_valid is None else self.query_valid[b:b + 1, :tq],
            ablation=None if self.ablation is None else (self.ablation[b if len(self.ablation) > 1 else 0],),
            knocked={(0, h): c[:tq, :tk] for (bb, h), c in self.knocked.items() if bb == b})


def choose_block_rows(batch: int, n_heads: int, tq: int, tk: int, factor: int = 1) -> int:
    """Rows per block: a multiple of the overview's pooling factor whose (B, H, rows, Tk) weights (and the few
    temporaries of the statistics) stay under block_bytes()."""
    per_row = max(1, batch * n_heads * tk * 4 * 3)
    rows = max(1, block_bytes() // per_row)
    rows = max(factor, rows // factor * factor)
    return min(rows, max(factor, -(-tq // factor) * factor))


def _rows(t: torch.Tensor | None, rows: range) -> torch.Tensor | None:
    """The rows of a broadcastable (B|1, H|1, Tq|1, Tk) tensor."""
    if t is None or t.shape[2] == 1:
        return t
    return t[:, :, rows.start:rows.stop]


def _heads(t: torch.Tensor | None, heads: range) -> torch.Tensor | None:
    if t is None or t.shape[1] == 1:
        return t
    return t[:, heads.start:heads.stop]


def block_attention(inputs: AttentionInputs, rows: range, heads: range | None = None, *,
                    keep_intermediates: bool = True) -> AttentionRecord:
    """``attention()`` on some rows (and heads) of the call, with every key: the numbers the call computed there."""
    B, H, Tq, _ = inputs.q.shape
    heads = range(H) if heads is None else heads
    groups = H // inputs.k.shape[1]
    q = inputs.q[:, heads.start:heads.stop, rows.start:rows.stop]
    if groups > 1 and len(heads) < H:  # the key/value heads these query heads read
        kv = range(heads.start // groups, (heads.stop - 1) // groups + 1)
        k, v = inputs.k[:, kv.start:kv.stop], inputs.v[:, kv.start:kv.stop]
        if len(heads) % groups or heads.start % groups:  # a part of a group: repeat per query head
            idx = torch.tensor([h // groups - kv.start for h in heads], device=k.device)
            k, v = k.index_select(1, idx), v.index_select(1, idx)
    elif len(heads) < H:
        k, v = inputs.k[:, heads.start:heads.stop], inputs.v[:, heads.start:heads.stop]
    else:
        k, v = inputs.k, inputs.v
    mask = _heads(_rows(inputs.mask, rows), heads)
    knocked = knockout_block(inputs.knocked, B, heads, rows, inputs.k.shape[2], device=q.device)
    if knocked is not None:
        mask = ~knocked if mask is None else mask & ~knocked
    bias = _heads(_rows(inputs.bias, rows), heads)
    rec = attention(q, k, v, mask, scale=inputs.scale, bias=bias, softcap=inputs.softcap,
                    keep_intermediates=keep_intermediates)
    return dataclasses.replace(rec, k=inputs.k if len(heads) == H else k, v=inputs.v if len(heads) == H else v,
                               knocked_out=knocked)


@dataclass
class FirstPass:
    """What the first pass kept of one attention besides its inputs."""

    stats: RowStats
    overview_max: np.ndarray  # (B, H, r, c) uint8
    overview_mean: np.ndarray
    factor: int


def first_pass(inputs: AttentionInputs, key_facts: list[KeyFacts] | None, overviews: bool = True
               ) -> tuple[torch.Tensor, FirstPass]:
    """Run one attention a block of query rows at a time: (context (B, H, Tq, d_v) after any ablation, FirstPass)."""
    B, H, Tq, _ = inputs.q.shape
    Tk, d_v = inputs.k.shape[2], inputs.v.shape[-1]
    factor = overview_factor(Tq, Tk)
    context = torch.empty(B, H, Tq, d_v, dtype=inputs.v.dtype, device=inputs.v.device)
    n = RecordName.parse(inputs.name)
    q_positions = inputs.q_positions
    valid = inputs.query_valid if inputs.query_valid is not None else \
        torch.ones(B, Tq, dtype=torch.bool, device=inputs.q.device)
    r_out, c_out = -(-Tq // factor), -(-Tk // factor)
    ov_max = np.zeros((B, H, r_out, c_out), dtype=np.uint8) if overviews else np.zeros((B, H, 0, 0), np.uint8)
    ov_mean = ov_max.copy()
    blocks = []
    for rows in inputs.blocks():
        rec = block_attention(inputs, rows, keep_intermediates=False)
        context[:, :, rows.start:rows.stop] = rec.context
        # rec.mask: the mask this block used, knockouts included
        blocks.append(row_statistics(rec.weights, rec.mask, q_positions[rows.start:rows.stop],
                                     self_attention=not n.is_cross, logits_max=rec.row_max, keys=key_facts,
                                     query_rows=slice(rows.start, rows.stop),
                                     query_valid=valid[:, rows.start:rows.stop]))
        if overviews:
            r0 = rows.start // factor
            for b in range(B):
                mx, mean = pool_weights(rec.weights[b], factor)
                ov_max[b, :, r0:r0 + mx.shape[1]] = mx
                ov_mean[b, :, r0:r0 + mean.shape[1]] = mean
        del rec
    if inputs.ablation is not None:
        context, _ = ablate(context, inputs.ablation, inputs.query_valid)
    stats = collect(blocks, valid, q_positions, not n.is_cross)
    return context, FirstPass(stats=stats, overview_max=ov_max, overview_mean=ov_mean, factor=factor)


def complete_record(inputs: AttentionInputs, with_output: bool = True) -> AttentionRecord:
    """The full AttentionRecord of one attention from its inputs: the same ``attention()`` calls as the model's, in
    the same blocks of rows."""
    parts = [block_attention(inputs, rows) for rows in inputs.blocks()]
    if len(parts) == 1:
        rec = parts[0]
    else:
        def cat(field):
            values = [getattr(p, field) for p in parts]
            return None if values[0] is None else torch.cat(values, dim=2)
        rec = dataclasses.replace(parts[0], **{f: cat(f) for f in ("q", "scores", "scaled", "adjusted", "masked",
                                                                    "weights", "context", "knocked_out")},
                                  mask=_cat_rows([p.mask for p in parts]), bias=_cat_rows([p.bias for p in parts]))
    return finish_record(inputs, rec, with_output)


def _cat_rows(values):
    if values[0] is None or values[0].shape[2] == 1:
        return values[0]
    return torch.cat(values, dim=2)


def finish_record(inputs: AttentionInputs, rec: AttentionRecord, with_output: bool = True) -> AttentionRecord:
    """A record of every row with the call's ablation applied, its masks and, with ``with_output``, the concat and
    the module's output projection."""
    context, ablated = rec.context, None
    if inputs.ablation is not None:
        context, ablated = ablate(context, inputs.ablation, inputs.query_valid)
    concat = output = None
    if with_output:
        B, H, Tq, d_v = context.shape
        concat = context.transpose(1, 2).reshape(B, Tq, H * d_v)  # (B, Tq, H * d_v), as the module reshapes it
        if inputs.out_proj is not None:
            output = inputs.out_proj(concat)  # (B, Tq, d_model): the module's own W_o on the same tensor
    return dataclasses.replace(rec, context=context, query_input=inputs.query_input, key_input=inputs.key_input,
                               padding_mask=inputs.padding_mask, causal_mask=inputs.causal_mask,
                               window_mask=inputs.window_mask, concat=concat, output=output, ablated=ablated,
                               mask=inputs.mask if rec.knocked_out is None else rec.mask)


class LazyTrace(Trace):
    """A trace that keeps each attention's inputs and first pass, and computes what is asked on demand, on the lane
    of its call: complete records (an LRU under ``max_bytes``, at least the last one kept; a record above
    ``max_record_bytes`` is refused: ask for windows), windows and rows (only the rows asked for).

    Thread-safe: the app shares one LazyTrace between sessions that look at the same call.
    """

    lazy = True

    def __init__(self, inputs: Mapping[str, AttentionInputs], passes: Mapping[str, FirstPass], src_ids=None,
                 tgt_ids=None, key_facts=None, *, lane: Lane | None = None, max_bytes: int | None = None,
                 max_record_bytes: int | None = None):
        super().__init__(list(inputs), src_ids, tgt_ids, key_facts)
        self._inputs = dict(inputs)
        self._passes = dict(passes)
        self._cache: OrderedDict[str, AttentionRecord] = OrderedDict()
        self.max_bytes = max_bytes
        self.max_record_bytes = max_record_bytes
        self._lane = lane
        self._lock = threading.Lock()
        self.materialized = 0  # complete records computed (for tests and benchmarks)
        self.windows_computed = 0

    def _compute(self, fn):
        def run():
            with torch.inference_mode():
                return fn()
        return run() if self._lane is None else self._lane.run(run)

    def inputs_of(self, name: str) -> AttentionInputs:
        return self._inputs[name]

    def shape(self, name: str) -> RecordShape:
        return self._inputs[name].shape

    def __getitem__(self, name: str) -> AttentionRecord:
        """The complete record, computed from the saved inputs (bitwise what the call computed); RecordTooLarge
        above ``max_record_bytes``."""
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        inputs = self._inputs[name]  # KeyError for an unknown name, as a Mapping should
        need = inputs.record_bytes()
        if self.max_record_bytes is not None and need > self.max_record_bytes:
            raise RecordTooLarge(
                f"{name}'s complete record would hold {need / 2**20:,.0f} MiB, over the "
                f"{self.max_record_bytes / 2**20:,.0f} MiB one record may take: its overview, windows and rows "
                "are computed instead")
        if self.max_bytes is not None:  # make room first, so that memory peaks at the budget, not above it
            with self._lock:
                while self._cache and sum(r.nbytes() for r in self._cache.values()) + need > self.max_bytes:
                    self._cache.popitem(last=False)
        record = self._compute(lambda: complete_record(inputs))
        with self._lock:
            self.materialized += 1
            self._cache[name] = record
            self._cache.move_to_end(name)
            if self.max_bytes is not None:
                while len(self._cache) > 1 and sum(r.nbytes() for r in self._cache.values()) > self.max_bytes:
                    self._cache.popitem(last=False)
        return record

    def cached_names(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    def window(self, name: str, head: int, rows: range | slice, cols: range | slice, stage: str = "weights",
               batch_index: int = 0) -> Window:
        """Computed for the first-pass blocks that hold ``rows``, one head, every key (the row's own softmax):
        bitwise what the call computed; a complete record already cached is sliced instead."""
        inputs = self._inputs[name]
        shape = inputs.shape
        rows, cols = _as_range(rows, shape.tq), _as_range(cols, shape.tk)
        h = _head(head, shape.n_heads)
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None:
            return FullTrace({name: cached}).window(name, h, rows, cols, stage, batch_index)

        blocks = inputs.blocks(rows)

        def compute():
            return [block_attention(inputs, blk, range(h, h + 1)) for blk in blocks]
        parts = self._compute(compute) if len(rows) and len(cols) else []
        with self._lock:
            self.windows_computed += 1
        values = []
        for blk, part in zip(blocks, parts, strict=True):
            lo, hi = max(rows.start, blk.start) - blk.start, min(rows.stop, blk.stop) - blk.start
            if stage == "adjusted" and part.adjusted is None:
                vals = part.scaled
            else:
                vals = getattr(part, stage)
            values.append(np.asarray(_to_numpy(vals[batch_index, 0, lo:hi, cols.start:cols.stop]), np.float32))
        block = np.concatenate(values, axis=0) if values else np.zeros((len(rows), len(cols)), np.float32)
        knocked = None
        if (batch_index, h) in inputs.knocked:
            knocked = inputs.knocked[batch_index, h][None, None]  # (1, 1, Tq, Tk)
        codes, forbidden = _reason_codes(inputs.mask, inputs.padding_mask, inputs.causal_mask, inputs.window_mask,
                                         knocked, shape.n_heads, batch_index, slice(h, h + 1), rows, cols)
        return Window(name=name, head=h, stage=stage, rows=rows, cols=cols, values=block,
                      reasons=reasons_from_codes(codes[0], forbidden[0]), exact=True)

    def overview(self, name: str, how: str = "max", batch_index: int = 0) -> np.ndarray:
        """Kept from the first pass."""
        fp = self._passes[name]
        return (fp.overview_max if how == "max" else fp.overview_mean)[batch_index]

    def overview_pool(self, name: str) -> int:
        return self._passes[name].factor

    def row_stats(self, name: str) -> RowStats:
        """Kept from the first pass."""
        return self._passes[name].stats

    def item(self, index: int, src_len: int | None = None, tgt_len: int | None = None) -> "LazyTrace":
        """One batch element, cut to its real lengths (its inputs and first pass sliced, nothing recomputed)."""
        B = next(iter(self._inputs.values())).q.shape[0] if self._inputs else 1
        if B == 1 and index == 0 and src_len is None and tgt_len is None:
            return self
        S = src_len if src_len is not None else (None if self.src_ids is None else self.src_ids.shape[1])
        T = tgt_len if tgt_len is not None else (None if self.tgt_ids is None else self.tgt_ids.shape[1])
        inputs, passes = {}, {}
        for name, inp in self._inputs.items():
            n = RecordName.parse(name)
            tq = S if n.query_stack == "encoder" else T
            tk = S if n.key_stack == "encoder" else T
            inputs[name] = inp.item(index, tq, tk)
            fp = self._passes[name]
            r, c = -(-tq // fp.factor), -(-tk // fp.factor)
            passes[name] = FirstPass(stats=fp.stats.item(index, tq, tk),
                                     overview_max=fp.overview_max[index:index + 1, :, :r, :c],
                                     overview_mean=fp.overview_mean[index:index + 1, :, :r, :c], factor=fp.factor)
        src = None if self.src_ids is None else self.src_ids[index:index + 1, :S]
        tgt = None if self.tgt_ids is None else self.tgt_ids[index:index + 1, :T]
        facts = {s: [f[index if len(f) > 1 else 0]] for s, f in self.key_facts.items()}
        return LazyTrace(inputs, passes, src, tgt, facts, lane=self._lane, max_bytes=self.max_bytes,
                         max_record_bytes=self.max_record_bytes)

    def inputs_nbytes(self) -> int:
        """What the trace keeps: inputs, statistics and overviews (complete records not counted)."""
        kept = sum(i.nbytes() for i in self._inputs.values())
        for fp in self._passes.values():
            kept += fp.stats.nbytes() + fp.overview_max.nbytes + fp.overview_mean.nbytes
        return kept

    def nbytes(self) -> int:
        """What it keeps plus the ceiling of its record cache."""
        return self.inputs_nbytes() + (self.max_bytes or 0)


__all__ = ["AttentionInputs", "FirstPass", "LazyTrace", "RecordTooLarge", "block_attention", "block_bytes",
           "choose_block_rows", "complete_record", "finish_record", "first_pass"]
