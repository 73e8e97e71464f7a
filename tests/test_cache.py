"""The byte-bounded cache the app shares between sessions."""

import threading
import time

import pytest

from ui.cache import SharedLRU


def test_drops_the_least_recently_used_while_over_budget_and_keeps_the_newest():
    cache = SharedLRU(100, size_of=len)
    for key, size in (("a", 40), ("b", 40)):
        cache.get(key, lambda s=size: "x" * s)
    cache.get("a", lambda: pytest.fail("a is cached"))  # a is now the most recent
    cache.get("c", lambda: "x" * 40)  # 120 > 100: b (least recent) goes
    assert "a" in cache and "c" in cache and "b" not in cache and cache.nbytes == 80 + 2  # the keys count too
    cache.get("huge", lambda: "x" * 500)  # bigger than the budget alone: kept, everything else dropped
    assert len(cache) == 1 and "huge" in cache


def test_a_key_counts_against_the_budget():
    """Issue 32: keys held a full copy of a knockout mask and were not counted. A key holding a long text counts."""
    cache = SharedLRU(1000, size_of=len)
    cache.get(("small", "x"), lambda: "v" * 10)
    cache.get(("text", "t" * 2000), lambda: "v")  # the key alone is over the budget: everything older goes
    assert len(cache) == 1 and cache.nbytes > 2000


def test_computes_once_for_concurrent_askers_and_caches_no_failure():
    cache, calls = SharedLRU(10**6, size_of=lambda v: 1), []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return "value"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["value"] * 5 and len(calls) == 1

    def boom():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cache.get("bad", boom)
    assert "bad" not in cache and cache.get("bad", lambda: "fine") == "fine"


def test_make_room_drops_before_a_big_computation():
    cache = SharedLRU(100, size_of=len)
    cache.get("a", lambda: "x" * 30)
    cache.get("b", lambda: "x" * 30)
    cache.make_room(50)  # 60 + 50 > 100: the least recent goes
    assert "a" not in cache and "b" in cache
    cache.make_room(1000)  # more than the budget: everything goes
    assert len(cache) == 0
