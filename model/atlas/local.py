"""The local engine: the corpus streamed in batches through the per-batch function on this machine's device, each
batch committed to the database before the next one runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..api import Pipeline
from .batch import AtlasOptions, BatchRows, atlas_batch
from .corpus import Corpus
from .records import Record
from .store import AtlasStore, RunState

MAX_SKIPS_PER_BATCH = 10_000  # a corpus of garbage still commits (and shows progress) every this many skips


def batches(records: Iterable[Record], size: int, done: frozenset[int] = frozenset()) -> Iterator[list[Record]]:
    """Records not yet stored, in batches of ``size`` usable records (skipped records ride along, uncounted)."""
    batch: list[Record] = []
    usable = 0
    for r in records:
        if r.example_id in done:
            continue
        batch.append(r)
        usable += not r.skip
        if usable >= size or len(batch) >= MAX_SKIPS_PER_BATCH:
            yield batch
            batch, usable = [], 0
    if batch:
        yield batch


def run_local(pipe: Pipeline, corpus: Corpus, store: AtlasStore, state: RunState, options: AtlasOptions,
              batch_size: int, on_batch: Callable[[BatchRows], None] | None = None) -> None:
    """Every record of ``corpus`` that ``state`` does not hold yet, batch by batch, committed as it goes."""
    for batch in batches(corpus.records(), batch_size, state.done):
        rows = atlas_batch(pipe, batch, options)
        store.write(state.run_id, rows)
        if on_batch is not None:
            on_batch(rows)


__all__ = ["MAX_SKIPS_PER_BATCH", "batches", "run_local"]
