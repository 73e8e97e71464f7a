"""A cache of values shared by every session, bounded by bytes rather than by entries: a traced call at T = 1024
on a 12 x 12 model holds hundreds of MiB, one at T = 20 on the demo model a few hundred KiB."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np
import pandas as pd
import torch

V = TypeVar("V")


def value_bytes(value, _depth: int = 0) -> int:
    """About the bytes a value computed for the app holds: tensors, arrays and DataFrames, inside tuples, lists,
    dicts and dataclasses (a few levels deep; anything else counts as small)."""
    if _depth > 4 or value is None:
        return 0
    if isinstance(value, torch.Tensor):
        return value.untyped_storage().nbytes()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return int(value.memory_usage(deep=False).sum()) if isinstance(value, pd.DataFrame) else \
            int(value.memory_usage(deep=False))
    if isinstance(value, (list, tuple)):
        return sum(value_bytes(v, _depth + 1) for v in value)
    if isinstance(value, dict):
        return sum(value_bytes(v, _depth + 1) for v in value.values())
    if hasattr(value, "__dataclass_fields__"):
        return sum(value_bytes(getattr(value, f, None), _depth + 1) for f in value.__dataclass_fields__)
    return 64


class SharedLRU(Generic[V]):
    """``get(key, compute)``: the cached value, or ``compute()`` once (sessions asking for the same key meanwhile
    wait for it; an exception is raised to each asker and nothing is cached). At each insertion and each hit the
    least recently used values are dropped while their sizes (``size_of``, asked again each time: a value may grow
    as views compute from it, plus the key's own bytes: a key holding an input text counts) add up to more than
    ``max_bytes``; the newest value always stays, whatever its size. Values are shared: treat them as read-only."""

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]):
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                value = self._items[key]
                self._evict()
                return value
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:  # one computation per key; later askers find the value below
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            try:
                value = compute()
                with self._lock:
                    self._items[key] = value
                    self._evict()
                return value
            finally:
                with self._lock:
                    if self._pending.get(key) is pending:
                        del self._pending[key]

    def make_room(self, nbytes: int) -> None:
        """Drop the least recently used values until ``nbytes`` more fit in the budget (a computation about to
        allocate that much calls this first, so that memory peaks near the budget, not at budget + new value)."""
        with self._lock:
            self._evict(nbytes, keep=0)

    def _evict(self, incoming: int = 0, keep: int = 1) -> None:
        sizes = [int(self._size_of(v)) + value_bytes(k) for k, v in self._items.items()]
        total = sum(sizes) + incoming
        i = 0
        while len(self._items) > keep and total > self.max_bytes:
            self._items.popitem(last=False)
            total -= sizes[i]
            i += 1

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(int(self._size_of(v)) + value_bytes(k) for k, v in self._items.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
