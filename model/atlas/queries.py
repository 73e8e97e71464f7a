"""The Atlas view's questions, answered by DuckDB over a read-only connection: a statistic summarised per head over
the corpus, one head's distribution, its top and bottom examples, the sampled q / k vectors.

Filters are never SQL typed by a user: each is a (column, operator, value) chosen from fixed lists, checked and
converted here, and its value is bound as a parameter. Column and statistic names come from the schema, never from
the caller's text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from .schema import STATS
from .store import BUILDER_KEY

HOW = ("mean", "median", "percentile")
FILTER_COLUMNS = {"n_tokens": "integer", "n_target_tokens": "integer", "example_id": "integer", "text": "text",
                  "output_text": "text", "cut": "boolean"}
OPERATORS = {"integer": ("=", "≠", "<", "≤", ">", "≥"), "text": ("contains", "does not contain", "starts with", "=",
                                                                  "≠"), "boolean": ("is",)}
_SQL_OPS = {"=": "=", "≠": "<>", "<": "<", "≤": "<=", ">": ">", "≥": ">="}
MAX_FILTER_TEXT = 1_000  # characters of a text filter's value
MAX_INTEGER = 2**62
PREVIEW_CHARS = 300


class FilterError(ValueError):
    """A filter that cannot be applied; the message says which part is wrong."""


@dataclass(frozen=True)
class Filter:
    """One checked condition on the examples table: ``column`` ``op`` ``value`` (value already of the column's
    type)."""

    column: str
    op: str
    value: object

    def __post_init__(self):
        kind = FILTER_COLUMNS.get(self.column)
        if kind is None:
            raise FilterError(f"cannot filter on {self.column!r}: choose one of {', '.join(FILTER_COLUMNS)}")
        if self.op not in OPERATORS[kind]:
            raise FilterError(f"{self.column} takes the operators {', '.join(OPERATORS[kind])}, not {self.op!r}")

    def sql(self, param: str) -> str:
        """The condition on ``e.<column>`` with its value as the named parameter ``$param``."""
        col = f"e.{self.column}"
        if self.op == "contains":
            return f"contains(lower({col}), lower(${param}))"
        if self.op == "does not contain":
            return f"NOT contains(lower({col}), lower(${param}))"
        if self.op == "starts with":
            return f"starts_with({col}, ${param})"
        if self.op == "is":
            return f"{col} = ${param}"
        return f"{col} {_SQL_OPS[self.op]} ${param}"

    def describe(self) -> str:
        return f"{self.column} {self.op} {self.value!r}"


def make_filter(column: str, op: str, value: str) -> Filter:
    """A Filter from what a user typed: the value checked and converted to the column's type (FilterError)."""
    kind = FILTER_COLUMNS.get(column)
    if kind is None:
        raise FilterError(f"cannot filter on {column!r}: choose one of {', '.join(FILTER_COLUMNS)}")
    text = str(value)
    if "\x00" in text:
        raise FilterError("a filter value cannot hold NUL characters")
    if kind == "integer":
        t = text.strip().replace(",", "").replace("_", "")
        try:
            number = float(t) if any(c in t for c in ".eE") else int(t)
        except ValueError:
            raise FilterError(f"{column} {op} ...: {text[:40]!r} is not a number") from None
        if isinstance(number, float) and not math.isfinite(number) or abs(number) > MAX_INTEGER:
            raise FilterError(f"{column} {op} ...: {text[:40]!r} is out of range")
        return Filter(column, op, number)
    if kind == "boolean":
        t = text.strip().lower()
        if t not in ("true", "false", "yes", "no", "1", "0"):
            raise FilterError(f"{column} is ...: choose true or false, not {text[:40]!r}")
        return Filter(column, op, t in ("true", "yes", "1"))
    if len(text) > MAX_FILTER_TEXT:
        raise FilterError(f"{column} {op} ...: at most {MAX_FILTER_TEXT:,} characters ({len(text):,} given)")
    if not text:
        raise FilterError(f"{column} {op} ...: type the text to look for")
    return Filter(column, op, text)


def _example_filter(filters: Sequence[Filter], params: dict, alias: str = "s") -> str:
    """`` AND <alias>.example_id IN (examples matching every filter)``, or "" without filters."""
    if not filters:
        return ""
    conds = []
    for i, f in enumerate(filters):
        if not isinstance(f, Filter):
            raise FilterError("filters must be Filter objects (see make_filter)")
        params[f"f{i}"] = f.value
        conds.append(f.sql(f"f{i}"))
    return (f" AND {alias}.example_id IN (SELECT e.example_id FROM examples e WHERE e.run_id = $run AND "
            + " AND ".join(conds) + ")")


def _stat(stat: str) -> str:
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}: one of {', '.join(STATS)}")
    return stat


