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

from .api import patch_label
from .core.attention import AttentionRecord, attention
from .training.shapes import COLOURS, TARGET

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


# An image as tokens: a picture cut into patches, each patch a token; the [CLS] query reads them (as ViT does).

# The [CLS] query over a scene of the shapes task (model.training.shapes: shapes on black). Random projections keep
# inner products only roughly, and on black a red patch's key already leans towards the background's (the colours'
# cosine is 0.31), so "looks for red" needs room: with d_model 256, d_k 128 and |q| = 3 sqrt(d_k), the patches
# holding red take 0.99 of the weight on average over 60 scenes at 8-pixel patches (at least 0.72; 64 / 32 and
# |q| = 1.5 sqrt(d_k) gave 0.45, at least 0.06), and 0.01 once the red shape is painted blue.
PATCH_D_MODEL = 256
PATCH_D_K = 128
CLS_SHARPNESS = 3.0  # "looks for red": |q| = this x sqrt(d_k)


def cut_into_patches(image: np.ndarray, patch: int) -> np.ndarray:
    """(H, W, 3) -> (rows * cols, patch * patch * 3): each patch's pixels flattened, row-major over the grid (the
    patch at grid row r, column c is number r * cols + c), as ViT's patch embedding reads them."""
    H, W, C = image.shape
    rows, cols = H // patch, W // patch
    blocks = image[: rows * patch, : cols * patch].reshape(rows, patch, cols, patch, C)  # (rows, p, cols, p, C)
    return blocks.transpose(0, 2, 1, 3, 4).reshape(rows * cols, patch * patch * C)


def patch_labels(rows: int, cols: int) -> list[str]:
    """["[CLS]", "r0c0", "r0c1", ...]: the [CLS] token first, then the patches row by row."""
    return ["[CLS]"] + [patch_label(r, c) for r in range(rows) for c in range(cols)]


QUERIES = ("looks for red", "random (untrained)")  # what the [CLS] query is made of


@dataclass(frozen=True)
class PatchSteps:
    """The [CLS] query over a picture's patches, step by step. Position 0 is [CLS], then the patches row-major."""

    image: np.ndarray  # (H, W, 3) uint8
    patch: int  # pixels per patch side
    grid: tuple[int, int]  # (rows, cols) of patches
    pixels: np.ndarray  # (P, patch * patch * 3) each patch's pixels, scaled to -1..1
    W_embed: np.ndarray  # (patch * patch * 3, d_model) the patch embedding (a linear map, seeded)
    X: np.ndarray  # (1 + P, d_model) [CLS], then pixels W_embed + a position embedding per patch
    W_key: np.ndarray  # (d_model, d_k)
    q: np.ndarray  # (d_k,) the [CLS] query
    K: np.ndarray  # (1 + P, d_k) = X W_key
    scores: np.ndarray  # (1 + P,) q · k_j
    weights: np.ndarray  # (1 + P,) softmax(scores / sqrt(d_k)): the [CLS] row
    labels: list[str]  # "[CLS]", "r0c0", ...
    query: str  # one of QUERIES

    @property
    def patch_positions(self) -> list[int]:
        return list(range(1, 1 + self.grid[0] * self.grid[1]))


def patch_attention(image: np.ndarray, patch: int, d_model: int, d_k: int, seed: int,
                    query: str = QUERIES[0]) -> PatchSteps:
    """Cut ``image`` (a scene of the shapes task: model.training.shapes) into patch x patch patches, embed each
    (pixels scaled to -1..1, as ViT's processor does, times a seeded W_embed, plus a small seeded position
    embedding), put a [CLS] token first, and let the [CLS] query read them with attention(). "looks for red": q is
    the key a plain red patch would have (so a key that matches red scores high); "random (untrained)": q is the
    [CLS] token's own X W_query with seeded weights."""
    if query not in QUERIES:
        raise ValueError(f"query must be one of {QUERIES}, got {query!r}")
    img = np.asarray(image, dtype=np.uint8)
    rows, cols = img.shape[0] // patch, img.shape[1] // patch
    pixels = cut_into_patches(img, patch).astype(np.float32) / 127.5 - 1.0  # (P, p*p*3) in -1..1
    n_in = pixels.shape[1]
    W_embed = projection(seed, "W_embed", n_in, d_model)
    positions = seeded_matrix(seed, f"pos:{d_model}", rows * cols, d_model, std=0.1)
    cls = seeded_matrix(seed, f"cls:{d_model}", 1, d_model)
    X = torch.cat([cls, torch.as_tensor(pixels) @ W_embed + positions])  # (1 + P, d_model)
    W_key = projection(seed, "W_key", d_model, d_k)
    K = X @ W_key  # (1 + P, d_k)
    if query == QUERIES[0]:
        red = torch.tensor(COLOURS[TARGET], dtype=torch.float32) / 127.5 - 1.0
        k_red = red.repeat(patch * patch) @ W_embed @ W_key  # the key of a plain red patch, no position
        q = k_red / k_red.norm() * CLS_SHARPNESS * math.sqrt(d_k)
    else:
        q = (cls @ projection(seed, "W_query", d_model, d_k))[0]
    rec = run_attention(q[None, :], K, K).numpy()  # one query row; the values do not matter here
    return PatchSteps(image=img, patch=patch, grid=(rows, cols), pixels=pixels, W_embed=W_embed.numpy(),
                      X=X.numpy(), W_key=W_key.numpy(), q=q.numpy(), K=K.numpy(), scores=rec.scores[0],
                      weights=rec.weights[0], labels=patch_labels(rows, cols), query=query)
