"""Capture that grows with T, not T^2 x H: what one attention received, a first pass a block of query rows at a time,
and a trace that recomputes records, windows and rows on demand through the same ``attention()``.

Two first passes, chosen by the call:

- exact (inputs up to FAST_ABOVE tokens): ``attention()`` itself, a block of rows at a time; the model goes on with
  its context, and a record, window or row recomputed later is bitwise what the call computed;
- fast (longer inputs): the model's fast path (flash attention, which also gives each row's log-sum-exp) for the
  context, then one pass over the scores for the max-pooled overview. Weights shown later are computed by
  ``attention()`` from the same q and k: they agree with what the fast path used to float rounding (~1e-7), and the
  records' context and output are the ones the model passed on.

Either way the trace keeps, per attention: q and k (after RoPE / QK-norm) per key/value head, v, the mask as facts
(model.masks), the context, the projections' inputs, each row's log-sum-exp, and a max-pooled overview of every head.
Per-row statistics (and the mean-pooled overview) come from the exact pass, or, after a fast one, from a statistics
pass computed when first asked. Nothing ever holds more than one block of rows x keys x heads.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .attention import AttentionRecord, _to_numpy, attention, held_bytes, repeat_kv
from .interventions import ablate, knockout_block
from .masks import MaskSpec
from .names import RecordName
from .pooling import block_max, overview_factor, pool_weights
from .reasons import reason_codes, reasons_from_codes
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
)

FAST_ABOVE = 1024  # query rows: above this many, the first pass runs the fast path (flash attention)


class RecordTooLarge(ValueError):
    """A complete record over the budget a trace may compute at once (windows and rows still answer)."""


def block_bytes() -> int:
    """$ATTN_BLOCK_MB (default 32): the most one block of rows x keys x heads of a pass may hold."""
    try:
        return int(float(os.environ.get("ATTN_BLOCK_MB", "32")) * 2**20)
    except ValueError:
        return 32 * 2**20


@dataclass(frozen=True)
class AttentionInputs:
    """What one attention call received (and passed on): enough to recompute its complete record."""

    name: str
    q: torch.Tensor  # (B, H, Tq, d_k)
    k: torch.Tensor  # (B, H_kv, Tk, d_k)
    v: torch.Tensor  # (B, H_kv, Tk, d_v)
    masks: MaskSpec  # the mask, described (before knockouts)
    scale: float | None
    bias: torch.Tensor | None
    softcap: float | None
    query_input: torch.Tensor | None
    key_input: torch.Tensor | None
    query_valid: torch.Tensor | None  # bool (B, Tq): real query positions (mean ablation, statistics)
    ablation: tuple[dict[int, object], ...] | None  # per batch element
    knocked: dict[tuple[int, int], torch.Tensor]  # (batch element, head) -> bool (Tq, Tk), True = knocked out
    out_proj: Callable[[torch.Tensor], torch.Tensor] | None  # the module's output projection (never mutated)
    block_rows: int  # the first pass's block of query rows (recomputation uses the same partition)
    context: torch.Tensor | None = None  # (B, H, Tq, d_v) what the call passed on (kept by a fast first pass)

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
        fields = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "masks"]
        return held_bytes(fields + list(self.knocked.values())) + self.masks.nbytes()

    def record_bytes(self) -> int:
        """About what the complete record adds to these inputs: its (B, H, Tq, Tk) matrices and its vectors."""
        s = self.shape
        masked = not self.masks.trivial or bool(self.knocked)  # else the softmax input is the scaled scores
        matrices = 3 + masked + s.adjusted
        m = self.masks
        mask_cells = (m.causal + (m.window is not None) + (m.causal or m.window is not None)) * s.tq * s.tk
        return (matrices * s.batch * s.n_heads * s.tq * s.tk + 3 * s.batch * s.n_heads * s.tq * s.d_v) * \
            s.element_size + mask_cells

    @property
    def q_positions(self) -> torch.Tensor:
        """(Tq,) each query's position on the key axis (self-attention: the last Tq keys, as with a cache)."""
        Tq = self.q.shape[2]
        offset = 0 if RecordName.parse(self.name).is_cross else self.masks.offset
        return torch.arange(Tq, device=self.q.device) + offset

    def blocks(self, rows: range | None = None) -> list[range]:
        """The first pass's row blocks (those that meet ``rows``)."""
        Tq = self.q.shape[2]
        out = [range(r, min(r + self.block_rows, Tq)) for r in range(0, Tq, self.block_rows)]
        if rows is None:
            return out
        return [b for b in out if b.start < rows.stop and b.stop > rows.start]

    def item(self, b: int, tq: int, tk: int) -> AttentionInputs:
        """One batch element, cut to its real lengths."""
        def mat(t):
            if t is None:
                return None
            bb = slice(b, b + 1) if t.shape[0] > 1 else slice(None)
            qq = slice(None, tq) if t.shape[2] > 1 else slice(None)
            return t[bb, :, qq, :tk]
        return dataclasses.replace(
            self, q=self.q[b:b + 1, :, :tq], k=self.k[b:b + 1, :, :tk], v=self.v[b:b + 1, :, :tk],
            masks=self.masks.item(b, tq, tk), bias=mat(self.bias),
            query_input=None if self.query_input is None else self.query_input[b:b + 1, :tq],
            key_input=None if self.key_input is None else self.key_input[b:b + 1, :tk],
            query_valid=None if self.query_valid is None else self.query_valid[b:b + 1, :tq],
            ablation=None if self.ablation is None else (self.ablation[b if len(self.ablation) > 1 else 0],),
            knocked={(0, h): c[:tq, :tk] for (bb, h), c in self.knocked.items() if bb == b},
            context=None if self.context is None else self.context[b:b + 1, :, :tq])