def _aggregate(how: str, column: str, params: dict, q: float) -> str:
    if how == "mean":
        return f"avg({column})"
    if how == "median":
        return f"median({column})"
    if how == "percentile":
        if not (isinstance(q, (int, float)) and 0.0 <= float(q) <= 1.0):
            raise ValueError(f"a percentile is between 0 and 1, got {q!r}")
        params["q"] = float(q)
        return f"quantile_cont({column}, $q)"
    raise ValueError(f"how must be one of {HOW}, got {how!r}")


# ---- runs --------------------------------------------------------------------------------------------------------

def runs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every run in the file, newest first, ``skipped`` and ``options`` parsed, with ``builder``: the process that
    builds (or built) it ({pid, host, start}, or None), from which store.shown_status tells a stale "running"."""
    df = con.execute("SELECT r.*, m.value AS builder FROM runs r LEFT JOIN atlas_meta m ON m.key = ? || r.run_id "
                     "ORDER BY r.started DESC", [BUILDER_KEY]).df()
    df["skipped"] = [_json(s, {}) for s in df["skipped"]]
    df["options"] = [_json(s, {}) for s in df["options"]]
    df["builder"] = [_json(s, None) for s in df["builder"]]
    return df


def _json(text, default):
    """A JSON column's value (a file's: anything unreadable is ``default``)."""
    try:
        value = json.loads(text) if isinstance(text, str) and text else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) or default is None else default


def run_heads(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    return con.execute("SELECT name, stack, sublayer, kind, layer, head FROM run_heads WHERE run_id = ? "
                       "ORDER BY stack DESC, layer, sublayer DESC, head", [run_id]).df()


def present_stats(con: duckdb.DuckDBPyConnection, run_id: str, kind: str | None = None) -> list[str]:
    """The statistics with at least one value in a run (or in its attentions of one kind): self-attention-only ones
    are absent from cross-attention, induction from a corpus that never repeats a token."""
    params: dict = {"run": run_id}
    kind_sql = ""
    if kind is not None:
        params["kind"] = kind
        kind_sql = " AND name IN (SELECT name FROM run_heads WHERE run_id = $run AND kind = $kind)"
    row = con.execute("SELECT " + ", ".join(f"count({s})" for s in STATS) + " FROM head_stats WHERE run_id = $run"
                      + kind_sql, params).fetchall()[0]
    return [s for s, n in zip(STATS, row, strict=True) if n]


# ---- the view's questions ------------------------------------------------------------------------------------------

def head_summary(con: duckdb.DuckDBPyConnection, run_id: str, stat: str, how: str = "mean", q: float = 0.5,
                 filters: Sequence[Filter] = (), kind: str | None = None) -> pd.DataFrame:
    """One row per head (of one attention kind, or all): ``value`` = the statistic's mean, median or ``q``-quantile
    over the examples (that pass the filters), ``n`` = how many examples have a value. Columns: name, kind, layer,
    head, value, n."""
    params: dict = {"run": run_id}
    column = f"s.{_stat(stat)}"
    agg = _aggregate(how, column, params, q)
    kind_sql, keys = "", "s.name, s.layer, s.head"
    if kind is not None:
        params["kind"] = kind
        keys = "s.layer, s.head"  # one attention of a kind per layer: integer keys group fastest
        kinds = con.execute("SELECT count(DISTINCT kind) FROM run_heads WHERE run_id = $run", {"run": run_id}
                            ).fetchall()[0][0]
        if kinds > 1:
            kind_sql = " AND s.name IN (SELECT name FROM run_heads WHERE run_id = $run AND kind = $kind)"
    sql = (f"SELECT {keys}, {agg} AS value, count({column}) AS n FROM head_stats s "
           f"WHERE s.run_id = $run{kind_sql}{_example_filter(filters, params)} GROUP BY {keys}")
    on = "a.layer = h.layer AND a.head = h.head" + ("" if kind is not None else " AND a.name = h.name")
    sql = (f"SELECT h.name, h.kind, h.layer, h.head, a.value, coalesce(a.n, 0) AS n FROM run_heads h "
           f"LEFT JOIN ({sql}) a ON {on} WHERE h.run_id = $run"
           + (" AND h.kind = $kind" if kind is not None else "") + " ORDER BY h.layer, h.name, h.head")
    return con.execute(sql, params).df()


def distribution(con: duckdb.DuckDBPyConnection, run_id: str, name: str, head: int, stat: str,
                 filters: Sequence[Filter] = (), bins: int = 40) -> pd.DataFrame:
    """One head's statistic over the examples as a histogram of ``bins`` equal bins between its smallest and largest
    value (numpy.histogram's rule: the last bin is closed). Columns: lo, hi, count."""
    if not 1 <= int(bins) <= 1000:
        raise ValueError("bins must be 1..1000")
    params: dict = {"run": run_id, "name": name, "head": int(head), "bins": int(bins)}
    column = f"s.{_stat(stat)}"
    sql = (f"WITH v AS (SELECT {column} AS x FROM head_stats s WHERE s.run_id = $run AND s.name = $name AND "
           f"s.head = $head AND {column} IS NOT NULL{_example_filter(filters, params)}), "
           "r AS (SELECT min(x) AS lo, max(x) AS hi FROM v) "
           "SELECT CAST(CASE WHEN r.hi = r.lo THEN 0 ELSE least(floor((v.x - r.lo) * ($bins / (r.hi - r.lo))), "
           "$bins - 1) END AS INTEGER) AS bin, count(*) AS count, any_value(r.lo) AS lo, any_value(r.hi) AS hi "
           "FROM v, r GROUP BY bin ORDER BY bin")
    found = con.execute(sql, params).df()
    if found.empty:
        return pd.DataFrame({"lo": pd.Series(dtype=float), "hi": pd.Series(dtype=float),
                             "count": pd.Series(dtype=int)})
    lo, hi = float(found["lo"].iloc[0]), float(found["hi"].iloc[0])
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5  # numpy.histogram's range for one value
    edges = np.linspace(lo, hi, int(bins) + 1)
    counts = np.zeros(int(bins), dtype=np.int64)
    counts[found["bin"].to_numpy()] = found["count"].to_numpy()
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": counts})


def extremes(con: duckdb.DuckDBPyConnection, run_id: str, name: str, head: int, stat: str,
             filters: Sequence[Filter] = (), k: int = 10, largest: bool = True, max_text: int = 8_000
             ) -> pd.DataFrame:
    """The ``k`` examples with the largest (or smallest) value of one head's statistic; ties by example_id.
    Columns: example_id, value, n_tokens, chars, preview (the first characters), text (the whole text, or None when
    longer than ``max_text`` characters), output_text."""
    if not 1 <= int(k) <= 1000:
        raise ValueError("k must be 1..1000")
    params: dict = {"run": run_id, "name": name, "head": int(head), "k": int(k), "max_text": int(max_text),
                    "preview": PREVIEW_CHARS}
    column = f"s.{_stat(stat)}"
    order = "DESC" if largest else "ASC"
    sql = (f"SELECT s.example_id, {column} AS value, e.n_tokens, length(e.text) AS chars, "
           "left(e.text, $preview) AS preview, CASE WHEN length(e.text) <= $max_text THEN e.text END AS text, "
           "left(e.output_text, $preview) AS output_text "
           "FROM head_stats s JOIN examples e ON e.run_id = s.run_id AND e.example_id = s.example_id "
           f"WHERE s.run_id = $run AND s.name = $name AND s.head = $head AND {column} IS NOT NULL"
           f"{_example_filter(filters, params)} ORDER BY value {order}, s.example_id LIMIT $k")
    return con.execute(sql, params).df()


def example(con: duckdb.DuckDBPyConnection, run_id: str, example_id: int) -> dict | None:
    cur = con.execute("SELECT * FROM examples WHERE run_id = ? AND example_id = ?", [run_id, int(example_id)])
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))


