"""A cache of values shared by every session, bounded by bytes rather than by entries: a traced call at T = 1024
on a 12 x 12 model holds hundreds of MiB, one at T = 20 on the demo model a few hundred KiB."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SharedLRU(Generic[V]):
    """``get(key, compute)``: the cached value, or ``compute()`` once (sessions asking for the same key meanwhile
    wait for it; an exception is raised to each asker and nothing is cached). After each insertion the least
    recently used values are dropped while the sizes (``size_of``) add up to more than ``max_bytes``; the newest
    value always stays, whatever its size. Values are shared: treat them as read-only."""

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]):
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:  # one computation per key; later askers find the value below
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key][0]
            try:
                value = compute()
                size = int(self._size_of(value))
                with self._lock:
                    self._items[key] = (value, size)
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
        total = sum(size for _, size in self._items.values()) + incoming
        while len(self._items) > keep and total > self.max_bytes:
            _, (_, size) = self._items.popitem(last=False)
            total -= size

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
