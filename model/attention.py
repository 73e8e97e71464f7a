"""Scaled dot-product attention as one pure function, and multi-head attention built on it.

Mask convention everywhere: a bool tensor, True = this query may attend to this key
(the convention of ``F.scaled_dot_product_attention``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Fields that hold (B, H, Tq, Tk) matrices: one value per (query, key) pair.
PAIR_FIELDS = ("scores", "scaled", "masked", "weights")


@dataclass(frozen=True)
class AttentionRecord:
    """Every intermediate of one attention call, exactly as computed. Shapes in comments.

    H query heads may share H_kv key/value heads (grouped-query attention): query head h reads
    key/value head ``kv_head(h)``; ``k`` and ``v`` keep their H_kv heads, as the model computed them.
    """

    q: Any  # (B, H, Tq, d_k) queries, one slice per head (for RoPE models: after the rotation)
    k: Any  # (B, H_kv, Tk, d_k) keys
    v: Any  # (B, H_kv, Tk, d_v) values
    scores: Any  # (B, H, Tq, Tk) q k^T, before scaling
    scaled: Any  # (B, H, Tq, Tk) scores / sqrt(d_k), or scores * scale when the model gives its own scale
    mask: Any  # bool, broadcastable to (B, H, Tq, Tk); True = may attend; None = no mask
    masked: Any  # (B, H, Tq, Tk) the softmax input: ``adjusted`` (or ``scaled``) with -inf where the mask forbids
    weights: Any  # (B, H, Tq, Tk) softmax rows; all-zero row when every key is masked
    context: Any  # (B, H, Tq, d_v) weights @ v (after any ablation the call asked for)
    # Filled in by the caller (None when attention() is called on its own):
    query_input: Any = None  # (B, Tq, d_q_in) what W_q was applied to
    key_input: Any = None  # (B, Tk, d_kv_in) what W_k and W_v were applied to
    padding_mask: Any = None  # bool (B, 1, 1, Tk): True = key is a real token (not padding)
    causal_mask: Any = None  # bool (1, 1, Tq, Tk): True = key is not in the future; None if not causal
    concat: Any = None  # (B, Tq, H * d_v) heads side by side, before the output projection
    output: Any = None  # (B, Tq, d_model) concat through the output projection W_o
    # Only for models that have them (None otherwise):
    bias: Any = None  # additive bias broadcastable to (B, H, Tq, Tk), e.g. T5's relative position bias
    adjusted: Any = None  # (B, H, Tq, Tk) scaled after softcap and/or + bias: what the mask is applied to
    window_mask: Any = None  # bool (1, 1, Tq, Tk): True = key inside the sliding window; None if no window
    ablated: Any = None  # bool (H,) or (B, H): True where the call replaced that head's context (ablation)

    @property
    def n_heads(self) -> int:
        return int(self.q.shape[1])

    @property
    def n_kv_heads(self) -> int:
        return int(self.k.shape[1])

    @property
    def kv_groups(self) -> int:
        """Query heads per key/value head (1 for ordinary multi-head attention)."""
        return self.n_heads // self.n_kv_heads

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` reads."""
        return int(head) // self.kv_groups

    @property
    def d_k(self) -> int:
        return int(self.q.shape[-1])

    @property
    def logits(self) -> Any:
        """What the mask is applied to: ``adjusted`` when the model adjusts the scaled scores, else ``scaled``."""
        return self.scaled if self.adjusted is None else self.adjusted

    def map(self, fn) -> "AttentionRecord":
        """Apply ``fn`` to every tensor field (None stays None)."""
        return dataclasses.replace(
            self, **{f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name)))
                     for f in dataclasses.fields(self)}
        )

    def to(self, device: str | torch.device) -> "AttentionRecord":
        return self.map(lambda t: t.to(device))

    def numpy(self) -> "AttentionRecord":
        """A copy with every field as a NumPy array on the CPU (bfloat16 becomes float32; float16 stays)."""
        return self.map(_to_numpy)

    def nbytes(self) -> int:
        """Bytes held by the record's tensors (shared storages counted once)."""
        return held_bytes(getattr(self, f.name) for f in dataclasses.fields(self))


def held_bytes(values: Iterable) -> int:
    """Bytes of the tensors (each storage once, however many views share it) and NumPy arrays among ``values``."""
    seen, total = set(), 0
    for t in values:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
        elif isinstance(t, np.ndarray):
            total += t.nbytes
    return total


