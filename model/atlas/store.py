"""The atlas database file (DuckDB): opened by one writer that commits every batch whole, or read-only for the app.

A run's rows are written in bulk (Arrow tables scanned by DuckDB), each batch in one transaction together with the
run's counts, with Ctrl-C held back until the commit is done: an interrupted build keeps every finished batch, and
the next build of the same run starts from what is stored (the finished records are never written twice: the
primary keys would refuse them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from .. import settings
from .batch import BatchRows
from .identity import AtlasError
from .schema import META, PART, ROW_TABLES, RUN_HEADS, RUNS, SCHEMA_VERSION, TABLES

MAGIC_OFFSET, MAGIC = 8, b"DUCK"
WRITER_MEMORY_MB = 256  # $ATLAS_DB_MEMORY_MB: DuckDB's memory while writing (its cache of written pages stays small)
READ_CONFIG = {"enable_external_access": False, "autoload_known_extensions": False,
               "autoinstall_known_extensions": False, "lock_configuration": True}  # + threads and memory, read_config()
BUILDER_KEY = "builder:"  # atlas_meta key prefix: the process building a run (pid, host, its start), + run_id
STALE_SECONDS = 15 * 60  # a "running" run built on another host whose heartbeat (runs.updated) is older is stopped


@dataclass(frozen=True)
class RunInfo:
    """What the runs table says about a run when it is created."""

    run_id: str
    model_path: str
    model_hash: str
    model_family: str
    model_arch: str
    n_heads: int
    corpus_path: str
    corpus_hash: str
    corpus_format: str
    field: str | None
    options: str  # JSON
    n_records: int


@dataclass(frozen=True)
class RunState:
    """Where a run stands when a build (re)starts."""

    run_id: str
    done: frozenset[int]  # example_ids already stored (as examples or as skips)
    status: str
    resumed: bool  # the run existed before this build


def writer_memory_mb() -> int:
    """$ATLAS_DB_MEMORY_MB (default 256): what DuckDB may hold while a build writes. Without a limit its buffer pool
    keeps every page written (80% of the machine's memory at most), so a long build's memory grew with the file; the
    primary key's index (about 21 bytes a head_stats row, 31 MB for 1.44 M rows) must fit in it."""
    return settings.megabytes("ATLAS_DB_MEMORY_MB", minimum=64) // 2**20


def read_config() -> dict:
    """DuckDB's settings for the app's read-only connections: no file or network access from SQL, no extensions,
    $ATLAS_READ_THREADS threads and $ATLAS_READ_MEMORY_MB of memory, settings locked (a query cannot change them)."""
    memory_mb = settings.megabytes("ATLAS_READ_MEMORY_MB", minimum=64) // 2**20
    return {**READ_CONFIG, "threads": settings.count("ATLAS_READ_THREADS"), "memory_limit": f"{memory_mb}MB"}


def query_seconds() -> float | None:
    """$ATLAS_QUERY_SECONDS (default 10): the deadline of one question the app asks a database."""
    return settings.seconds("ATLAS_QUERY_SECONDS")


def with_deadline(con: duckdb.DuckDBPyConnection, fn, seconds: float | None, what: str = "the query"):
    """``fn()`` (queries on ``con``), interrupted after ``seconds`` -> its result. AtlasError with a message when it
    was stopped, or for any error DuckDB raised (a permission refused by the configuration, a table of another
    shape...): the page shows a message, never DuckDB's traceback."""
    lock, done = threading.Lock(), threading.Event()

    def stop() -> None:
        with lock:  # only the question still running: never the next one on this connection
            if not done.is_set():
                con.interrupt()

    timer = None
    if seconds is not None:
        timer = threading.Timer(seconds, stop)
        timer.daemon = True
        timer.start()
    try:
        return fn()
    except duckdb.InterruptException:
        raise AtlasError(f"{what} ran longer than {seconds:g} s and was stopped (ATLAS_QUERY_SECONDS): a very large or "
                         "hostile database?") from None
    except duckdb.Error as e:
        raise AtlasError(f"{what} failed: {type(e).__name__}: {str(e)[:300]}") from None
    finally:
        with lock:
            done.set()
        if timer is not None:
            timer.cancel()


def _process_start(pid: int) -> str | None:
    """When a process started (Linux: /proc/<pid>/stat, clock ticks since boot), so that a reused pid is not taken for
    the builder; None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def builder_identity() -> dict:
    """This process, as a run's builder: pid, host and start."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid())}


def builder_alive(builder: dict | None, updated: datetime | None, at: datetime | None = None) -> bool:
    """Whether a run's builder still runs: on this host, its process (the same pid started at the same time); on
    another host (or an older file without the builder's record), a heartbeat (``updated``, each finished batch)
    within STALE_SECONDS."""
    pid = builder.get("pid") if isinstance(builder, dict) else None
    if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 and builder.get("host") == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OSError):
            pass  # exists, another user's
        start = builder.get("start")
        return start is None or _process_start(pid) in (None, start)
    if updated is None:
        return False
    return ((at or now()) - updated).total_seconds() < STALE_SECONDS


