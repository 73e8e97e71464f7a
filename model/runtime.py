"""Process-wide CPU settings for serving traced calls, applied once at start-up (app.py, benchmarks)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading

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
# One thread suits the small calls that sessions run side by side (threads of concurrent calls spin against each
# other), but a forward of a GPT-2-small-sized model at 512-1024 tokens ran 1.66-1.91x faster on two threads than on
# one here. A forward of more operations than this (about 2 x parameters x tokens) gets more threads.
BIG_CALL_FLOPS = 1e10
_big_call = threading.RLock()


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


def big_call_threads() -> int:
    """Threads for a big forward: $ATTN_TORCH_THREADS_BIG, default every core (1 turns the switch off)."""
    try:
        return max(1, int(os.environ.get("ATTN_TORCH_THREADS_BIG", "") or (os.cpu_count() or 1)))
    except ValueError:
        return 1


@contextlib.contextmanager
def threads_for(flops: float, device: torch.device | str = "cpu"):
    """Run the block with more torch threads when it is a big CPU forward (``flops`` >= BIG_CALL_FLOPS).

    torch's thread count is process-wide: big calls take turns (one at a time, so none sees the count change under
    it), and a small call that runs meanwhile in another session shares the cores with it, as it would anyway. The
    count is restored afterwards."""
    n = big_call_threads()
    if flops < BIG_CALL_FLOPS or torch.device(device).type != "cpu" or n <= 1:
        yield
        return
    with _big_call:
        before = torch.get_num_threads()
        if n > before:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if n > before:
                torch.set_num_threads(before)
