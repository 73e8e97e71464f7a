"""Overviews: attention weights pooled over square blocks into small uint8 maps (255 = weight 1), and thumbnails
pooled further, so that a long input's heads fit on screen without holding T^2 floats.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

OVERVIEW_MAX = 512  # overviews are pooled to at most this many rows and columns
THUMBNAIL_MAX = 64  # thumbnails (head grid, model overview) at most this many


def overview_factor(tq: int, tk: int, size: int = OVERVIEW_MAX) -> int:
    """The pooling factor of an overview: square blocks of factor x factor cells, at most ``size`` per axis; a
    power of two, so that the blocks of coarser and finer views nest."""
    n = max(tq, tk, 1)
    return 1 << max(0, math.ceil(math.log2(n / size))) if n > size else 1


def quantize_weights(x: torch.Tensor) -> np.ndarray:
    """Weights in [0, 1] -> uint8 in 1/255 steps (255 = 1), rounded half to even: round(clamp(x, 0, 1) * 255),
    in three passes over x (the first pass quantises every block of every head)."""
    return x.float().mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()


def max_by_blocks(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """The max over consecutive blocks of ``factor`` along ``dim`` (the last block may be shorter)."""
    dim = dim % x.dim()
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


def pool_weights(weights: torch.Tensor, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, R, Tk) weights -> (max, mean) pooled over factor x factor blocks, (H, ceil(R/f), ceil(Tk/f)) uint8
    (255 = weight 1). Max-pooling keeps a single strong key visible; the mean shows where mass lies."""
    w = weights.float()
    if factor == 1:
        q = quantize_weights(w)
        return q, q
    mean = F.avg_pool2d(w[None], factor, factor, ceil_mode=True)[0]
    return quantize_weights(block_max(w, factor)), quantize_weights(mean)


def pool_max(weights: torch.Tensor, factor: int) -> np.ndarray:
    """(H, R, Tk) weights -> the max-pooled overview of ``pool_weights`` alone."""
    return quantize_weights(block_max(weights, factor))


def block_max(values: torch.Tensor, factor: int) -> torch.Tensor:
    """(..., R, C) -> (..., ceil(R/f), ceil(C/f)): the largest value of each f x f block (edge blocks partial),
    as max_pool2d(ceil_mode=True) gives it, by rows then columns (about 10x faster on the CPU: no indices)."""
    values = values.float()
    if factor == 1:
        return values
    return max_by_blocks(max_by_blocks(values, factor, -2), factor, -1)


def thumbnails(overview: np.ndarray, size: int = THUMBNAIL_MAX) -> np.ndarray:
    """(H, r, c) uint8 max overview -> (H, <= size, <= size) uint8, max-pooled further (adaptive)."""
    H, r, c = overview.shape
    if r <= size and c <= size:
        return overview
    t = torch.from_numpy(np.ascontiguousarray(overview)).float()[None]
    return F.adaptive_max_pool2d(t, (min(r, size), min(c, size)))[0].to(torch.uint8).numpy()


__all__ = ["OVERVIEW_MAX", "THUMBNAIL_MAX", "block_max", "max_by_blocks", "overview_factor", "pool_max",
           "pool_weights", "quantize_weights", "thumbnails"]
