"""Scaled dot-product attention as one pure function, and multi-head attention built on it.

Mask convention everywhere: a bool tensor, True = this query may attend to this key
(the convention of ``F.scaled_dot_product_attention``).
"""

from __future__ import annotations

import dataclasses
import math
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
    """Every intermediate of one attention call, exactly as computed. Shapes in comments."""

    q: Any  # (B, H, Tq, d_k) queries, one slice per head
    k: Any  # (B, H, Tk, d_k) keys
    v: Any  # (B, H, Tk, d_v) values
    scores: Any  # (B, H, Tq, Tk) q k^T, before scaling
    scaled: Any  # (B, H, Tq, Tk) scores / sqrt(d_k)
    mask: Any  # bool, broadcastable to (B, H, Tq, Tk); True = may attend; None = no mask
    masked: Any  # (B, H, Tq, Tk) scaled with -inf where the mask forbids
    weights: Any  # (B, H, Tq, Tk) softmax rows; all-zero row when every key is masked
    context: Any  # (B, H, Tq, d_v) weights @ v
    # Filled in by MultiHeadAttention (None when attention() is called on its own):
    query_input: Any = None  # (B, Tq, d_q_in) what W_q was applied to
    key_input: Any = None  # (B, Tk, d_kv_in) what W_k and W_v were applied to
    padding_mask: Any = None  # bool (B, 1, 1, Tk): True = key is a real token (not [PAD])
    causal_mask: Any = None  # bool (1, 1, Tq, Tk): True = key is not in the future; None if not causal
    concat: Any = None  # (B, Tq, H * d_v) heads side by side, before the output projection
    output: Any = None  # (B, Tq, d_model) concat through the output projection W_o

    @property
    def n_heads(self) -> int:
        return int(self.q.shape[1])

    @property
    def d_k(self) -> int:
        return int(self.q.shape[-1])

    def map(self, fn) -> "AttentionRecord":
        """Apply ``fn`` to every tensor field (None stays None)."""
        return dataclasses.replace(
            self, **{f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name)))
                     for f in dataclasses.fields(self)}
        )

    def to(self, device: str | torch.device) -> "AttentionRecord":
        return self.map(lambda t: t.to(device))

    def numpy(self) -> "AttentionRecord":
        """A copy with every field as a NumPy array on the CPU (float32 / bool)."""
        return self.map(lambda t: t if isinstance(t, np.ndarray) else t.detach().cpu().numpy())


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None) -> AttentionRecord:
    """softmax(q k^T / sqrt(d_k)) v, returning every intermediate.

    q: (B, H, Tq, d_k), k: (B, H, Tk, d_k), v: (B, H, Tk, d_v) (any leading dims work);
    mask: bool broadcastable to (..., Tq, Tk), True = may attend.
    """
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1)  # (B, H, Tq, Tk)
    scaled = scores / math.sqrt(d_k)
    if mask is None:
        masked = scaled
        weights = torch.softmax(scaled, dim=-1)
    else:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = may attend), got {mask.dtype}")
        masked = torch.where(mask, scaled, float("-inf"))  # one pass (masked_fill would copy, then fill)
        row_has_key = mask.any(dim=-1, keepdim=True)
        if bool(row_has_key.all()):
            weights = torch.softmax(masked, dim=-1)
        else:
            # A query whose keys are all masked would softmax to 0/0 = NaN; give it zero weights
            # instead (and keep the backward pass finite by never feeding softmax an all -inf row).
            weights = torch.softmax(masked.masked_fill(~row_has_key, 0.0), dim=-1).masked_fill(~row_has_key, 0.0)
    context = weights @ v  # (B, H, Tq, d_v)
    return AttentionRecord(q=q, k=k, v=v, scores=scores, scaled=scaled, mask=mask,
                           masked=masked, weights=weights, context=context)


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
                capture: bool = False) -> tuple[torch.Tensor, AttentionRecord | None]:
        """query_input (B, Tq, d_model), key_input (B, Tk, d_kv_in) -> (output (B, Tq, d_model), record)."""
        q = self._split_heads(self.W_query(query_input))
        k = self._split_heads(self.W_key(key_input))
        v = self._split_heads(self.W_value(key_input))
        mask = padding_mask
        if causal_mask is not None:
            mask = causal_mask if mask is None else mask & causal_mask
        B, Tq, _ = query_input.shape
        if capture:
            record = attention(q, k, v, mask)
            context = record.context
        else:
            record, context = None, fast_attention(q, k, v, mask)
        concat = context.transpose(1, 2).reshape(B, Tq, self.n_heads * self.d_k)  # (B, Tq, H * d_v)
        output = self.W_out(concat)
        if record is not None:
            record = dataclasses.replace(record, query_input=query_input, key_input=key_input,
                                         padding_mask=padding_mask, causal_mask=causal_mask,
                                         concat=concat, output=output)
        return output, record
