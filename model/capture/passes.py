"""The passes over one attention's kept inputs (model.capture.inputs), a block of query rows at a time: each row's
log-sum-exp, the max-pooled overview and, from the exact and the statistics pass, the per-row statistics
(model.core.rowstats) with the mean-pooled overview.

Two first passes, chosen by the call:

- exact (inputs up to FAST_ABOVE tokens): ``attention()`` itself, a block of rows at a time; the model goes on with
  its context, and a record, window or row recomputed later is bitwise what the call computed;
- fast (longer inputs): the model's fast path (flash attention, which also gives each row's log-sum-exp) for the
  context, then one pass over the scores for the max-pooled overview. Weights shown later are computed by
  ``attention()`` from the same q and k: they agree with what the fast path used to float rounding (~1e-7), and the
  records' context and output are the ones the model passed on.

After a fast first pass, or an exact one asked to leave them (``statistics=False``: the app's first map), the
statistics pass (the exact pass without the context) runs when statistics are first asked. Nothing ever holds more
than one block of rows x keys x heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.attention import repeat_kv
from ..core.interventions import ablate
from ..core.masks import MaskSpec
from ..core.names import RecordName
from ..core.pooling import max_by_blocks, overview_factor, pool_max, pool_weights, quantize_weights
from ..core.rowstats import KeyFacts, RowStats, collect, row_lse, row_statistics
from .inputs import AttentionInputs, block_attention, block_bytes

FAST_ABOVE = 1024  # query rows: above this many, the first pass runs the fast path (flash attention)


@dataclass
class FirstPass:
    """What a pass over one attention kept besides its inputs."""

    lse: torch.Tensor  # (B, H, Tq) float32: each row's log-sum-exp over its allowed keys (-inf: none)
    overview_max: np.ndarray  # (B, H, r, c) uint8
    factor: int
    exact: bool  # the exact first pass (attention() itself) ran
    stats: RowStats | None = None  # per-row statistics (None after a fast pass, until asked)
    overview_mean: np.ndarray | None = None


def overview_shape(tq: int, tk: int, factor: int) -> tuple[int, int]:
    return -(-tq // factor), -(-tk // factor)


def statistics_pass(inputs: AttentionInputs, key_facts: list[KeyFacts] | None, *, with_context: bool,
                    overviews: bool = True) -> tuple[torch.Tensor | None, RowStats, np.ndarray, np.ndarray,
                                                      torch.Tensor]:
    """``attention()`` a block of rows at a time with every statistic of model.core.rowstats -> (context after any
    ablation, or None; RowStats; max and mean overviews (B, H, r, c) uint8; lse (B, H, Tq))."""
    B, H, Tq, _ = inputs.q.shape
    Tk, d_v = inputs.k.shape[2], inputs.v.shape[-1]
    factor = overview_factor(Tq, Tk)
    context = torch.empty(B, H, Tq, d_v, dtype=inputs.v.dtype, device=inputs.v.device) if with_context else None
    n = RecordName.parse(inputs.name)
    q_positions = inputs.q_positions
    valid = inputs.query_valid if inputs.query_valid is not None else \
        torch.ones(B, Tq, dtype=torch.bool, device=inputs.q.device)
    r_out, c_out = overview_shape(Tq, Tk, factor) if overviews else (0, 0)
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


def context_pass(inputs: AttentionInputs, overviews: bool = True) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``attention()`` a block of rows at a time for the context, each row's log-sum-exp and the max overview only
    -> (context after any ablation, lse (B, H, Tq), max overview (B, H, r, c) uint8): the statistics pass's blocks
    and numbers, without the statistics (a third of an exact first pass at T = 1,024 on GPT-2 small)."""
    B, H, Tq, _ = inputs.q.shape
    Tk, d_v = inputs.k.shape[2], inputs.v.shape[-1]
    factor = overview_factor(Tq, Tk)
    context = torch.empty(B, H, Tq, d_v, dtype=inputs.v.dtype, device=inputs.v.device)
    r_out, c_out = overview_shape(Tq, Tk, factor) if overviews else (0, 0)
    ov_max = np.zeros((B, H, r_out, c_out), dtype=np.uint8)
    lse = []
    for rows in inputs.blocks():
        rec = block_attention(inputs, rows, keep_intermediates=False)
        context[:, :, rows.start:rows.stop] = rec.context
        lse.append(row_lse(rec.weights, rec.mask, rec.row_max))
        if overviews:
            r0 = rows.start // factor
            for b in range(B):
                mx = pool_max(rec.weights[b], factor)
                ov_max[b, :, r0:r0 + mx.shape[1]] = mx
        del rec
    if inputs.ablation is not None:
        context, _ = ablate(context, inputs.ablation, inputs.query_valid)
    return context, torch.cat(lse, dim=-1).cpu(), ov_max


