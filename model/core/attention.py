"""Scaled dot-product attention as one pure function that returns every intermediate.

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

STAGES = ("scores", "scaled", "adjusted", "masked", "weights")  # the (query, key) stages, in computing order


@dataclass(frozen=True)
class RecordShape:
    """The sizes of one record, known before it is computed."""

    batch: int
    n_heads: int
    n_kv_heads: int
    tq: int
    tk: int
    d_k: int
    d_v: int
    d_query_in: int  # width of the query projection's input
    d_key_in: int
    d_out: int  # width of the output projection's output
    adjusted: bool  # the record has an ``adjusted`` stage (a bias or a softcap)
    element_size: int  # bytes per value (4 for float32, 2 for half precision)

    def matrix_bytes(self) -> int:
        """One (B, H, Tq, Tk) matrix."""
        return self.batch * self.n_heads * self.tq * self.tk * self.element_size

    def record_bytes(self) -> int:
        """About what a complete record holds: its (B, H, Tq, Tk) matrices (scores, scaled, masked, weights, and
        adjusted when it has one), the vectors (q, k, v, inputs, context, concat, output) and the bool masks."""
        matrices = (4 + self.adjusted) * self.matrix_bytes()
        vectors = self.batch * (self.tq * (self.n_heads * self.d_k + self.d_query_in + 2 * self.n_heads * self.d_v
                                           + self.d_out) + self.tk * (self.n_kv_heads * (self.d_k + self.d_v)
                                                                      + self.d_key_in)) * self.element_size
        return matrices + vectors + self.batch * self.tq * self.tk  # + the masks, one byte a cell


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
    knocked_out: Any = None  # bool (B, H, Tq, Tk): cells the call removed from the mask (knockouts); None if none
    row_max: Any = None  # (B, H, Tq, 1) each row's largest softmax input (kept by a lazy first pass only)

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
        return self.map(to_numpy)

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


def to_numpy(t):
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
              softcap: float | None = None, keep_intermediates: bool = True,
              log_normalizer: torch.Tensor | None = None) -> AttentionRecord:
    """softmax(q k^T / sqrt(d_k)) v, returning every intermediate.

    q: (B, H, Tq, d_k), k: (B, H_kv, Tk, d_k), v: (B, H_kv, Tk, d_v) (any leading dims work), H a multiple
    of H_kv; mask: bool broadcastable to (..., Tq, Tk), True = may attend.
    Generalised for trained models, in the order transformers applies them: ``scale`` multiplies the scores
    instead of dividing by sqrt(d_k); ``softcap`` maps them to softcap * tanh(x / softcap) (Gemma 2);
    ``bias`` is added (T5's relative position bias). The softmax runs in float32 for half-precision inputs.
    ``keep_intermediates=False`` (a lazy trace's first pass: only the weights and the context are wanted) runs
    the same operations in place on the scores buffer, so scores, scaled, adjusted and masked are None in the
    record and the weights and context are bitwise the same (one (B, H, Tq, Tk) buffer instead of four).
    ``log_normalizer`` (..., Tq, 1): each row's log-sum-exp over *all* its keys, kept from an earlier pass; the
    weights are then exp(masked - log_normalizer), so that ``k`` may hold only some of the keys (a window of
    columns). Those weights agree with the row's own softmax to float rounding, not bitwise.
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
        row_max = logits.amax(-1, keepdim=True)  # for the row's log-sum-exp: lse = max - log(max weight)
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
        row_max = None
    if log_normalizer is not None:
        # a slice of columns, normalised by the whole row; a row with no allowed key has -inf and weight 0
        # in float64: x - lse in float32 would lose ~1e-7 of |x| (large logits), more than the softmax's own rounding
        lse = log_normalizer.to(torch.float64)
        finite = torch.isfinite(lse)
        weights = torch.exp(logits.double() - torch.where(finite, lse, torch.zeros_like(lse)))
        weights = torch.where(finite, weights, torch.zeros_like(weights)).to(logits.dtype)
    elif mask is None:
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
                           weights=weights, context=context, bias=bias, adjusted=adjusted, row_max=row_max)


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
    """bool (T, T), True = may attend: key j is not after query i (``~torch.triu(ones(T, T), diagonal=1)``).

    diagonal=1 keeps the diagonal out of the forbidden part: a token always sees itself. The same convention as
    every mask here (and ``F.scaled_dot_product_attention``): True = may attend.
    """
    return ~torch.triu(torch.ones(size, size, dtype=torch.bool, device=device), diagonal=1)


def causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """bool (1, 1, T, T): ``subsequent_mask`` broadcastable over batch and heads."""
    return subsequent_mask(size, device)[None, None]