def count_examples(con: duckdb.DuckDBPyConnection, run_id: str, filters: Sequence[Filter] = ()) -> int:
    params: dict = {"run": run_id}
    sql = "SELECT count(*) FROM examples s WHERE s.run_id = $run" + _example_filter(filters, params)
    return int(con.execute(sql, params).fetchone()[0])


# ---- queries and keys ----------------------------------------------------------------------------------------------

def qk_heads(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """The (name, head) pairs with sampled vectors, and how many."""
    return con.execute("SELECT name, head, count(*) AS n FROM qk_vectors WHERE run_id = ? GROUP BY name, head "
                       "ORDER BY name, head", [run_id]).df()


@dataclass(frozen=True)
class QKPoints:
    """One head's sampled vectors: ``vectors`` (n, d_k) float32 and, per row, example_id, role ("q" / "k"),
    position and token."""

    vectors: np.ndarray
    meta: pd.DataFrame


def qk_points(con: duckdb.DuckDBPyConnection, run_id: str, name: str, head: int,
              filters: Sequence[Filter] = ()) -> QKPoints:
    params: dict = {"run": run_id, "name": name, "head": int(head)}
    sql = ("SELECT s.example_id, s.role, s.position, s.token, s.vector FROM qk_vectors s WHERE s.run_id = $run AND "
           f"s.name = $name AND s.head = $head{_example_filter(filters, params)} "
           "ORDER BY s.example_id, s.role DESC, s.position")
    table = con.sql(sql, params=params).to_arrow_table()
    n = table.num_rows
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = flat.reshape(n, -1).astype(np.float32) if n else np.zeros((0, 0), np.float32)
    return QKPoints(vectors=vectors, meta=table.drop(["vector"]).to_pandas())


__all__ = ["FILTER_COLUMNS", "Filter", "FilterError", "HOW", "OPERATORS", "QKPoints", "count_examples",
           "distribution", "example", "extremes", "head_summary", "make_filter", "present_stats", "qk_heads",
           "qk_points", "run_heads", "runs"]
