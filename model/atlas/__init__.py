"""The corpus atlas: every head's statistics over a user's own dataset, in DuckDB.

- ``corpus`` and ``records``: checking .txt / .jsonl / .csv / .parquet corpora, hostile ones included, and reading
  their records (streamed, capped, skips counted);
- ``batch``: the per-batch function every engine runs (one padded traced call -> the rows of every table);
- ``schema`` and ``store``: the DuckDB file (schema written once, a runs table, a commit per batch, read-only
  opening for the app);
- ``local`` and ``ray_engine``: the engines (this machine, or Ray Data writing Parquet that DuckDB reads);
- ``build`` and ``cli``: ``python -m model.atlas``;
- ``queries``: the Atlas view's SQL (strip, distribution, extremes, filters built from structured parts, vectors).
"""

from .batch import AtlasOptions, BatchRows, QKSample, atlas_batch
from .build import BuildRequest, Progress, build, prepare
from .corpus import Corpus, open_corpus
from .identity import AtlasError
from .records import CorpusError, Record
from .store import AtlasStore, open_read_only

__all__ = ["AtlasError", "AtlasOptions", "AtlasStore", "BatchRows", "BuildRequest", "Corpus", "CorpusError",
           "Progress", "QKSample", "Record", "atlas_batch", "build", "open_corpus", "open_read_only", "prepare"]