def _to_numpy(t):
    if isinstance(t, np.ndarray):
        return t
    t = t.detach()
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds every bfloat16 value exactly
        t = t.float()
    return t.cpu().numpy()


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, H_kv, T, d) -> (B, H_kv * groups, T, d): each key/value head repeated for the query heads that share it."""
    if groups == 1:
        return x
    B, H_kv, T, d = x.shape
    return x[:, :, None].expand(B, H_kv, groups, T, d).reshape(B, H_kv * groups, T, d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
              scale: float | None = None, bias: torch.Tensor | None = None,
              softcap: float | None = None, keep_intermediates: bool = True) -> AttentionRecord:
    """softmax(q k^T / sqrt(d_k)) v, returning every intermediate.

    q: (B, H, Tq, d_k), k: (B, H_kv, Tk, d_k), v: (B, H_kv, Tk, d_v) (any leading dims work), H a multiple
    of H_kv; mask: bool broadcastable to (..., Tq, Tk), True = may attend.
    Generalised for trained models, in the order transformers applies them: ``scale`` multiplies the scores
    instead of dividing by sqrt(d_k); ``softcap`` maps them to softcap * tanh(x / softcap) (Gemma 2);
    ``bias`` is added (T5's relative position bias). The softmax runs in float32 for half-precision inputs.
    ``keep_intermediates=False`` (a lazy trace's first pass: only the weights and the context are wanted) runs
    the same operations in place on the scores buffer, so scores, scaled, adjusted and masked are None in the
    record and the weights and context are bitwise the same (one (B, H, Tq, Tk) buffer instead of four).
    """
    d_k = q.shape[-1]
    groups = q.shape[-3] // k.shape[-3] if q.dim() >= 3 and k.dim() >= 3 else 1
    k_rep, v_rep = (repeat_kv(k, groups), repeat_kv(v, groups)) if groups > 1 else (k, v)
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = may attend), got {mask.dtype}")
    scores = q @ k_rep.transpose(-2, -1)  # (B, H, Tq, Tk)
    if not keep_intermediates:  # the same elementwise operations, in place
        logits = scores.div_(math.sqrt(d_k)) if scale is None else scores.mul_(scale)
        if softcap is not None:
            logits.div_(softcap).tanh_().mul_(softcap)
        if bias is not None:
            logits = logits.add_(bias) if _fits(bias, logits) else logits + bias
        if mask is not None:
            logits = logits.masked_fill_(~mask, float("-inf")) if _fits(mask, logits) else \
                torch.where(mask, logits, float("-inf"))
        scores = scaled = adjusted = masked = None
    else:
        scaled = scores / math.sqrt(d_k) if scale is None else scores * scale
        adjusted = None
        if softcap is not None:
            adjusted = torch.tanh(scaled / softcap) * softcap
        if bias is not None:
            adjusted = (scaled if adjusted is None else adjusted) + bias
        logits = scaled if adjusted is None else adjusted
        masked = logits if mask is None else torch.where(mask, logits, float("-inf"))  # one pass, no copy+fill
        logits = masked
    if mask is None:
        weights = _softmax(logits)
    else:
        row_has_key = mask.any(dim=-1, keepdim=True)
        if bool(row_has_key.all()):
            weights = _softmax(logits)
        else:
            # A query whose keys are all masked would softmax to 0/0 = NaN; give it zero weights
            # instead (and keep the backward pass finite by never feeding softmax an all -inf row).
            weights = _softmax(logits.masked_fill(~row_has_key, 0.0)).masked_fill(~row_has_key, 0.0)
    context = weights @ v_rep  # (B, H, Tq, d_v)
    return AttentionRecord(q=q, k=k, v=v, scores=scores, scaled=scaled, mask=mask, masked=masked,
                           weights=weights, context=context, bias=bias, adjusted=adjusted)


def _fits(other: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether ``other`` broadcasts into ``x``'s shape (an in-place operation keeps ``x``'s shape)."""
    return torch.broadcast_shapes(other.shape, x.shape) == x.shape


def _softmax(x: torch.Tensor) -> torch.Tensor:
    if x.dtype in (torch.float16, torch.bfloat16):  # as transformers' eager path: float32 softmax, cast back
        return torch.softmax(x, dim=-1, dtype=torch.float32).to(x.dtype)
    return torch.softmax(x, dim=-1)


def fast_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Same result as ``attention(...).context`` through F.scaled_dot_product_attention (nothing kept)."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    row_has_key = mask.any(dim=-1, keepdim=True)
    # let fully masked rows attend everywhere (finite), then zero them, as attention() does
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~row_has_key)
    return context.masked_fill(~row_has_key, 0.0)


def padding_mask(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, T) ids -> bool (B, 1, 1, T): True where the key is a real token."""
    return (ids != pad_id)[:, None, None, :]


def subsequent_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """triu(ones(T, T), diagonal=1) as bool (T, T): True marks the strictly-future keys.

    diagonal=1 keeps the diagonal out of the mask: a token always sees itself.
    """
    return torch.triu(torch.ones(size, size, dtype=torch.bool, device=device), diagonal=1)


def causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """bool (1, 1, T, T): True = may attend (the key is not in the future)."""
    return ~subsequent_mask(size, device)[None, None]


class KVCache:
    """Keys and values of one attention module during one incremental decoding run (a per-call object, never
    stored on the module). ``static``: computed once from a fixed input (cross-attention over the encoder
    output); otherwise each step's keys are appended (decoder self-attention)."""

    def __init__(self, static: bool):
        self.static = static
        self.k: torch.Tensor | None = None  # (B, H, T_seen, d_k)
        self.v: torch.Tensor | None = None


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query/key/value/output projections.

    The key/value input may be narrower or wider than the query input (``d_kv_in``);
    only the projected query and key widths (d_k) must agree.
    """

    def __init__(self, d_model: int, n_heads: int, d_kv_in: int | None = None, bias: bool = True):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.d_k = d_model // n_heads
        d_kv_in = d_model if d_kv_in is None else d_kv_in
        self.W_query = nn.Linear(d_model, d_model, bias=bias)
        self.W_key = nn.Linear(d_kv_in, d_model, bias=bias)
        self.W_value = nn.Linear(d_kv_in, d_model, bias=bias)
        self.W_out = nn.Linear(d_model, d_model, bias=bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_k).transpose(1, 2)  # (B, H, T, d_k)

    def forward(self, query_input: torch.Tensor, key_input: torch.Tensor,
                padding_mask: torch.Tensor | None = None, causal_mask: torch.Tensor | None = None,
                capture: bool = False, *, recorder=None, name: str = "attention",
                query_valid: torch.Tensor | None = None, cache: KVCache | None = None
                ) -> tuple[torch.Tensor, AttentionRecord | None]:
        """query_input (B, Tq, d_model), key_input (B, Tk, d_kv_in) -> (output (B, Tq, d_model), record or None).

        ``recorder`` (model.capture.Recorder) decides what this call keeps under ``name``; without one,
        ``capture=True`` records this attention alone. ``cache`` reuses keys and values while decoding.
        """
        q = self._split_heads(self.W_query(query_input))
        if cache is not None and cache.static and cache.k is not None:
            k, v = cache.k, cache.v
        else:
            k = self._split_heads(self.W_key(key_input))
            v = self._split_heads(self.W_value(key_input))
            if cache is not None:
                if not cache.static and cache.k is not None:
                    k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
                cache.k, cache.v = k, v
        mask = padding_mask
        if causal_mask is not None:
            mask = causal_mask if mask is None else mask & causal_mask
        own = recorder is None
        if own and not capture:  # nothing to record, nothing to ablate: the fast path, no bookkeeping
            context = fast_attention(q, k, v, mask)
        else:
            if own:
                from .capture import Recorder  # capture.py builds on this module

                recorder = Recorder(capture=True)
            context = recorder.attend(name, q, k, v, mask, query_input=query_input, key_input=key_input,
                                      padding_mask=padding_mask, causal_mask=causal_mask, query_valid=query_valid,
                                      out_proj=self.W_out, finish_later=True)
        B, Tq, _ = query_input.shape
        concat = context.transpose(1, 2).reshape(B, Tq, self.n_heads * self.d_k)  # (B, Tq, H * d_v)
        output = self.W_out(concat)
        if recorder is not None:
            recorder.finish(name, concat, output)
        return output, (recorder.records.get(name) if own and capture else None)
