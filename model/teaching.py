"""Every tensor of the teaching playground, computed live from small seeded matrices.

Follows "Understanding and coding self-attention" (Raschka): X -> Q = X W_query, K = X W_key,
V = X W_value (weights stored as (d_in, d_out), so no transposes) -> omega = Q K^T ->
alpha = softmax(omega / sqrt(d_k)) -> Z = alpha V. Every softmax-attention number comes from
``model.core.attention.attention`` so the playground and the model can never disagree.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from .core.attention import AttentionRecord, attention

MAX_TOKENS = 64  # longer sentences are cut so heatmaps stay readable
CURVE_D_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # the widths the scaling curve is drawn at
_TOKEN_RE = re.compile(r"\w+|[^\w\s]+")  # words, or runs of punctuation / symbols (emoji included)


@dataclass(frozen=True)
class Sentence:
    """A sentence split into readable tokens."""

    text: str
    tokens: list[str]  # kept tokens (at most max_tokens)
    n_tokens: int  # tokens the full text had, before the cut
    truncated: bool  # True when tokens were dropped

    @property
    def labels(self) -> list[str]:
        """Position-prefixed labels, 0-based as in the inspector, distinct even when a token repeats ("0·the",
        "3·the")."""
        return [f"{i}·{t}" for i, t in enumerate(self.tokens)]


def tokenize(text: str, max_tokens: int = MAX_TOKENS) -> Sentence:
    """Split into words and punctuation (no vocabulary, no [UNK])."""
    tokens = _TOKEN_RE.findall(text or "")
    return Sentence(text=text or "", tokens=tokens[:max_tokens], n_tokens=len(tokens),
                    truncated=len(tokens) > max_tokens)


def seeded_matrix(seed: int, name: str, rows: int, cols: int, std: float = 1.0) -> torch.Tensor:
    """(rows, cols) standard-normal matrix times std, reproducible from (seed, name).

    Each name gets its own generator, so changing d_v never changes W_query, and row i of a
    matrix does not depend on how many rows are drawn (a longer sentence keeps earlier rows).
    """
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
    return torch.randn(max(rows, MAX_TOKENS), cols, generator=gen)[:rows] * std


def embed(n_tokens: int, d_in: int, seed: int, name: str = "X") -> torch.Tensor:
    """Seeded random embeddings, one row per position: (T, d_in), entries ~ N(0, 1)."""
    return seeded_matrix(seed, f"{name}:{d_in}", n_tokens, d_in)


def projection(seed: int, name: str, d_in: int, d_out: int) -> torch.Tensor:
    """A (d_in, d_out) weight so that X @ W needs no transpose; std 1/sqrt(d_in) keeps q, k ~ N(0, 1)."""
    return seeded_matrix(seed, f"{name}:{d_in}x{d_out}", d_in, d_out, std=1.0 / math.sqrt(d_in))


def causal_allowed(size: int, diagonal: int = 1) -> torch.Tensor:
    """bool (T, T), True = may attend: ``~torch.triu(ones(T, T), diagonal)``. The tutorial's triu marks the future
    (the cells filled with -inf); attention() takes the convention of every mask here, True = may attend."""
    return ~torch.triu(torch.ones(size, size), diagonal=diagonal).bool()


def run_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None = None,
                  scale: bool = True) -> AttentionRecord:
    """model.core.attention.attention, with scaling switchable: scale=False passes ``scale=1.0`` so that the softmax
    sees q k^T unscaled (the record's ``scaled`` field is then omega itself)."""
    return attention(q, k, v, allowed, scale=None if scale else 1.0)


@dataclass(frozen=True)
class SelfAttentionSteps:
    """Single-head self-attention, step by step. Matrices are 2-D NumPy arrays; shapes in comments."""

    X: np.ndarray  # (T, d_in) embeddings
    W_query: np.ndarray  # (d_in, d_k)
    W_key: np.ndarray  # (d_in, d_k)
    W_value: np.ndarray  # (d_in, d_v)
    Q: np.ndarray  # (T, d_k) = X W_query
    K: np.ndarray  # (T, d_k)
    V: np.ndarray  # (T, d_v)
    omega: np.ndarray  # (T, T) = Q K^T, unscaled attention scores
    logits: np.ndarray  # (T, T) what the softmax sees before masking: omega / sqrt(d_k), or omega if scale=False
    allowed: np.ndarray | None  # (T, T) bool, True = may attend (False: the future); None when not causal
    weights: np.ndarray  # (T, T) alpha, rows sum to 1 (0 for a fully masked row)
    Z: np.ndarray  # (T, d_v) = alpha V, the context vectors
    scale: bool  # True when the scores were divided by sqrt(d_k)
    diagonal: int  # the triu diagonal used for the mask

    @property
    def d_k(self) -> int:
        return int(self.Q.shape[1])


def self_attention(X: torch.Tensor, d_k: int, d_v: int, seed: int, causal: bool = False, diagonal: int = 1,
                   scale: bool = True) -> SelfAttentionSteps:
    """Project X to Q, K, V with seeded weights and run attention() on them."""
    d_in = X.shape[1]
    W_query = projection(seed, "W_query", d_in, d_k)
    W_key = projection(seed, "W_key", d_in, d_k)
    W_value = projection(seed, "W_value", d_in, d_v)
    Q, K, V = X @ W_query, X @ W_key, X @ W_value  # (T, d_k), (T, d_k), (T, d_v)
    allowed = causal_allowed(X.shape[0], diagonal) if causal else None
    rec = run_attention(Q, K, V, allowed, scale=scale).numpy()
    return SelfAttentionSteps(
        X=X.numpy(), W_query=W_query.numpy(), W_key=W_key.numpy(), W_value=W_value.numpy(),
        Q=Q.numpy(), K=K.numpy(), V=V.numpy(), omega=rec.scores, logits=rec.scaled,
        allowed=None if allowed is None else allowed.numpy(), weights=rec.weights, Z=rec.context,
        scale=scale, diagonal=diagonal)


@dataclass(frozen=True)
class QueryBreakdown:
    """One query row spelled out: omega_i = q_i . k_j, alpha_i = softmax(row), z_i = sum_j alpha_ij v_j."""

    index: int  # query position (0-based)
    q: np.ndarray  # (d_k,)
    omega: np.ndarray  # (T,) q_i . k_j
    logits: np.ndarray  # (T,) omega / sqrt(d_k) (or omega when unscaled)
    visible: np.ndarray  # (T,) bool, False where the mask hides key j
    weights: np.ndarray  # (T,) alpha_i, one softmax over the whole row
    weighted_values: np.ndarray  # (T, d_v) alpha_ij * v_j
    z: np.ndarray  # (d_v,) the row of Z from attention()
    z_sum: np.ndarray  # (d_v,) sum_j alpha_ij v_j, summed here as a check

    @property
    def max_abs_diff(self) -> float:
        return float(np.abs(self.z - self.z_sum).max()) if self.z.size else 0.0


def query_breakdown(steps: SelfAttentionSteps, index: int) -> QueryBreakdown:
    """Slice one query's numbers out of the steps (nothing recomputed except the check sum)."""
    T = steps.X.shape[0]
    visible = np.ones(T, bool) if steps.allowed is None else steps.allowed[index]
    weighted = steps.weights[index][:, None] * steps.V
    return QueryBreakdown(index=index, q=steps.Q[index], omega=steps.omega[index], logits=steps.logits[index],
                          visible=visible, weights=steps.weights[index], weighted_values=weighted,
                          z=steps.Z[index], z_sum=weighted.sum(axis=0))


@dataclass(frozen=True)
class MaskComparison:
    """Masking before softmax (-inf) vs after softmax (zero the future, renormalise), plus the naive bug."""

    allowed: np.ndarray  # (T, T) bool, True = may attend (the tutorial's triu marks the rest)
    before: np.ndarray  # (T, T) weights from attention() with the mask (fully masked rows -> 0)
    after: np.ndarray  # (T, T) softmax without mask, future zeroed, rows renormalised (0/0 -> 0)
    max_abs_diff: float  # max |before - after|
    naive: np.ndarray  # (T, T) plain softmax of the -inf-filled scores: NaN in fully masked rows
    nan_rows: list[int]  # 0-based query rows where the naive softmax is NaN
    empty_rows: list[int]  # rows whose every key is masked (the same rows, by construction)


def compare_masking(Q: np.ndarray, K: np.ndarray, V: np.ndarray, diagonal: int = 1,
                    scale: bool = True) -> MaskComparison:
    """Both ways of causal masking with mask = triu(ones(T, T), diagonal), through attention()."""
    q, k, v = (torch.as_tensor(a) for a in (Q, K, V))
    allowed = causal_allowed(q.shape[0], diagonal)
    masked_rec = run_attention(q, k, v, allowed, scale=scale)
    plain = run_attention(q, k, v, None, scale=scale).weights
    kept = plain.masked_fill(~allowed, 0.0)
    sums = kept.sum(dim=-1, keepdim=True)
    after = torch.where(sums > 0, kept / sums.clamp_min(1e-30), torch.zeros_like(kept))
    before = masked_rec.weights
    # what a plain softmax makes of a row that is all -inf: exp(-inf) / sum = 0 / 0 = NaN
    naive = torch.softmax(masked_rec.masked, dim=-1).numpy()
    nan_rows = [int(i) for i in np.where(np.isnan(naive).any(axis=1))[0]]
    empty_rows = [int(i) for i in np.where(~allowed.numpy().any(axis=1))[0]]
    return MaskComparison(allowed=allowed.numpy(), before=before.numpy(), after=after.numpy(),
                          max_abs_diff=float((before - after).abs().max()) if before.numel() else 0.0,
                          naive=naive, nan_rows=nan_rows, empty_rows=empty_rows)


@dataclass(frozen=True)
class ScalingCurve:
    """Mean row entropy and max weight of softmax rows against d_k, scaled vs unscaled."""

    d_k: np.ndarray  # (n,) the d_k values
    entropy_scaled: np.ndarray  # (n,) mean row entropy in nats, softmax(q k^T / sqrt(d_k))
    entropy_unscaled: np.ndarray  # (n,) same without the division
    max_weight_scaled: np.ndarray  # (n,) mean of each row's largest weight
    max_weight_unscaled: np.ndarray  # (n,)
    n_keys: int  # keys per row; log(n_keys) is the entropy of uniform attention
    n_samples: int  # seeds averaged over


def scaling_curve(d_ks: list[int], n_keys: int, seed: int, n_samples: int = 16) -> ScalingCurve:
    """q, k entries ~ N(0, 1): q . k has variance d_k, so unscaled softmax rows saturate as d_k grows."""
    n_keys = max(2, n_keys)
    out: dict[str, list[float]] = {k: [] for k in ("es", "eu", "ms", "mu")}
    for d in d_ks:
        q = seeded_matrix(seed, f"curve_q:{d}:{n_keys}", n_samples * n_keys, d).view(n_samples, 1, n_keys, d)
        k = seeded_matrix(seed, f"curve_k:{d}:{n_keys}", n_samples * n_keys, d).view(n_samples, 1, n_keys, d)
        for scale, e_key, m_key in ((True, "es", "ms"), (False, "eu", "mu")):
            w = run_attention(q, k, k, scale=scale).weights  # (S, 1, T, T)
            entropy = -torch.special.xlogy(w, w).sum(dim=-1)  # 0 log 0 = 0
            out[e_key].append(float(entropy.mean()))
            out[m_key].append(float(w.max(dim=-1).values.mean()))
    return ScalingCurve(d_k=np.asarray(d_ks), entropy_scaled=np.asarray(out["es"]),
                        entropy_unscaled=np.asarray(out["eu"]), max_weight_scaled=np.asarray(out["ms"]),
                        max_weight_unscaled=np.asarray(out["mu"]), n_keys=n_keys, n_samples=n_samples)


@dataclass(frozen=True)
class CrossAttentionSteps:
    """Queries from sentence 1, keys and values from sentence 2 (widths d_in1 and d_in2 may differ)."""

    X1: np.ndarray  # (T1, d_in1)
    X2: np.ndarray  # (T2, d_in2)
    W_query: np.ndarray  # (d_in1, d_k)
    W_key: np.ndarray  # (d_in2, d_k)
    W_value: np.ndarray  # (d_in2, d_v)
    Q: np.ndarray  # (T1, d_k)
    K: np.ndarray  # (T2, d_k)
    V: np.ndarray  # (T2, d_v)
    omega: np.ndarray  # (T1, T2)
    weights: np.ndarray  # (T1, T2)
    Z: np.ndarray  # (T1, d_v)


def cross_attention(X1: torch.Tensor, X2: torch.Tensor, d_k: int, d_v: int, seed: int,
                    scale: bool = True) -> CrossAttentionSteps:
    """Only d_q = d_k must match; T1 != T2 and d_in1 != d_in2 are fine."""
    W_query = projection(seed, "W_query", X1.shape[1], d_k)  # the same W_query as self-attention
    W_key = projection(seed, "W_key2", X2.shape[1], d_k)
    W_value = projection(seed, "W_value2", X2.shape[1], d_v)
    Q, K, V = X1 @ W_query, X2 @ W_key, X2 @ W_value
    rec = run_attention(Q, K, V, scale=scale).numpy()
    return CrossAttentionSteps(X1=X1.numpy(), X2=X2.numpy(), W_query=W_query.numpy(), W_key=W_key.numpy(),
                               W_value=W_value.numpy(), Q=Q.numpy(), K=K.numpy(), V=V.numpy(),
                               omega=rec.scores, weights=rec.weights, Z=rec.context)


@dataclass(frozen=True)
class MultiHeadSteps:
    """n heads, each with its own W matrices, concatenated and projected back to d_model."""

    W_query: np.ndarray  # (H, d_model, d_k) one W_query per head
    W_key: np.ndarray  # (H, d_model, d_k)
    W_value: np.ndarray  # (H, d_model, d_v)
    weights: np.ndarray  # (H, T, T)
    heads: np.ndarray  # (H, T, d_v) each head's Z
    concat: np.ndarray  # (T, H * d_v) heads side by side
    W_out: np.ndarray  # (H * d_v, d_model)
    output: np.ndarray  # (T, d_model) = concat W_out


def head_widths(d_model: int, n_heads: int, d_k: int, d_v: int, split: bool) -> tuple[int, int]:
    """Each head's (d_k, d_v): with ``split``, d_model // n_heads for both (at least 1; the common choice, which
    keeps n heads about as costly as one full-width head), else the given widths."""
    if split:
        d_head = max(1, d_model // n_heads)
        return d_head, d_head
    return d_k, d_v


def multi_head(X: torch.Tensor, n_heads: int, d_k: int, d_v: int, seed: int, causal: bool = False,
               diagonal: int = 1, scale: bool = True) -> MultiHeadSteps:
    """All heads in one attention() call on (1, H, T, d) tensors, as the model does."""
    T, d_model = X.shape
    W_query = torch.stack([projection(seed, f"W_query.h{h}", d_model, d_k) for h in range(n_heads)])
    W_key = torch.stack([projection(seed, f"W_key.h{h}", d_model, d_k) for h in range(n_heads)])
    W_value = torch.stack([projection(seed, f"W_value.h{h}", d_model, d_v) for h in range(n_heads)])
    q, k, v = X @ W_query, X @ W_key, X @ W_value  # (H, T, d_k), (H, T, d_k), (H, T, d_v)
    allowed = causal_allowed(T, diagonal) if causal else None
    rec = run_attention(q[None], k[None], v[None], allowed, scale=scale)
    heads = rec.context[0]  # (H, T, d_v)
    concat = heads.transpose(0, 1).reshape(T, n_heads * d_v)  # (T, H * d_v)
    W_out = projection(seed, "W_out", n_heads * d_v, d_model)
    return MultiHeadSteps(W_query=W_query.numpy(), W_key=W_key.numpy(), W_value=W_value.numpy(),
                          weights=rec.weights[0].numpy(), heads=heads.numpy(), concat=concat.numpy(),
                          W_out=W_out.numpy(), output=(concat @ W_out).numpy())