def shown_status(status: str, builder: dict | None, updated: datetime | None) -> str:
    """A run's status as the page says it: a "running" run whose builder is gone (killed, the machine restarted) is
    "stopped" (resumable: the same build continues it)."""
    if status == "running" and not builder_alive(builder, updated):
        return "stopped"
    return status


def now() -> datetime:
    """UTC, without a zone (the TIMESTAMP columns hold UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _check_file(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(MAGIC_OFFSET + len(MAGIC))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        raise AtlasError(f"{path}: cannot be opened ({type(e).__name__})") from None
    if head and head[MAGIC_OFFSET:] != MAGIC:
        raise AtlasError(f"{path}: not a DuckDB database (refusing to write into it)")


def _locked(path: Path, e: Exception) -> AtlasError:
    text = str(e).lower()
    if "different configuration" in text:  # this process holds it the other way (read-only / writing)
        return AtlasError(f"{path}: being written (or read) by another session of this server; try again when "
                          "that ends")
    if "lock" in text:
        return AtlasError(f"{path}: open in another process (an atlas build still running, or the app reading "
                          "it?); try again when that ends")
    return AtlasError(f"{path}: not a readable DuckDB database ({str(e)[:200]})")


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Ctrl-C (SIGINT) is held until the block ends, then raised: a batch is committed whole or not at all. Only the
    main thread receives signals; elsewhere (the app's script thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class AtlasStore:
    """An atlas database opened for writing (DuckDB lets one process write a file at a time)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        _check_file(self.path)
        try:
            self.con = duckdb.connect(str(self.path), config={"memory_limit": f"{writer_memory_mb()}MB"})
        except duckdb.Error as e:
            raise _locked(self.path, e) from None
        try:
            self._schema()
        except BaseException:
            self.con.close()
            raise

    def _schema(self) -> None:
        tables = {r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        if tables and "atlas_meta" not in tables:
            raise AtlasError(f"{self.path}: a DuckDB database, but not an atlas (tables: "
                             f"{', '.join(sorted(tables)[:10])}); choose another file")
        if "atlas_meta" in tables:
            row = self.con.execute("SELECT value FROM atlas_meta WHERE key = 'schema_version'").fetchone()
            if row is None or row[0] != str(SCHEMA_VERSION):
                raise AtlasError(f"{self.path}: an atlas of schema version {row[0] if row else '?'}; this version "
                                 f"writes version {SCHEMA_VERSION}: choose another file")
            return
        with self.transaction():
            self.con.execute(META)
            for t in TABLES:
                self.con.execute(t.ddl())
            self.con.execute("INSERT INTO atlas_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction, committed whole (Ctrl-C held until then) or rolled back."""
        with held_interrupts():
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> AtlasStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- runs -----------------------------------------------------------------------------------------------------
    def start(self, info: RunInfo, heads: Sequence[dict]) -> RunState:
        """Create the run (and its heads), or find it: the example_ids it already holds."""
        row = self.con.execute("SELECT status FROM runs WHERE run_id = ?", [info.run_id]).fetchone()
        with self.transaction():
            self.con.execute("INSERT OR REPLACE INTO atlas_meta VALUES (?, ?)",
                             [BUILDER_KEY + info.run_id, json.dumps(builder_identity())])
            if row is None:
                values = {**asdict(info), "n_examples": 0, "n_cut": 0, "n_skipped": 0, "skipped": "{}",
                          "status": "running", "message": "", "started": now(), "updated": now(), "finished": None}
                cols = RUNS.column_names
                self.con.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 [values[c] for c in cols])
                self._insert(RUN_HEADS.name, info.run_id, pa.Table.from_pylist(
                    list(heads), schema=RUN_HEADS.arrow_schema(with_run_id=False)))
            else:
                self.con.execute("UPDATE runs SET status = 'running', message = '', options = ?, n_records = ?, "
                                 "updated = ? WHERE run_id = ?", [info.options, info.n_records, now(), info.run_id])
        done = self.con.execute("SELECT example_id FROM examples WHERE run_id = $r UNION ALL "
                                "SELECT example_id FROM skips WHERE run_id = $r", {"r": info.run_id}).fetchnumpy()
        return RunState(run_id=info.run_id, done=frozenset(done["example_id"].tolist()),
                        status="new" if row is None else row[0], resumed=row is not None)

    def write(self, run_id: str, rows: BatchRows) -> None:
        """A batch's rows and the run's counts, in one transaction."""
        with self.transaction():
            for name, table in rows.tables().items():
                if table.num_rows:
                    self._insert(name, run_id, table)
            self._update_counts(run_id)

    def _insert(self, name: str, run_id: str, table: pa.Table, ignore_existing: bool = False) -> None:
        cols = [c for c in table.column_names if c != "run_id"]
        view = f"_atlas_rows_{name}"
        self.con.register(view, table)
        try:
            verb = "INSERT OR IGNORE" if ignore_existing else "INSERT"
            self.con.execute(f"{verb} INTO {name} (run_id, {', '.join(cols)}) SELECT ?, {', '.join(cols)} FROM {view}",
                             [run_id])
        finally:
            self.con.unregister(view)

    def _update_counts(self, run_id: str) -> None:
        self.con.execute(
            "UPDATE runs SET "
            "n_examples = (SELECT count(*) FROM examples WHERE run_id = $r), "
            "n_cut = (SELECT count(*) FROM examples WHERE run_id = $r AND cut), "
            "n_skipped = (SELECT count(*) FROM skips WHERE run_id = $r), "
            "skipped = (SELECT coalesce(json_group_object(reason, n)::VARCHAR, '{}') FROM "
            "           (SELECT reason, count(*) AS n FROM skips WHERE run_id = $r GROUP BY reason ORDER BY reason)), "
            "updated = $t WHERE run_id = $r", {"r": run_id, "t": now()})

    def ingest_parts(self, run_id: str, files: Sequence[Path]) -> tuple[int, list[str]]:
        """Read Parquet files of the union schema (the Ray engine's output) into the tables, one transaction per
        file; rows already stored are left as they are (never written twice). -> (records added, files that could
        not be read, with why)."""
        added, bad = 0, []
        for file in files:
            try:
                before = self._done_count(run_id)
                with self.transaction():
                    for table in ROW_TABLES:
                        cols = [c for c in table.column_names if c != "run_id"]
                        self.con.execute(
                            f"INSERT OR IGNORE INTO {table.name} (run_id, {', '.join(cols)}) "
                            f"SELECT ?, {', '.join(cols)} FROM read_parquet(?) WHERE {PART} = ? AND run_id = ?",
                            [run_id, str(file), table.name, run_id])
                    self._update_counts(run_id)
                added += self._done_count(run_id) - before
            except duckdb.Error as e:
                bad.append(f"{file.name}: {str(e)[:160]}")
        return added, bad

    def _done_count(self, run_id: str) -> int:
        return self.con.execute("SELECT (SELECT count(*) FROM examples WHERE run_id = $r) + "
                                "(SELECT count(*) FROM skips WHERE run_id = $r)", {"r": run_id}).fetchone()[0]

    def finish(self, run_id: str, status: str, message: str = "") -> dict:
        """Mark how a build of the run ended ("finished", "interrupted", "failed") -> the run's row."""
        with self.transaction():
            self._update_counts(run_id)
            self.con.execute("UPDATE runs SET status = ?, message = ?, updated = ?, finished = ? WHERE run_id = ?",
                             [status, message[:500], now(), now() if status == "finished" else None, run_id])
        return self.run(run_id)

    def run(self, run_id: str) -> dict:
        cur = self.con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        out = dict(zip(names, row, strict=True))
        out["skipped"] = json.loads(out["skipped"] or "{}")
        return out


def open_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """An atlas database for reading only: no file or network access from SQL, no extensions, bounded threads and
    memory, settings locked (``read_config``). AtlasError for a file that is not a readable atlas, or one another
    process is writing."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(MAGIC_OFFSET + len(MAGIC))
    except (OSError, ValueError) as e:
        raise AtlasError(f"{path}: cannot be opened ({type(e).__name__})") from None
    if head[MAGIC_OFFSET:] != MAGIC:
        raise AtlasError(f"{path}: not a DuckDB database")
    try:
        con = duckdb.connect(str(path), read_only=True, config=read_config())
    except duckdb.Error as e:
        raise _locked(path, e) from None
    try:
        rows = with_deadline(con, lambda: con.execute(
            "SELECT value FROM atlas_meta WHERE key = 'schema_version'").fetchall(), query_seconds(),
            "reading its schema version")
        row = rows[0] if rows else None
    except AtlasError as e:
        con.close()
        raise AtlasError(f"{path}: a DuckDB database, but not an atlas ({e})") from None
    if row is None or row[0] != str(SCHEMA_VERSION):
        con.close()
        raise AtlasError(f"{path}: an atlas of another schema version ({row[0] if row else '?'})")
    return con


__all__ = ["AtlasStore", "BUILDER_KEY", "READ_CONFIG", "RunInfo", "RunState", "STALE_SECONDS", "builder_alive",
           "builder_identity", "held_interrupts", "now", "open_read_only", "query_seconds", "read_config",
           "shown_status", "with_deadline"]
