"""The atlas database's schema, written once: every table's columns and types, the DuckDB DDL and the Arrow schemas
(the per-batch function's rows, the Parquet files of the Ray engine) all come from here.

Every key starts with ``run_id``: one model on one corpus with one set of options is one run, and a file may hold
many runs side by side, never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ..core.rowstats import STAT_DEFINITIONS

SCHEMA_VERSION = 1
STATS = tuple(STAT_DEFINITIONS)  # one column of head_stats per statistic, in the Statistics view's order

# DuckDB type -> Arrow type, for the columns used here
_ARROW = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(), "SMALLINT": pa.int16(),
          "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "FLOAT[]": pa.list_(pa.float32()),
          "TIMESTAMP": pa.timestamp("us")}


@dataclass(frozen=True)
class Table:
    """One table: (column, DuckDB type) pairs and the primary key."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def ddl(self) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}, PRIMARY KEY ({', '.join(self.key)}))"

    def arrow_schema(self, with_run_id: bool = True) -> pa.Schema:
        return pa.schema([(c, _ARROW[t]) for c, t in self.columns if with_run_id or c != "run_id"])


RUNS = Table("runs", (
    ("run_id", "VARCHAR"),  # hash of what makes the rows: model content, corpus content, the options below
    ("model_path", "VARCHAR"),  # as given
    ("model_hash", "VARCHAR"),  # SHA-256 over the model directory's files
    ("model_family", "VARCHAR"),
    ("model_arch", "VARCHAR"),  # "encoder-decoder" | "decoder-only" | "encoder-only"
    ("n_heads", "INTEGER"),
    ("corpus_path", "VARCHAR"),
    ("corpus_hash", "VARCHAR"),  # SHA-256 of the corpus file
    ("corpus_format", "VARCHAR"),  # "txt" | "jsonl" | "csv" | "parquet"
    ("field", "VARCHAR"),  # the column or key read (NULL for .txt)
    ("options", "VARCHAR"),  # JSON: the options that change rows (in run_id) and the last session's others
    ("n_records", "BIGINT"),  # records in the corpus (lines or rows; for CSV an estimate from the line count)
    ("n_examples", "BIGINT"),  # examples stored
    ("n_cut", "BIGINT"),  # of which cut to the token limit
    ("n_skipped", "BIGINT"),
    ("skipped", "VARCHAR"),  # JSON {reason: count}
    ("status", "VARCHAR"),  # "running" | "interrupted" | "failed" | "finished"
    ("message", "VARCHAR"),  # why it stopped, when it did not finish
    ("started", "TIMESTAMP"),
    ("updated", "TIMESTAMP"),
    ("finished", "TIMESTAMP"),
), ("run_id",))

RUN_HEADS = Table("run_heads", (
    ("run_id", "VARCHAR"), ("name", "VARCHAR"), ("stack", "VARCHAR"), ("sublayer", "VARCHAR"), ("kind", "VARCHAR"),
    ("layer", "SMALLINT"), ("head", "SMALLINT"),
), ("run_id", "name", "head"))

EXAMPLES = Table("examples", (
    ("run_id", "VARCHAR"),
    ("example_id", "BIGINT"),  # the record's index in the corpus: 0-based line (.txt, .jsonl) or row (.csv, .parquet)
    ("text", "VARCHAR"),  # what the model read (cut to the token limit when ``cut``)
    ("n_tokens", "INTEGER"),  # tokens of the text as the model reads it, special tokens included
    ("n_target_tokens", "INTEGER"),  # encoder-decoder: decoder input tokens ([BOS] + generated); else 0
    ("output_text", "VARCHAR"),  # encoder-decoder: the greedy output; decoder-only / encoder-only: ""
    ("cut", "BOOLEAN"),  # the text was longer than the token limit and was cut there
), ("run_id", "example_id"))

HEAD_STATS = Table("head_stats", (
    ("run_id", "VARCHAR"), ("example_id", "BIGINT"), ("name", "VARCHAR"), ("layer", "SMALLINT"), ("head", "SMALLINT"),
    *((s, "DOUBLE") for s in STATS),  # NULL where a statistic is undefined (induction without a repeat...)
    ("sink_key", "INTEGER"),  # the key position with the most weight
), ("run_id", "example_id", "name", "head"))

QK_VECTORS = Table("qk_vectors", (
    ("run_id", "VARCHAR"), ("example_id", "BIGINT"), ("name", "VARCHAR"), ("head", "SMALLINT"),
    ("role", "VARCHAR"),  # "q" (a query row's vector) or "k" (a key's vector, the key/value head this head reads)
    ("position", "INTEGER"),  # the token's position on its axis
    ("token", "VARCHAR"),  # the token's label
    ("vector", "FLOAT[]"),  # (d_k,) after RoPE / QK-norm, as the scores used it
), ("run_id", "example_id", "name", "head", "role", "position"))

SKIPS = Table("skips", (
    ("run_id", "VARCHAR"), ("example_id", "BIGINT"),
    ("reason", "VARCHAR"),  # one of records.SKIP_REASONS
    ("detail", "VARCHAR"),
), ("run_id", "example_id"))

META = "CREATE TABLE IF NOT EXISTS atlas_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
TABLES = (RUNS, RUN_HEADS, EXAMPLES, HEAD_STATS, QK_VECTORS, SKIPS)
ROW_TABLES = (EXAMPLES, HEAD_STATS, QK_VECTORS, SKIPS)  # what the per-batch function produces

# The Ray engine's Parquet files: one file schema for every row table, ``part`` says which table a row belongs to
# (the other tables' columns are null there).
PART = "part"


def union_schema() -> pa.Schema:
    fields: dict[str, pa.DataType] = {PART: pa.string()}
    for table in ROW_TABLES:
        for f in table.arrow_schema():
            if fields.setdefault(f.name, f.type) != f.type:
                raise AssertionError(f"column {f.name} has two types in the atlas schema")
    return pa.schema(list(fields.items()))


__all__ = ["EXAMPLES", "HEAD_STATS", "META", "PART", "QK_VECTORS", "ROW_TABLES", "RUNS", "RUN_HEADS",
           "SCHEMA_VERSION", "SKIPS", "STATS", "TABLES", "Table", "union_schema"]
