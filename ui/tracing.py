"""Traced calls for the app: a cache around the one traced call (model.call.run), so that changing kind, layer,
head, stage or view never runs the model again. Captured in full when that fits the budget and lazily otherwise."""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import streamlit as st
import torch

from model import CaptureBudget, RunResult, settings
from model.call import run
from model.core.interventions import Cells
from model.own.checkpoint import stamp as checkpoint_stamp

from .cache import SharedLRU, value_bytes
from .models import load_pipeline

MAX_GENERATED = 128  # default cap on generated tokens (a model that never ends stops here)
MIN_RECORD_CAP = 512 * 2**20  # one complete record may hold up to max(this, the budget), even when lazy
_SERIAL = itertools.count(1)  # each traced call's number in this process (the canvas's scope: maps of one call)


def max_capture_bytes() -> int:
    """INSPECTOR_MAX_CAPTURE_MB (default 256): the most a full capture may hold; above it the call is captured
    lazily (each attention's inputs, row statistics and overviews; records, windows and rows on demand)."""
    return settings.megabytes("INSPECTOR_MAX_CAPTURE_MB")


def trace_cache_bytes() -> int:
    """INSPECTOR_TRACE_CACHE_MB (default 512): what the traced calls kept for every session may hold together
    (each counted with its logits, its records or lazy inputs, the ceiling of its lazy record cache, and what was
    computed from it: memos and NumPy copies); the least recently used go first."""
    return settings.megabytes("INSPECTOR_TRACE_CACHE_MB")


def capture_budget() -> CaptureBudget:
    full = max_capture_bytes()
    return CaptureBudget(full_bytes=full, record_bytes=max(full, MIN_RECORD_CAP), cache_bytes=full)


@dataclass
class Traced:
    """One traced call as the app shows it, and what the views computed from it. Shared by every session that asks
    for the same call (read-only); everything it holds counts against the trace cache's budget."""

    result: RunResult
    device: str
    serial: int = field(default_factory=lambda: next(_SERIAL))
    _numpy: dict = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)
    _recent: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def lazy(self) -> bool:
        return self.result.mode == "lazy"

    @property
    def estimate_bytes(self) -> int:
        return self.result.estimate_bytes

    @property
    def seconds(self) -> float:
        return self.result.seconds

    def has(self, key) -> bool:
        with self._lock:
            return key in self._memo

    def has_recent(self, key) -> bool:
        with self._lock:
            return key in self._recent.get(key[0], ())

    def recent(self, key, compute, keep: int):
        """Like ``memo``, for values asked for often and soon stale (a map's detail per view): only the ``keep``
        most recent of ``key[0]``'s kind are kept."""
        with self._lock:
            bucket = self._recent.setdefault(key[0], OrderedDict())
            if key in bucket:
                bucket.move_to_end(key)
                return bucket[key]
        value = compute()
        with self._lock:
            bucket[key] = value
            while len(bucket) > keep:
                bucket.popitem(last=False)
        return value

    def memo(self, key, compute):
        """Something computed once from this call's numbers (a statistics table, a ranking), shared by sessions
        (its bytes count against the cache budget)."""
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
        """The complete record as NumPy (a lazy trace computes it on demand, and refuses one over its budget with
        RecordTooLarge). Cached per name for full traces; for lazy ones the trace's own LRU bounds memory."""
        if self.lazy:
            return self.result.trace[name].numpy()
        with self._lock:
            rec = self._numpy.get(name)
        if rec is None:
            rec = self.result.trace[name].numpy()
            with self._lock:
                self._numpy[name] = rec
        return rec

    def record_fits(self, name: str) -> bool:
        """Whether the complete record of ``name`` may be computed (a lazy trace refuses one over its budget)."""
        trace = self.result.trace
        if not self.lazy or trace.max_record_bytes is None:
            return True
        return trace.inputs_of(name).record_bytes() <= trace.max_record_bytes

    def overview(self, name: str) -> np.ndarray:
        """(H, <= 64, <= 64) uint8 max-pooled thumbnails (from the first pass when lazy)."""
        return self.result.trace.thumbnails(name)

    def nbytes(self) -> int:
        """What this call holds: logits, records (or a lazy trace's inputs plus its record cache's ceiling), and
        what was computed from it."""
        logits = self.result.logits
        held = 0 if logits is None else logits.nbytes()
        trace = self.result.trace
        if trace is not None:
            held += trace.nbytes()
        with self._lock:
            numpy_copies = sum(value_bytes(r) for r in self._numpy.values())
            memos = sum(value_bytes(k) + value_bytes(v) for k, v in self._memo.items()) + \
                sum(value_bytes(k) + value_bytes(v) for bucket in self._recent.values() for k, v in bucket.items())
        return held + numpy_copies + memos

    def probs_at(self, position: int) -> np.ndarray | None:
        """(V,) this call's next-token distribution at one position (the last few asked for are kept: a row may
        run the output head again)."""
        if self.result.logits is None:
            return None
        return self.recent(("probs_at", int(position)), lambda: self.result.probs_at(position).numpy(), keep=4)