def knocked_context(inputs: AttentionInputs) -> torch.Tensor:
    """The context (B, H, Tq, d_v), after any ablation, of an attention that nobody records but whose mask the call
    changes (knockouts): ``attention()`` a block of rows at a time, never a (B, H, Tq, Tk) matrix."""
    B, H, Tq, _ = inputs.q.shape
    context = torch.empty(B, H, Tq, inputs.v.shape[-1], dtype=inputs.v.dtype, device=inputs.v.device)
    for rows in inputs.blocks():
        context[:, :, rows.start:rows.stop] = block_attention(inputs, rows, keep_intermediates=False).context
    if inputs.ablation is not None:
        context, _ = ablate(context, inputs.ablation, inputs.query_valid)
    return context


def exact_first_pass(inputs: AttentionInputs, key_facts: list[KeyFacts] | None, overviews: bool = True,
                     statistics: bool = True) -> tuple[torch.Tensor, FirstPass]:
    """``attention()`` itself a block of rows at a time: (context (B, H, Tq, d_v) after any ablation, FirstPass).
    ``statistics=False``: the per-row statistics and the mean overview are left to the statistics pass, run when
    first asked (the same blocks through the same functions: the same numbers)."""
    Tq, Tk = inputs.q.shape[2], inputs.k.shape[2]
    if not statistics:
        context, lse, ov_max = context_pass(inputs, overviews)
        return context, FirstPass(lse=lse, overview_max=ov_max, factor=overview_factor(Tq, Tk), exact=True)
    context, stats, ov_max, ov_mean, lse = statistics_pass(inputs, key_facts, with_context=True,
                                                           overviews=overviews)
    return context, FirstPass(lse=lse, overview_max=ov_max, factor=overview_factor(Tq, Tk), exact=True,
                              stats=stats, overview_mean=ov_mean)


def can_run_fast(inputs: AttentionInputs) -> bool:
    """The fast first pass computes plain scaled dot-product attention: no bias, softcap or knockouts."""
    return inputs.bias is None and inputs.softcap is None and not inputs.knocked


def _flash(q, k, v, bias, causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One fused attention with its log-sum-exp: torch's CPU flash kernel, elsewhere the memory-efficient one."""
    if q.device.type == "cpu":
        context, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal, attn_mask=bias, scale=scale)
        return context, lse
    if bias is not None:
        bias = bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True, 0.0, causal, scale=scale)
    return out[0], out[1][..., :q.shape[2]]


def flash_with_lse(q, k, v, masks: MaskSpec, scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fast path's attention with each row's log-sum-exp: (context (B, H, Tq, d_v), lse (B, H, Tq) float32).
    Rows with no allowed key get zeros and lse = -inf. A mask other than plain causal (a sliding window, padding)
    becomes an additive bias a block of query rows at a time ((B|1, 1, rows, Tk) under $ATTN_BLOCK_MB), never one
    Tq x Tk matrix: 4 GiB of float32 at 32,768 tokens."""
    H = q.shape[1]
    groups = H // k.shape[1]
    k_rep, v_rep = repeat_kv(k, groups), repeat_kv(v, groups)
    d_k = q.shape[-1]
    scale = scale if scale is not None else 1.0 / math.sqrt(d_k)
    plain_causal = masks.causal and masks.offset == 0 and masks.padding is None and masks.window is None and \
        masks.other is None
    if plain_causal:
        context, lse = _flash(q, k_rep, v_rep, None, True, scale)
        return context, lse.float()
    B, Tq, Tk = q.shape[0], masks.tq, masks.tk
    step = max(1, block_bytes() // max(1, B * Tk * (q.element_size() + 1)))
    context = torch.empty(B, H, Tq, v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(B, H, Tq, dtype=torch.float32, device=q.device)
    for r0 in range(0, Tq, step):
        rows = range(r0, min(Tq, r0 + step))
        allowed = masks.allowed(rows, range(Tk), q.device)  # (B|1, 1, R, Tk) bool, or None: every key
        bias = None
        if allowed is not None:
            bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
        c, ls = _flash(q[:, :, rows.start:rows.stop], k_rep, v_rep, bias, False, scale)
        ls = ls.float()
        if allowed is not None:
            empty = ~allowed.any(-1)  # (B|1, 1, R): rows with no allowed key
            if bool(empty.any()):
                c = c.masked_fill(empty[..., None], 0.0)
                ls = ls.masked_fill(empty, float("-inf"))
        context[:, :, rows.start:rows.stop] = c
        lse[:, :, rows.start:rows.stop] = ls
    return context, lse


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
    r_out, c_out = overview_shape(Tq, Tk, factor)
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
        pooled = max_by_blocks(x, factor, dim=3)  # (B, H, R, K / factor): each row's largest score per key block
        del x
        w = torch.exp(pooled - lse[:, :, rows.start:rows.stop, None])
        w = torch.nan_to_num(w, nan=0.0)  # rows with no key: -inf - -inf
        w = max_by_blocks(w, factor, dim=2)  # (B, H, R / factor, K / factor)
        rb = r0 // factor
        out[:, :, rb:rb + w.shape[2], c0 // factor:c0 // factor + w.shape[3]] = torch.from_numpy(quantize_weights(w))
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


__all__ = ["FAST_ABOVE", "FirstPass", "can_run_fast", "context_pass", "exact_first_pass", "fast_first_pass",
           "flash_with_lse", "knocked_context", "max_overview_pass", "overview_rows", "statistics_pass"]
