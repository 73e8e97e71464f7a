"""Traced calls for the app: decoded once, captured in full when that fits the budget and lazily otherwise, cached
so that changing kind, layer, head, stage or view never runs the model again."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import streamlit as st
import torch

from model import CaptureBudgetError, RunResult
from model.capture import overview_of
from model.checkpoint import stamp as checkpoint_stamp
from model.trace import trace_nbytes

from .cache import SharedLRU
from .models import load_pipeline

MAX_GENERATED = 128  # default cap on generated tokens (a model that never ends stops here)
MIN_RECORD_CAP = 512 * 2**20  # one complete record may hold up to max(this, the budget), even when lazy


def capture_budget() -> int:
    """INSPECTOR_MAX_CAPTURE_MB (default 256): the most a full capture may hold; above it the call is captured
    lazily (each attention's inputs; complete records computed on demand, an LRU of them under the budget)."""
    try:
        mb = float(os.environ.get("INSPECTOR_MAX_CAPTURE_MB", "256"))
    except ValueError:
        mb = 256.0
    return int(max(mb, 0.0) * 2**20)


def cache_budget() -> int:
    """INSPECTOR_TRACE_CACHE_MB (default 512): what the traced calls kept for every session may hold together
    (each counted with its logits, its records or lazy inputs, and the ceiling of its lazy record cache); the least
    recently used go first."""
    try:
        mb = float(os.environ.get("INSPECTOR_TRACE_CACHE_MB", "512"))
    except ValueError:
        mb = 512.0
    return int(max(mb, 0.0) * 2**20)


@dataclass
class Traced:
    """One traced call as the app shows it. Shared by every session that asks for the same call (read-only)."""

    result: RunResult
    device: str
    lazy: bool  # records computed on demand from saved inputs (bitwise what a full capture holds)
    estimate_bytes: int  # what a full capture would hold
    seconds: float  # decoding + tracing time
    _numpy: dict = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def has(self, key) -> bool:
        with self._lock:
            return key in self._memo

    def memo(self, key, compute):
        """Something computed once from this call's numbers (a statistics table, a ranking), shared by sessions."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = compute()
        with self._lock:
            return self._memo.setdefault(key, value)

    @property
    def trace(self):
        return self.result.trace

    @property
    def names(self) -> list[str]:
        return list(self.result.trace)

    def record(self, name: str):
        """The record as NumPy (a lazy trace computes it on demand). Cached per name for full traces; for lazy ones
        the trace's own LRU bounds memory."""
        if self.lazy:
            return self.result.trace[name].numpy()
        with self._lock:
            rec = self._numpy.get(name)
        if rec is None:
            rec = self.result.trace[name].numpy()
            with self._lock:
                self._numpy[name] = rec
        return rec

    def overview(self, name: str) -> np.ndarray:
        """(H, <= 64, <= 64) uint8 max-pooled weights (from the first pass when lazy)."""
        return overview_of(self.result.trace, name)

    def nbytes(self) -> int:
        """What this call holds: logits, full records (or a lazy trace's inputs plus its record cache's ceiling)."""
        logits = self.result.logits
        held = 0 if logits is None else logits.untyped_storage().nbytes()
        trace = self.result.trace
        if self.lazy:
            return held + trace.inputs_nbytes() + (trace.max_bytes or 0)
        return held + trace_nbytes(trace)

    def probs_at(self, position: int) -> np.ndarray | None:
        """(V,) this call's next-token distribution at one position."""
        row = self.result.probs_at(position)
        return None if row is None else row.numpy()


def ablation_key(ablations: dict | None) -> tuple:
    """A hashable form of {name: {head: mode}} for cache keys."""
    if not ablations:
        return ()
    return tuple(sorted((n, tuple(sorted((int(h), m) for h, m in heads.items()))) for n, heads in ablations.items()
                        if heads))


def _ablations(key: tuple) -> dict | None:
    return {n: dict(heads) for n, heads in key} or None


_TRACED: SharedLRU[Traced] = SharedLRU(cache_budget(), Traced.nbytes)


def clear_cache() -> None:
    _TRACED.clear()


def traced_call(path: str, device: str, stamp: float, source: str, target: str | None, max_new: int,
                ablations: tuple = (), decoder_ids: tuple[int, ...] | None = None,
                make_room: Callable[[int], None] = lambda nbytes: None) -> Traced:
    """Decode (unless a target is typed, the model is encoder-only, or ``decoder_ids`` are given: another model's
    output, traced through this one so that two checkpoints share their axes), then trace the call.
    ``make_room(bytes)`` is called before tracing with what the trace will hold (the whole cache for a lazy one)."""
    pipe = load_pipeline(path, device, stamp)
    abl = _ablations(ablations)
    started = time.perf_counter()
    generated, stopped = None, ""
    if decoder_ids is not None and pipe.kind != "encoder-only":
        generated = list(decoder_ids)
    elif pipe.kind == "encoder-decoder" and target is None:
        generated, stopped = _decode(pipe, source, max_new, abl)
    elif pipe.kind == "decoder-only" and max_new > 0:
        generated, stopped = _decode(pipe, source, max_new, abl)
    S, T = pipe.lengths(source, target, generated)
    estimate = pipe.capture_bytes(S, T)
    budget = capture_budget()
    largest = max(pipe.capture_bytes(S, T, capture={n}) for n in pipe.info.record_names)
    if largest > max(budget, MIN_RECORD_CAP):
        raise CaptureBudgetError(
            f"One attention of this {max(S, T)}-token input would hold {largest / 2**20:.0f} MiB, over the "
            f"{max(budget, MIN_RECORD_CAP) / 2**20:.0f} MiB a single record may take: shorten the text.")
    lazy = estimate > budget
    make_room(cache_budget() if lazy else estimate)
    result = pipe.run(source, target, generated_ids=generated, lazy=lazy, ablations=abl,
                      max_lazy_cache_bytes=budget)
    if generated is not None:
        result = dataclasses.replace(result, stopped=stopped)
    return Traced(result=result, device=str(pipe.device), lazy=lazy, estimate_bytes=estimate,
                  seconds=time.perf_counter() - started)


def _decode(pipe, source: str, max_new: int, ablations: dict | None):
    if ablations:  # decoding under an ablation: the model's own output without those heads
        res = pipe.run(source, max_new_tokens=max_new, capture=False, ablations=ablations)
        return list(res.target.ids), res.stopped
    return pipe.decode(source, max_new)


def trace(path: str, device: str, source: str, target: str | None, max_new: int, ablations: dict | None = None,
          decoder_ids: tuple[int, ...] | None = None) -> tuple[Traced, list[str]]:
    """The cached traced call; on an accelerator's out-of-memory error, the same on the CPU. -> (traced, notes)."""
    notes = []
    stamp = checkpoint_stamp(path)
    key = ablation_key(ablations)

    _TRACED.max_bytes = cache_budget()  # read each time: a deployment may change it without a restart

    def cached(on: str) -> Traced:
        def compute() -> Traced:
            with st.spinner("Running the model…"):
                return traced_call(path, on, stamp, source, target, max_new, key, decoder_ids, _TRACED.make_room)
        return _TRACED.get((path, on, stamp, source, target, max_new, key, decoder_ids), compute)

    try:
        return cached(device), notes
    except torch.OutOfMemoryError:
        if device == "cpu":
            raise
        notes.append(f"Out of memory on device '{device}': this trace was computed on the CPU instead.")
        return cached("cpu"), notes
