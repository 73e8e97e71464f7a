"""Which atlas database the page reads, and its queries, cached per (file, its modification stamp, question).

The file is opened read-only for each question not in the cache and closed right after, so the page never holds
DuckDB's lock while it waits: ``python -m model.atlas`` can continue a build of the same file between two reruns.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from model import settings
from model.atlas import queries
from model.atlas.example import DATABASE as EXAMPLE
from model.atlas.identity import AtlasError
from model.atlas.locate import list_databases, resolve_database
from model.atlas.store import open_read_only, query_seconds, with_deadline
from model.safe.paths import PathPolicy

from ..models import ROOT, path_policy

QUERY_CACHE_ENTRIES = 512


def atlas_dir() -> Path:
    """$INSPECTOR_ATLASES (default atlases/ in the checkout): the folder whose databases the page lists."""
    return Path(settings.path("INSPECTOR_ATLASES") or ROOT / "atlases")


def atlas_policy() -> PathPolicy:
    """The inspector's path policy with the atlas folder and the shipped example's among its roots when it is
    restricted (public mode: only databases under the roots open)."""
    base = path_policy()
    if not base.restricted:
        return base
    try:
        extra = (atlas_dir().expanduser().resolve(strict=False), EXAMPLE.parent.resolve(strict=False))
    except (OSError, RuntimeError, ValueError):
        extra = ()
    return PathPolicy(roots=base.roots + extra, public=base.public)


def offered() -> list[Path]:
    """The databases of the atlas folder, then the shipped example (examples/atlas/example-dates.duckdb, built by
    ``python -m model.atlas.example``): a first visit opens on it."""
    found = list_databases(atlas_dir(), atlas_policy())
    shipped = [p for p in list_databases(EXAMPLE.parent, atlas_policy()) if p.name == EXAMPLE.name]
    return found + [p for p in shipped if p.resolve() not in {f.resolve() for f in found}]


def open_typed(text: str) -> Path:
    """A typed path -> the database's real path (AtlasError with a message otherwise)."""
    return resolve_database(text, atlas_policy())


def stamp(path: Path) -> tuple[int, int, int]:
    """Changes when the file (or its write-ahead log) changes: a finished batch reaches the page at its next rerun."""
    out = []
    for p in (path, Path(f"{path}.wal")):
        try:
            st_ = os.stat(p)
            out += [st_.st_mtime_ns, st_.st_size]
        except OSError:
            out += [0, 0]
    return out[0], out[1], out[2] + out[3]


_run = threading.local()  # the page run's open connection (this script thread's)


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """One read-only connection for a whole page run, opened at the first question the cache does not answer and
    closed when the run ends (an open takes 20-80 ms here; the lock is never held between runs)."""
    _run.path, _run.con = str(path), None
    try:
        yield
    finally:
        con, _run.con, _run.path = getattr(_run, "con", None), None, None
        if con is not None:
            con.close()


def _connection(path: str):
    """(connection, whether the caller closes it): the run's own when ``reading(path)`` is active."""
    if getattr(_run, "path", None) == path:
        if _run.con is None:
            _run.con = open_read_only(path)
        return _run.con, False
    return open_read_only(path), True


@st.cache_data(max_entries=QUERY_CACHE_ENTRIES, show_spinner=False)
def _ask(path: str, file_stamp: tuple, question: str, args: tuple, filters: tuple, options: tuple):
    con, close = _connection(path)
    try:
        kwargs = dict(options)
        if filters:
            kwargs["filters"] = [queries.Filter(*f) for f in filters]
        # a deadline, and DuckDB's errors as messages (a database's views can make any question slow or refused)
        return with_deadline(con, lambda: getattr(queries, question)(con, *args, **kwargs), query_seconds(),
                             f"the question “{question}”")
    finally:
        if close:
            con.close()


def ask(path: Path, question: str, *args, filters=(), **options):
    """``model.atlas.queries.<question>(con, *args, filters=..., **options)``, cached per file stamp; AtlasError
    when the file cannot be read, when DuckDB refuses the question, or when it runs past $ATLAS_QUERY_SECONDS."""
    if question not in queries.__all__:
        raise ValueError(f"not a query: {question}")
    key = tuple((f.column, f.op, f.value) for f in filters)
    return _ask(str(path), stamp(path), question, tuple(args), key, tuple(sorted(options.items())))


__all__ = ["AtlasError", "ask", "atlas_dir", "atlas_policy", "offered", "open_typed", "reading", "stamp"]
