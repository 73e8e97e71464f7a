"""What one attention received (and passed on), as a lazy capture keeps it, and ``attention()`` recomputed from it
over any block of query rows, heads and key columns: a complete record is the same ``attention()`` calls as the exact
first pass (model.capture.passes), in the same blocks of rows.

Kept per attention: q and k (after RoPE / QK-norm) per key/value head, v, the mask as facts (model.core.masks), the
projections' inputs and, after a fast first pass, the context the model passed on. A block of rows x keys x heads
stays under $ATTN_BLOCK_MB.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import settings
from ..core.attention import AttentionRecord, RecordShape, attention, held_bytes
from ..core.interventions import Cells, ablate, knockout_block
from ..core.masks import MaskSpec
from ..core.names import RecordName


def block_bytes() -> int:
    """$ATTN_BLOCK_MB (default 32): the most one block of rows x keys x heads of a pass may hold."""
    return settings.megabytes("ATTN_BLOCK_MB")


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
    knocked: dict[tuple[int, int], Cells]  # (batch element, head) -> the cells knocked out (never a Tq x Tk array)
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
        return held_bytes(fields) + sum(c.nbytes() for c in self.knocked.values()) + self.masks.nbytes()

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
            knocked={(0, h): c for (bb, h), c in self.knocked.items() if bb == b},  # (cells beyond are left out)
            context=None if self.context is None else self.context[b:b + 1, :, :tq])


def choose_block_rows(batch: int, n_heads: int, tq: int, tk: int, factor: int = 1) -> int:
    """Rows per block: a multiple of the overview's pooling factor whose (B, H, rows, Tk) scores (and the few
    temporaries of a pass) stay under block_bytes()."""
    per_row = max(1, batch * n_heads * tk * 4 * 3)
    rows = max(1, block_bytes() // per_row)
    rows = max(factor, rows // factor * factor)
    return min(rows, max(factor, -(-tq // factor) * factor))


def row_block(t: torch.Tensor | None, rows: range) -> torch.Tensor | None:
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
    bias = _heads(row_block(inputs.bias, rows), heads)
    rec = attention(q, k, v, mask, scale=inputs.scale, bias=bias, softcap=inputs.softcap,
                    keep_intermediates=keep_intermediates)
    return dataclasses.replace(rec, k=inputs.k if len(heads) == H else k, v=inputs.v if len(heads) == H else v,
                               knocked_out=knocked)


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


__all__ = ["AttentionInputs", "block_attention", "block_bytes", "block_mask", "choose_block_rows", "complete_record",
           "finish_record"]