_TRACED: SharedLRU[Traced] = SharedLRU(trace_cache_bytes(), Traced.nbytes)


def clear_cache() -> None:
    _TRACED.clear()


def intervention_key(spec: dict | None) -> tuple:
    """A small hashable form of {name: {head: value}} (value: a mode, or knockout cells) for cache keys: cells and
    arrays by a hash of their contents, never a copy (a key column of 32,768 tokens is 1 GiB as a bool array)."""
    if not spec:
        return ()

    def freeze(v):
        if isinstance(v, Cells):
            return ("cells", v.digest())
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if isinstance(v, np.ndarray):
            return ("array", v.shape, str(v.dtype), hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:32])
        if isinstance(v, (list, tuple)):
            return ("cells", Cells.of(v).digest())
        return v
    return tuple(sorted((n, tuple(sorted((int(h), freeze(m)) for h, m in heads.items()))) for n, heads in spec.items()
                        if heads))


def run_call(path: str, device: str, stamp: float, source: str, target: str | None, max_new: int,
                ablations: dict | None = None, knockouts: dict | None = None,
                decoder_ids: tuple[int, ...] | None = None) -> Traced:
    """The one traced call (model.call.run) on the cached model, with the app's budget. The decoder's input:
    ``decoder_ids`` when given (another model's output, traced through this one so that two checkpoints share their
    axes), else a typed target, else greedy decoding (encoder-decoder: up to ``max_new``; decoder-only: ``max_new``
    more tokens, 0 = none)."""
    pipe = load_pipeline(path, device, stamp)
    generated = None if decoder_ids is None or pipe.arch == "encoder-only" else list(decoder_ids)
    arch = pipe.arch
    result = run(pipe, source, target if arch == "encoder-decoder" else None,
                 max_new_tokens=(max_new if arch != "encoder-only" and (arch == "encoder-decoder" or max_new > 0)
                                 else None),
                 generated_ids=generated, budget=capture_budget(), ablations=ablations or None,
                 knockouts=knockouts or None,
                 statistics=False)  # the first map needs none: the Statistics view asks for them
    return Traced(result=result, device=str(pipe.device))


def trace(path: str, device: str, source: str, target: str | None, max_new: int, ablations: dict | None = None,
          decoder_ids: tuple[int, ...] | None = None, knockouts: dict | None = None) -> tuple[Traced, list[str]]:
    """The cached traced call; on an accelerator's out-of-memory error, the same on the CPU. -> (traced, notes)."""
    notes = []
    stamp = checkpoint_stamp(path)
    _TRACED.max_bytes = trace_cache_bytes()  # read each time: a deployment may change it without a restart

    def cached(on: str) -> Traced:
        key = (path, on, stamp, source, target, max_new, intervention_key(ablations), intervention_key(knockouts),
               decoder_ids)

        def compute() -> Traced:
            _TRACED.make_room(max_capture_bytes())
            with st.spinner("Running the model…"):
                return run_call(path, on, stamp, source, target, max_new, ablations, knockouts, decoder_ids)
        return _TRACED.get(key, compute)

    try:
        return cached(device), notes
    except torch.OutOfMemoryError:
        if device == "cpu":
            raise
        notes.append(f"Out of memory on device '{device}': this trace was computed on the CPU instead.")
        return cached("cpu"), notes


def trace_image(path: str, device: str, picture_key: str, image, ablations: dict | None = None,
                knockouts: dict | None = None) -> Traced:
    """The cached traced call of an image model on ``image`` (a PIL image; ``picture_key`` names it in the cache:
    a sample's seed or an upload's digest), with the app's budget, ablations and knockouts."""
    stamp = checkpoint_stamp(path)
    _TRACED.max_bytes = trace_cache_bytes()
    key = (path, device, stamp, "image", picture_key, intervention_key(ablations), intervention_key(knockouts))

    def compute() -> Traced:
        _TRACED.make_room(max_capture_bytes())
        with st.spinner("Running the model…"):
            pipe = load_pipeline(path, device, stamp)
            result = run(pipe, image, budget=capture_budget(), ablations=ablations or None,
                         knockouts=knockouts or None)
            return Traced(result=result, device=str(pipe.device))
    return _TRACED.get(key, compute)
