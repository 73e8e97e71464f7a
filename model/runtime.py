"""Where model computations run: the devices (``resolve_device``), process-wide CPU settings, and worker lanes with a
fixed torch thread count.

torch's intra-op thread count belongs to the OS thread that sets it (OpenMP), and changing it while other calls
run races with them. So it is never changed during a call: every forward and every recomputation of a trace runs
on a worker thread of one of two lanes, whose count was set once when the worker started:

- the small lane: several workers of one thread each (small calls that sessions run side by side: the threads of
  concurrent calls would spin against each other);
- the big lane: workers that use every core, for forwards of more than BIG_CALL_FLOPS (a GPT-2-small-sized forward
  at 512-1024 tokens ran 1.66-1.91x faster on two threads than on one here).

A lazy trace recomputes its records on the lane its call ran on, so a record computed later runs with the same
thread count as the first pass (same summation order, the same bits). A computation already on a worker runs
inline (no worker waits for another).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import torch

from . import settings

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# A trace allocates several (H, T, T) matrices per attention. By default glibc serves blocks over 128 KiB with
# mmap and unmaps them on free, so every capture page-faults its memory in afresh: measured here, that made a
# capture 1.8x (T = 128) to 2.6x (T = 512) the fast path; keeping freed blocks in the heap brings it to
# 1.1x and 1.35x (see benchmarks/bench_model.py). Freed memory up to TRIM is kept for the next call.
MMAP_THRESHOLD = 256 * 2**20
TRIM_THRESHOLD = 512 * 2**20
BIG_CALL_FLOPS = 1e10  # a forward of more operations than this (about 2 x parameters x tokens) takes the big lane

T = TypeVar("T")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda, then mps, then cpu; an explicit device that is not available is a ValueError."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda or mps")
    return dev


def available_devices() -> list[str]:
    """Device names that work on this machine, "cpu" always included."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def small_threads() -> int:
    """$ATTN_TORCH_THREADS, default 1: torch threads of each small-lane worker."""
    return settings.count("ATTN_TORCH_THREADS")


def big_threads() -> int:
    """$ATTN_TORCH_THREADS_BIG, default every core: torch threads of each big-lane worker."""
    return settings.count("ATTN_TORCH_THREADS_BIG", os.cpu_count() or 1)


def tune_malloc() -> bool:
    """On glibc, malloc thresholds that keep trace-sized buffers in the heap. Returns whether they were set."""
    name = ctypes.util.find_library("c")
    if not (name and "libc.so" in name):  # glibc (Linux); elsewhere the platform's allocator is left alone
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def release_freed_memory() -> bool:
    """On glibc, hand the heap's freed pages back to the system (malloc_trim): after loading a transformers model,
    whose reading and checks free about 300 MB (GPT-2 small) that the allocator would otherwise keep (TRIM_THRESHOLD)
    in an arena the calls' worker threads never reuse. Returns whether it ran."""
    name = ctypes.util.find_library("c")
    if not (name and "libc.so" in name):
        return False
    try:
        ctypes.CDLL(name).malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def configure_cpu(threads: int | None = None) -> dict:
    """Once per process at start-up: the calling thread's torch threads (default $ATTN_TORCH_THREADS or 1), the
    allocator, and both lanes started (so that their threads exist before any call). Returns what was set."""
    n = max(1, threads if threads is not None else small_threads())
    lanes()  # workers first: a new OS thread starts with the count last set anywhere
    torch.set_num_threads(n)
    return {"torch_threads": n, "malloc_tuned": tune_malloc(), "small_lane": LANES["small"].describe(),
            "big_lane": LANES["big"].describe()}


_worker = threading.local()


class Lane:
    """Worker threads, each with a torch thread count set once when it starts (and, with ``nice``, a lower CPU
    priority: Linux gives each thread its own niceness). ``run(fn)`` runs ``fn`` on one of them and returns its result
    (or raises its exception) in the calling thread; ``submit(fn)`` queues it and returns at once."""

    def __init__(self, name: str, workers: int, threads: int, nice: int = 0):
        self.name, self.workers, self.threads, self.nice = name, workers, threads, nice
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        started = []
        for i in range(workers):
            ready = threading.Event()
            threading.Thread(target=self._serve, args=(ready,), name=f"attn-{name}-{i}", daemon=True).start()
            started.append(ready)
        for ready in started:
            ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        # torch initialises a thread's OpenMP count lazily, at its first parallel call, from the count set last
        # anywhere: trigger that first, then set this thread's own, once, for its life
        torch.get_num_threads()
        torch.set_num_threads(self.threads)
        if self.nice:
            try:  # this thread only (its native id); a platform without per-thread priority runs it as it is
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except (OSError, AttributeError):
                pass
        _worker.lane = self
        ready.set()
        while True:
            fn, future = self._tasks.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as e:  # handed to the caller, whatever it is
                    future.set_exception(e)
            del fn, future  # the result (logits, a trace) belongs to the caller: keep nothing until the next task

    def run(self, fn: Callable[[], T]) -> T:
        if getattr(_worker, "lane", None) is not None:  # already on a worker: run here (no worker waits on another)
            return fn()
        return self.submit(fn).result()

    def submit(self, fn: Callable[[], T]) -> Future:
        """Queue ``fn`` for the next free worker -> its Future."""
        future: Future = Future()
        self._tasks.put((fn, future))
        return future

    def describe(self) -> str:
        return f"{self.workers} worker(s) x {self.threads} torch thread(s)"


LANES: dict[str, Lane] = {}
_lanes_lock = threading.Lock()


def lanes() -> dict[str, Lane]:
    """The two lanes, started on first use ($ATTN_WORKERS small workers, default 4; $ATTN_BIG_WORKERS big ones,
    default 2, so that two sessions' big calls do not wait for each other). The calling thread's count is left as
    it was."""
    with _lanes_lock:
        if not LANES:
            before = torch.get_num_threads()
            LANES["big"] = Lane("big", settings.count("ATTN_BIG_WORKERS"), big_threads())
            LANES["small"] = Lane("small", settings.count("ATTN_WORKERS"), small_threads())
            torch.set_num_threads(before)  # new threads inherit the count set last: this thread's
    return LANES


def lane_for(flops: float, device: torch.device | str = "cpu") -> Lane:
    """The big lane for a CPU forward of at least BIG_CALL_FLOPS operations, else the small one."""
    all_lanes = lanes()
    big = flops >= BIG_CALL_FLOPS and torch.device(device).type == "cpu" and all_lanes["big"].threads > 1
    return all_lanes["big" if big else "small"]


def on_worker() -> Lane | None:
    """The lane the calling thread serves, or None (a session's or the main thread)."""
    return getattr(_worker, "lane", None)


__all__ = ["BIG_CALL_FLOPS", "LANES", "Lane", "available_devices", "big_threads", "configure_cpu", "lane_for", "lanes",
           "on_worker", "release_freed_memory", "resolve_device", "small_threads", "tune_malloc"]
