"""Process-wide CPU settings for serving traced calls, applied once at start-up (app.py, benchmarks)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# A trace allocates several (H, T, T) matrices per attention. By default glibc serves blocks over 128 KiB with
# mmap and unmaps them on free, so every capture page-faults its memory in afresh: measured here, that made a
# capture 1.8x (T = 128) to 2.6x (T = 512) the fast path; keeping freed blocks in the heap brings it to
# 1.1x and 1.35x (see benchmarks/bench_model.py). Freed memory up to TRIM is kept for the next call.
MMAP_THRESHOLD = 256 * 2**20
TRIM_THRESHOLD = 512 * 2**20


def configure_cpu(threads: int | None = None) -> dict:
    """torch intra-op threads (default: $ATTN_TORCH_THREADS or 1) and, on glibc, malloc thresholds that
    keep trace-sized buffers in the heap. Returns what was set."""
    n = threads if threads is not None else int(os.environ.get("ATTN_TORCH_THREADS", "1"))
    n = max(1, n)
    torch.set_num_threads(n)
    tuned = False
    name = ctypes.util.find_library("c")
    if name and "libc.so" in name:  # glibc (Linux); elsewhere the platform's allocator is left alone
        try:
            libc = ctypes.CDLL(name)
            tuned = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):
            tuned = False
    return {"torch_threads": n, "malloc_tuned": tuned}