def choose_block_rows(batch: int, n_heads: int, tq: int, tk: int, factor: int = 1) -> int:
    """Rows per block: a multiple of the overview's pooling factor whose (B, H, rows, Tk) scores (and the few
    temporaries of a pass) stay under block_bytes()."""
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


def _kv_for(inputs: AttentionInputs, heads: range) -> tuple[torch.Tensor, torch.Tensor]:
    """The key and value heads that these query heads read (one per query head when only some are asked)."""
    H = inputs.q.shape[1]
    groups = H // inputs.k.shape[1]
    if len(heads) == H:
        return inputs.k, inputs.v
    if groups == 1:
        return inputs.k[:, heads.start:heads.stop], inputs.v[:, heads.start:heads.stop]
    idx = torch.tensor([h // groups for h in heads], device=inputs.k.device)
    return inputs.k.index_select(1, idx), inputs.v.index_select(1, idx)


def block_mask(inputs: AttentionInputs, rows: range, heads: range, cols: range | None = None
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(mask with knockouts, knocked) of some rows, heads and key columns: True = may attend / knocked out."""
    B = inputs.q.shape[0]
    Tk = inputs.k.shape[2]
    cols = range(Tk) if cols is None else cols
    mask = _heads(inputs.masks.allowed(rows, cols, inputs.q.device), heads)
    knocked = knockout_block(inputs.knocked, B, heads, rows, Tk, device=inputs.q.device)
    if knocked is not None:
        knocked = knocked[..., cols.start:cols.stop]
        mask = ~knocked if mask is None else mask & ~knocked
    return mask, knocked


def block_attention(inputs: AttentionInputs, rows: range, heads: range | None = None, *,
                    keep_intermediates: bool = True) -> AttentionRecord:
    """``attention()`` on some rows (and heads) of the call, with every key: the numbers the call computed there
    (exact first pass), or computed from the same q and k (fast first pass)."""
    H = inputs.q.shape[1]
    heads = range(H) if heads is None else heads
    q = inputs.q[:, heads.start:heads.stop, rows.start:rows.stop]
    k, v = _kv_for(inputs, heads)
    mask, knocked = block_mask(inputs, rows, heads)
    bias = _heads(_rows(inputs.bias, rows), heads)
    rec = attention(q, k, v, mask, scale=inputs.scale, bias=bias, softcap=inputs.softcap,
                    keep_intermediates=keep_intermediates)
    return dataclasses.replace(rec, k=inputs.k if len(heads) == H else k, v=inputs.v if len(heads) == H else v,
                               knocked_out=knocked)


@dataclass
class FirstPass:
    """What a pass over one attention kept besides its inputs."""

    lse: torch.Tensor  # (B, H, Tq) float32: each row's log-sum-exp over its allowed keys (-inf: none)
    overview_max: np.ndarray  # (B, H, r, c) uint8
    factor: int
    exact: bool  # the exact first pass (attention() itself) ran
    stats: RowStats | None = None  # per-row statistics (None after a fast pass, until asked)
    overview_mean: np.ndarray | None = None


def _overview_shape(tq: int, tk: int, factor: int) -> tuple[int, int]:
    return -(-tq // factor), -(-tk // factor)


def statistics_pass(inputs: AttentionInputs, key_facts: list[KeyFacts] | None, *, with_context: bool,
                    overviews: bool = True) -> tuple[torch.Tensor | None, RowStats, np.ndarray, np.ndarray,
                                                      torch.Tensor]:
    """``attention()`` a block of rows at a time with every statistic of model.rowstats -> (context after any
    ablation, or None; RowStats; max and mean overviews (B, H, r, c) uint8; lse (B, H, Tq))."""
    B, H, Tq, _ = inputs.q.shape
    Tk, d_v = inputs.k.shape[2], inputs.v.shape[-1]
    factor = overview_factor(Tq, Tk)
    context = torch.empty(B, H, Tq, d_v, dtype=inputs.v.dtype, device=inputs.v.device) if with_context else None
    n = RecordName.parse(inputs.name)
    q_positions = inputs.q_positions
    valid = inputs.query_valid if inputs.query_valid is not None else \
        torch.ones(B, Tq, dtype=torch.bool, device=inputs.q.device)
    r_out, c_out = _overview_shape(Tq, Tk, factor) if overviews else (0, 0)
    ov_max = np.zeros((B, H, r_out, c_out), dtype=np.uint8)
    ov_mean = ov_max.copy()
    blocks = []
    for rows in inputs.blocks():
        rec = block_attention(inputs, rows, keep_intermediates=False)
        if context is not None:
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
    if context is not None and inputs.ablation is not None:
        context, _ = ablate(context, inputs.ablation, inputs.query_valid)
    stats = collect(blocks, valid, q_positions, not n.is_cross)
    return context, stats, ov_max, ov_mean, stats.lse


def exact_first_pass(inputs: AttentionInputs, key_facts: list[KeyFacts] | None, overviews: bool = True
                     ) -> tuple[torch.Tensor, FirstPass]:
    """``attention()`` itself a block of rows at a time: (context (B, H, Tq, d_v) after any ablation, FirstPass)."""
    context, stats, ov_max, ov_mean, lse = statistics_pass(inputs, key_facts, with_context=True,
                                                           overviews=overviews)
    Tq, Tk = inputs.q.shape[2], inputs.k.shape[2]
    return context, FirstPass(lse=lse, overview_max=ov_max, factor=overview_factor(Tq, Tk), exact=True,
                              stats=stats, overview_mean=ov_mean)


def can_run_fast(inputs: AttentionInputs) -> bool:
    """The fast first pass computes plain scaled dot-product attention: no bias, softcap or knockouts."""
    return inputs.bias is None and inputs.softcap is None and not inputs.knocked


def flash_with_lse(q, k, v, masks: MaskSpec, scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fast path's attention with each row's log-sum-exp: (context (B, H, Tq, d_v), lse (B, H, Tq) float32).
    Rows with no allowed key get zeros and lse = -inf."""
    H = q.shape[1]
    groups = H // k.shape[1]
    k_rep, v_rep = repeat_kv(k, groups), repeat_kv(v, groups)
    d_k = q.shape[-1]
    scale = scale if scale is not None else 1.0 / math.sqrt(d_k)
    plain_causal = masks.causal and masks.offset == 0 and masks.padding is None and masks.window is None and \
        masks.other is None
    allowed = None if plain_causal else masks.allowed(range(masks.tq), range(masks.tk), q.device)
    if q.device.type == "cpu":
        bias = None
        if allowed is not None:
            bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
        context, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k_rep, v_rep, 0.0, plain_causal, attn_mask=bias, scale=scale)
    else:  # CUDA and others: the memory-efficient kernel returns the log-sum-exp too
        bias = None
        if allowed is not None:
            bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
            bias = bias.expand(q.shape[0], H, masks.tq, masks.tk)
        out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k_rep, v_rep, bias, True, 0.0, plain_causal,
                                                                      scale=scale)
        context, lse = out[0], out[1][..., :masks.tq]
    lse = lse.float()
    if allowed is not None:
        has_key = allowed.any(-1)  # (B|1, 1, Tq)
        if not bool(has_key.all()):
            empty = ~has_key
            context = context.masked_fill(empty[..., None], 0.0)
            lse = lse.masked_fill(empty, float("-inf"))
    return context, lse


def _scaled(inputs: AttentionInputs, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The scaled scores of a block, as attention() scales them."""
    x = q @ k.transpose(-2, -1)
    return x.div_(math.sqrt(q.shape[-1])) if inputs.scale is None else x.mul_(inputs.scale)


def _block_max(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """The max over consecutive blocks of ``factor`` along ``dim`` (the last block may be shorter)."""
    n = x.shape[dim]
    whole = n // factor * factor
    parts = []
    if whole:
        head = x.narrow(dim, 0, whole)
        shape = list(head.shape)
        shape[dim:dim + 1] = [whole // factor, factor]
        parts.append(head.reshape(shape).amax(dim + 1))
    if whole < n:
        parts.append(x.narrow(dim, whole, n - whole).amax(dim, keepdim=True))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def overview_rows(batch: int, n_heads: int, tk: int, factor: int) -> int:
    """Rows per block of the overview pass: (B, H, rows, Tk) float32 scores under $ATTN_BLOCK_MB / 4 (small blocks
    stay in the cache: measured fastest here), a multiple of the pooling factor."""
    rows = max(factor, (block_bytes() // 4) // max(1, batch * n_heads * tk * 4))
    return max(factor, rows // factor * factor)


def max_overview_pass(inputs: AttentionInputs, lse: torch.Tensor) -> tuple[np.ndarray, int]:
    """The max-pooled overview (B, H, r, c) uint8 from the scaled scores and each row's log-sum-exp: a block of rows
    at a time, only the keys those rows may see (the future of a causal row is never computed). A picture in
    1/255 steps: the scores are scaled before the product (q * scale) k^T, which rounds differently from
    attention()'s (q k^T) * scale by ~1e-7."""
    B, H, Tq, d_k = inputs.q.shape
    H_kv, Tk = inputs.k.shape[1], inputs.k.shape[2]
    groups = H // H_kv
    factor = overview_factor(Tq, Tk)
    r_out, c_out = _overview_shape(Tq, Tk, factor)
    out = torch.zeros(B, H, r_out, c_out, dtype=torch.uint8)
    scale = inputs.scale if inputs.scale is not None else 1.0 / math.sqrt(d_k)
    q = inputs.q * scale
    lse = lse.to(q.device)
    step = overview_rows(B, H, Tk, factor)
    masks = inputs.masks
    for r0 in range(0, Tq, step):
        rows = range(r0, min(Tq, r0 + step))
        keys = masks.key_range(rows)
        c0 = keys.start // factor * factor
        keys = range(c0, min(Tk, -(-keys.stop // factor) * factor))
        if not len(keys):
            continue
        R, K = len(rows), len(keys)
        # grouped-query heads read their key head without copying it: (B, H_kv, groups * R, d) @ (B, H_kv, d, K)
        qb = q[:, :, rows.start:rows.stop].reshape(B, H_kv, groups * R, d_k)
        x = (qb @ inputs.k[:, :, keys.start:keys.stop].transpose(-2, -1)).view(B, H, R, K)
        if masks.other is not None or masks.padding is not None:
            allowed = masks.allowed(rows, keys, x.device)
            if allowed is not None:
                x.masked_fill_(~allowed, float("-inf"))
        else:  # causal and window cells lie in a band: fill only the columns that may hold one
            band = [range(max(keys.start, keys.stop - R), keys.stop)] if masks.causal else []
            if masks.window is not None:
                band.append(range(keys.start, min(keys.stop, keys.start + R + masks.window)))
            for cols in band:
                allowed = masks.allowed(rows, cols, x.device)
                if allowed is not None:
                    x[..., cols.start - keys.start:cols.stop - keys.start].masked_fill_(~allowed, float("-inf"))
        pooled = _block_max(x, factor, dim=3)  # (B, H, R, K / factor): each row's largest score per key block
        del x
        w = torch.exp(pooled - lse[:, :, rows.start:rows.stop, None])
        w = torch.nan_to_num(w, nan=0.0)  # rows with no key: -inf - -inf
        w = _block_max(w, factor, dim=2)  # (B, H, R / factor, K / factor)
        rb = r0 // factor
        out[:, :, rb:rb + w.shape[2], c0 // factor:c0 // factor + w.shape[3]] = \
            torch.round(w.float().clamp(0, 1) * 255).to(torch.uint8).cpu()
    return out.numpy(), factor


def fast_first_pass(inputs: AttentionInputs, overviews: bool = True) -> tuple[torch.Tensor, FirstPass]:
    """The model's fast path for the context (and each row's log-sum-exp), then the max-pooled overview."""
    context, lse = flash_with_lse(inputs.q, inputs.k, inputs.v, inputs.masks, inputs.scale)
    if inputs.ablation is not None:
        context, _ = ablate(context, inputs.ablation, inputs.query_valid)
    if overviews:
        ov_max, factor = max_overview_pass(inputs, lse)
    else:
        factor = overview_factor(inputs.q.shape[2], inputs.k.shape[2])
        ov_max = np.zeros((inputs.q.shape[0], inputs.q.shape[1], 0, 0), np.uint8)
    return context, FirstPass(lse=lse.cpu(), overview_max=ov_max, factor=factor, exact=False)


def complete_record(inputs: AttentionInputs, with_output: bool = True) -> AttentionRecord:
    """The full AttentionRecord of one attention from its inputs: the same ``attention()`` calls as the exact first
    pass, in the same blocks of rows."""
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
    """A record of every row with the call's ablation applied, its masks (materialised) and, with
    ``with_output``, the concat and the module's output projection. After a fast first pass the context is the
    one the model passed on."""
    context, ablated = rec.context, None
    if inputs.context is not None:
        context = inputs.context
        if inputs.ablation is not None:
            ablated = ablate(rec.context, inputs.ablation, inputs.query_valid)[1]
    elif inputs.ablation is not None:
        context, ablated = ablate(context, inputs.ablation, inputs.query_valid)
    concat = output = None
    if with_output:
        B, H, Tq, d_v = context.shape
        concat = context.transpose(1, 2).reshape(B, Tq, H * d_v)  # (B, Tq, H * d_v), as the module reshapes it
        if inputs.out_proj is not None:
            output = inputs.out_proj(concat)  # (B, Tq, d_model): the module's own W_o on the same tensor
    mask, padding, causal, window = inputs.masks.materialised(inputs.q.device)
    return dataclasses.replace(rec, context=context, query_input=inputs.query_input, key_input=inputs.key_input,
                               padding_mask=padding, causal_mask=causal, window_mask=window, concat=concat,
                               output=output, ablated=ablated, mask=mask if rec.knocked_out is None else rec.mask)


class LazyTrace(Trace):
    """A trace that keeps each attention's inputs and first pass, and computes what is asked on demand, on the lane
    of its call: complete records (an LRU under ``max_bytes``, at least the last one kept; a record above
    ``max_record_bytes`` is refused: ask for windows), windows and rows (only the rows asked for), and, after a fast
    first pass, the statistics pass (once per attention).

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
        self._stats_locks: dict[str, threading.Lock] = {n: threading.Lock() for n in inputs}
        self._stage_overviews: dict[tuple[str, str], np.ndarray] = {}
        self.materialized = 0  # complete records computed (for tests and benchmarks)
        self.windows_computed = 0
        self.statistics_passes = 0

    @property
    def exact(self) -> bool:
        """Every first pass ran attention() itself (not the fast path)."""
        return all(fp.exact for fp in self._passes.values())

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
        """The complete record, computed from the saved inputs by attention(); RecordTooLarge above
        ``max_record_bytes``."""
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
        """Computed by attention() for the first-pass blocks that hold ``rows``, one head, every key (the row's own
        softmax): bitwise what the call computed after an exact first pass; a cached complete record is sliced."""
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
            vals = part.scaled if stage == "adjusted" and part.adjusted is None else getattr(part, stage)
            values.append(np.asarray(_to_numpy(vals[batch_index, 0, lo:hi, cols.start:cols.stop]), np.float32))
        block = np.concatenate(values, axis=0) if values else np.zeros((len(rows), len(cols)), np.float32)
        reasons = self.reasons(name, h, rows, cols, batch_index)
        return Window(name=name, head=h, stage=stage, rows=rows, cols=cols, values=block, reasons=reasons,
                      exact=self._passes[name].exact)

    def columns(self, name: str, cols: range, rows: range | None = None, batch_index: int = 0) -> np.ndarray:
        """Every head's weights on some key columns, computed by attention() on those columns only, each row
        normalised by its log-sum-exp from the first pass (to float rounding the row's own softmax)."""
        inputs = self._inputs[name]
        shape = inputs.shape
        rows = range(shape.tq) if rows is None else _as_range(rows, shape.tq)
        cols = _as_range(cols, shape.tk)
        lse = self._passes[name].lse.to(inputs.q.device)
        H = shape.n_heads
        groups = H // shape.n_kv_heads
        step = max(1, block_bytes() // max(1, H * len(cols) * 4 * 3))

        def compute():
            out = []
            for r0 in range(rows.start, rows.stop, step):
                blk = range(r0, min(rows.stop, r0 + step))
                k = repeat_kv(inputs.k[batch_index:batch_index + 1, :, cols.start:cols.stop], groups)
                v = repeat_kv(inputs.v[batch_index:batch_index + 1, :, cols.start:cols.stop], groups)
                mask, _ = block_mask(inputs, blk, range(H), cols)
                if mask is not None:
                    mask = mask[batch_index:batch_index + 1] if mask.shape[0] > 1 else mask
                bias = inputs.bias
                if bias is not None:
                    bias = _rows(bias, blk)[..., cols.start:cols.stop]
                rec = attention(inputs.q[batch_index:batch_index + 1, :, blk.start:blk.stop], k, v, mask,
                                scale=inputs.scale, bias=bias, softcap=inputs.softcap,
                                log_normalizer=lse[batch_index:batch_index + 1, :, blk.start:blk.stop, None])
                out.append(rec.weights[0].float().cpu())
            return torch.cat(out, dim=1).numpy() if out else np.zeros((H, 0, len(cols)), np.float32)
        return self._compute(compute)

    def reasons(self, name: str, head: int, rows: range, cols: range, batch_index: int = 0) -> dict[str, np.ndarray]:
        """{reason: (rows, cols) bool} of one head's forbidden cells, from the mask's facts (nothing computed)."""
        inputs = self._inputs[name]
        m = inputs.masks
        dev = inputs.q.device
        mask, knocked = block_mask(inputs, rows, range(head, head + 1), cols)
        codes, forbidden = reason_codes(mask, m.padding_view(cols), m.causal_view(rows, cols, dev),
                                        m.window_view(rows, cols, dev), knocked, batch_index,
                                        (1, len(rows), len(cols)))
        return reasons_from_codes(codes[0], forbidden[0])

    def _statistics(self, name: str) -> FirstPass:
        """The first pass, with its statistics pass run (once) after a fast first pass."""
        fp = self._passes[name]
        if fp.stats is not None:
            return fp
        with self._stats_locks[name]:
            fp = self._passes[name]
            if fp.stats is not None:
                return fp
            inputs = self._inputs[name]
            key = RecordName.parse(name).key_stack
            _, stats, _, ov_mean, _ = self._compute(lambda: statistics_pass(
                inputs, self.key_facts.get(key), with_context=False, overviews=True))
            fp = dataclasses.replace(fp, stats=stats, overview_mean=ov_mean)
            with self._lock:
                self._passes[name] = fp
                self.statistics_passes += 1
            return fp

    def statistics_ready(self, name: str) -> bool:
        """Whether ``row_stats(name)`` answers without a pass over the attention."""
        return self._passes[name].stats is not None

    def overview(self, name: str, how: str = "max", batch_index: int = 0) -> np.ndarray:
        """Kept from the first pass (the mean one, after a fast first pass, from the statistics pass)."""
        fp = self._passes[name] if how == "max" else self._statistics(name)
        return (fp.overview_max if how == "max" else fp.overview_mean)[batch_index]

    def overview_pool(self, name: str) -> int:
        return self._passes[name].factor

    def stage_overview(self, name: str, stage: str, batch_index: int = 0) -> np.ndarray:
        """Computed a block of rows at a time by attention() (every head), once per stage; the weights' max
        overview of the first pass answers without a pass when asked for "weights"."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        key = (name, stage)
        with self._lock:
            if key in self._stage_overviews:
                return self._stage_overviews[key][batch_index]
        inputs = self._inputs[name]
        f = self._passes[name].factor

        def compute():
            parts = []
            for rows in inputs.blocks():
                rec = block_attention(inputs, rows)
                vals = rec.scaled if stage == "adjusted" and rec.adjusted is None else getattr(rec, stage)
                parts.append(torch.stack([block_max(vals[b], f) for b in range(vals.shape[0])]))
                del rec
            return torch.cat(parts, dim=2).cpu().numpy()
        values = self._compute(compute)
        with self._lock:
            self._stage_overviews[key] = values
        return values[batch_index]

    def block_reasons(self, name: str, batch_index: int = 0) -> dict[str, np.ndarray]:
        """From the mask's facts (nothing computed)."""
        return self._inputs[name].masks.block_reasons(self._passes[name].factor, batch_index)

    def lse(self, name: str) -> torch.Tensor:
        """(B, H, Tq) each row's log-sum-exp, from the first pass."""
        return self._passes[name].lse

    def row_stats(self, name: str) -> RowStats:
        """From the exact first pass; after a fast one, from the statistics pass (run once, on the call's lane)."""
        return self._statistics(name).stats

    def item(self, index: int, src_len: int | None = None, tgt_len: int | None = None) -> LazyTrace:
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
            r, c = _overview_shape(tq, tk, fp.factor)
            passes[name] = FirstPass(
                lse=fp.lse[index:index + 1, :, :tq], overview_max=fp.overview_max[index:index + 1, :, :r, :c],
                factor=fp.factor, exact=fp.exact, stats=None if fp.stats is None else fp.stats.item(index, tq, tk),
                overview_mean=None if fp.overview_mean is None else fp.overview_mean[index:index + 1, :, :r, :c])
        src = None if self.src_ids is None else self.src_ids[index:index + 1, :S]
        tgt = None if self.tgt_ids is None else self.tgt_ids[index:index + 1, :T]
        facts = {s: [f[index if len(f) > 1 else 0]] for s, f in self.key_facts.items()}
        return LazyTrace(inputs, passes, src, tgt, facts, lane=self._lane, max_bytes=self.max_bytes,
                         max_record_bytes=self.max_record_bytes)

    def inputs_nbytes(self) -> int:
        """What the trace keeps: inputs, statistics and overviews (complete records not counted)."""
        kept = sum(i.nbytes() for i in self._inputs.values())
        for fp in self._passes.values():
            kept += fp.lse.numel() * 4 + fp.overview_max.nbytes
            kept += 0 if fp.stats is None else fp.stats.nbytes()
            kept += 0 if fp.overview_mean is None else fp.overview_mean.nbytes
        with self._lock:
            kept += sum(v.nbytes for v in self._stage_overviews.values())
        return kept

    def nbytes(self) -> int:
        """What it keeps plus the ceiling of its record cache."""
        return self.inputs_nbytes() + (self.max_bytes or 0)


__all__ = ["AttentionInputs", "FAST_ABOVE", "FirstPass", "LazyTrace", "RecordTooLarge", "block_attention",
           "block_bytes", "can_run_fast", "choose_block_rows", "complete_record", "exact_first_pass",
           "fast_first_pass", "finish_record", "flash_with_lse", "max_overview_pass", "statistics_pass"]
