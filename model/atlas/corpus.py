"""A user's corpus, which may be hostile: streamed in capped chunks, every bad record a counted skip, every file that
cannot be read a ``CorpusError`` that names it and says what is wrong.

Formats by extension: ``.txt`` (one example per line), ``.jsonl`` (one JSON object per line, the text under
``field``), ``.csv`` / ``.tsv`` (a header row, the text in column ``field``) and ``.parquet`` (column ``field``).
A record's ``example_id`` is its index in the corpus: the 0-based line of a .txt or .jsonl file, the 0-based data
row of a CSV or Parquet file. Nothing ever holds more than one line (``max_line_bytes``) and one read chunk.
Reading the records (the line reader, decoding, the skips) is model.atlas.records.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .records import (
    CHUNK_BYTES,
    MAX_LINE_BYTES,
    CorpusError,
    Record,
    Shard,
    capped_lines,
    csv_records,
    csv_rows,
    jsonl_record,
    open_binary,
    open_parquet,
    parquet_records,
    record_from_bytes,
    txt_record,
)

SNIFF_BYTES = 64 << 10  # what is read first to tell text from binary
SHARD_BYTES = 8 << 20  # .txt / .jsonl: the corpus is cut into shards of about this size at line starts (Ray)
MAX_CSV_COLUMNS = 10_000
MAX_PARQUET_FOOTER = 64 << 20  # a Parquet footer (its schema) larger than this is refused before it is parsed
SNIFF_RECORDS = 100  # .jsonl: when none of the first this many non-empty lines is a JSON object, the file is not
FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
DEFAULT_FIELD = "text"
MAGIC = ((0, b"PAR1", "a Parquet file"), (0, b"PK\x03\x04", "a zip archive"), (0, b"\x1f\x8b", "gzip-compressed"),
         (8, b"DUCK", "a DuckDB database"), (0, b"SQLite format 3\x00", "an SQLite database"),
         (0, b"\x7fELF", "an executable"), (0, b"%PDF", "a PDF document"), (0, b"\x89PNG", "a PNG image"),
         (0, b"\xff\xfe", "UTF-16 text (convert it to UTF-8)"), (0, b"\xfe\xff", "UTF-16 text (convert it to UTF-8)"))


@dataclass(frozen=True)
class Corpus:
    """A checked corpus file: its format, field, size, content hash and record count; ``records()`` streams it."""

    path: Path
    format: str  # a value of FORMATS
    field: str | None  # None for .txt
    size: int
    sha256: str
    n_records: int  # lines or rows (CSV: an estimate from the line count; a quoted field may span lines)
    shards: tuple[Shard, ...]
    max_line_bytes: int = MAX_LINE_BYTES

    def records(self, shard: Shard | None = None) -> Iterator[Record]:
        """Every record in corpus order (or those of one shard)."""
        if self.format in ("txt", "jsonl"):
            s = shard or Shard(0, None, 0)
            parse = txt_record if self.format == "txt" else jsonl_record(self.field)
            for n, (_, raw) in enumerate(capped_lines(self.path, s.start, s.stop, self.max_line_bytes)):
                yield parse(s.first_id + n, raw, self.max_line_bytes)
        elif self.format in ("csv", "tsv"):
            yield from csv_records(self.path, self.field, self.max_line_bytes, "," if self.format == "csv" else "\t")
        else:
            yield from parquet_records(self.path, self.field, self.max_line_bytes, shard)


def open_corpus(path: str | Path, field: str | None = None, *, max_line_bytes: int = MAX_LINE_BYTES,
                progress: Callable[[int, int], None] | None = None) -> Corpus:
    """Check a corpus file (its kind, its field) and hash it in one streamed pass -> Corpus; CorpusError otherwise.
    ``progress(bytes read, size)`` is called while hashing (a 2 GB file takes seconds)."""
    path = Path(path)
    size = _regular_file_size(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CorpusError(f"{path}: unknown corpus format {path.suffix or '(no extension)'!r}: use .txt (one example "
                          f"per line), .jsonl, .csv, .tsv or .parquet")
    if size == 0:
        raise CorpusError(f"{path}: the file is empty")
    head = _read_head(path)
    if fmt == "txt":
        if field is not None:
            raise CorpusError(f"{path}: --field is for .jsonl, .csv and .parquet corpora; a .txt corpus is one "
                              "example per line")
        _check_text(path, head, fmt)
    elif fmt == "jsonl":
        _check_text(path, head, fmt)
        field = _check_jsonl(path, field, max_line_bytes)
    elif fmt in ("csv", "tsv"):
        _check_text(path, head, fmt)
        field = _check_csv(path, field, max_line_bytes, "," if fmt == "csv" else "\t")
    else:
        field = _check_parquet(path, field, head)
    digest, lines, ends_with_newline, cuts = _hash_and_count(path, size, progress, fmt in ("txt", "jsonl"))
    if fmt == "parquet":
        n_records, shards = _parquet_shards(path)
    else:
        n_records = lines + (0 if ends_with_newline else 1)
        if fmt in ("csv", "tsv"):
            n_records = max(0, n_records - 1)  # the header
            shards = (Shard(0, None, 0),)  # a quoted field may span lines: one reader
        else:
            starts = [(0, 0)] + cuts
            shards = tuple(Shard(b, starts[i + 1][0] if i + 1 < len(starts) else None, first)
                           for i, (b, first) in enumerate(starts))
    return Corpus(path=path, format=fmt, field=field, size=size, sha256=digest, n_records=n_records, shards=shards,
                  max_line_bytes=max_line_bytes)


# ---- the file ----------------------------------------------------------------------------------------------------

def _regular_file_size(path: Path) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except (OSError, ValueError) as e:  # a loop, a name too long, a NUL byte in the name
        raise CorpusError(f"{path}: cannot be opened ({type(e).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CorpusError(f"{path}: a directory, not a corpus file")
    if not stat.S_ISREG(st.st_mode):
        raise CorpusError(f"{path}: not a regular file (a FIFO or a device?)")
    if not os.access(path, os.R_OK):
        raise CorpusError(f"{path}: permission denied")
    return st.st_size


def _read_head(path: Path) -> bytes:
    with open_binary(path) as f:
        return f.read(SNIFF_BYTES)


def _check_text(path: Path, head: bytes, fmt: str) -> None:
    """A text corpus must look like UTF-8 text: not a known binary kind, few NUL or control bytes."""
    for offset, magic, what in MAGIC:
        if head[offset:offset + len(magic)] == magic:
            hint = " (rename it to .parquet)" if magic == b"PAR1" else ""
            raise CorpusError(f"{path}: this is {what}, not a .{fmt} text corpus{hint}")
    if not head:
        return
    nul = head.count(0)
    control = sum(head.count(c) for c in range(32) if c not in (9, 10, 12, 13))
    if nul > max(16, len(head) // 100) or control > max(16, len(head) // 10):
        raise CorpusError(f"{path}: does not look like text ({nul:,} NUL and {control:,} control bytes in the first "
                          f"{len(head):,}): a binary file?")
    text = head.decode("utf-8", "replace")
    bad = text.count("\ufffd") - head.decode("utf-8", "ignore").count("\ufffd")
    if bad > max(16, len(head) // 20):
        raise CorpusError(f"{path}: does not look like UTF-8 text ({bad:,} undecodable bytes in the first "
                          f"{len(head):,}): another encoding, or a binary file?")


def _hash_and_count(path: Path, size: int, progress, cut_shards: bool):
    """One streamed pass: SHA-256, line breaks, whether the file ends with one, and shard cuts at line starts
    every SHARD_BYTES: [(byte offset, lines before it)]."""
    h = hashlib.sha256()
    lines = 0
    last = b""
    cuts: list[tuple[int, int]] = []
    done = 0
    next_cut = SHARD_BYTES
    with open_binary(path) as f:
        while True:
            try:
                chunk = f.read(CHUNK_BYTES)
            except OSError as e:
                raise CorpusError(f"{path}: cannot be read ({e.strerror})") from None
            if not chunk:
                break
            h.update(chunk)
            n = chunk.count(b"\n")
            if cut_shards and done + len(chunk) >= next_cut and n:
                j = chunk.rfind(b"\n")
                if done + j + 1 < size:
                    cuts.append((done + j + 1, lines + n))
                next_cut = done + len(chunk) + SHARD_BYTES
            lines += n
            done += len(chunk)
            last = chunk[-1:]
            if progress is not None:
                progress(done, size)
    return h.hexdigest(), lines, last == b"\n", cuts


# ---- JSON Lines ------------------------------------------------------------------------------------------------

def _check_jsonl(path: Path, field: str | None, max_bytes: int) -> str:
    """The first non-empty lines must be JSON objects, and one of them must hold ``field`` (default "text")."""
    seen_keys: dict[str, None] = {}
    objects = tried = 0
    first_problem = ""
    for n, (_, raw) in enumerate(capped_lines(path, 0, None, max_bytes)):
        rec = record_from_bytes(n, raw, max_bytes)
        if rec.skip or not rec.text.strip():
            continue
        tried += 1
        try:
            obj = json.loads(rec.text)
        except (ValueError, RecursionError) as e:
            obj = None
            first_problem = first_problem or f"line {n + 1}: {str(e)[:80]}"
        if isinstance(obj, dict):
            objects += 1
            seen_keys.update(dict.fromkeys(list(obj)[:50]))
            if (field or DEFAULT_FIELD) in obj:
                return field or DEFAULT_FIELD
        elif obj is not None:
            first_problem = first_problem or f"line {n + 1} is a JSON {type(obj).__name__}"
        if tried >= SNIFF_RECORDS:
            break
    if not objects:
        hint = " (a JSON array? JSON Lines is one object per line)" if first_problem.startswith("line 1") else ""
        raise CorpusError(f"{path}: not JSON Lines: none of the first {tried} non-empty lines is a JSON object "
                          f"({first_problem}){hint}")
    keys = ", ".join(repr(k[:40]) for k in list(seen_keys)[:20])
    if field is None:
        raise CorpusError(f"{path}: no field {DEFAULT_FIELD!r} in the first {objects} records: give --field (keys "
                          f"seen: {keys})")
    raise CorpusError(f"{path}: no record among the first {objects} has the field {field!r} (keys seen: {keys})")


# ---- CSV ---------------------------------------------------------------------------------------------------------

def _check_csv(path: Path, field: str | None, max_bytes: int, delimiter: str) -> str:
    flags = {"over": False}
    reader = csv_rows(path, max_bytes, delimiter, flags)
    try:
        header = next(reader)
    except StopIteration:
        raise CorpusError(f"{path}: no header row") from None
    except csv.Error as e:
        raise CorpusError(f"{path}: the header row cannot be read as CSV ({e})") from None
    if flags["over"]:
        raise CorpusError(f"{path}: the header line is over {max_bytes:,} bytes (a CSV with a huge number of "
                          "columns?)")
    if len(header) > MAX_CSV_COLUMNS:
        raise CorpusError(f"{path}: the header has {len(header):,} columns (at most {MAX_CSV_COLUMNS:,})")
    want = field or DEFAULT_FIELD
    if want not in header:
        cols = ", ".join(repr(c[:40]) for c in header[:20]) + (" ..." if len(header) > 20 else "")
        hint = ""
        if len(header) == 1 and ("\t" in header[0] or ";" in header[0]):
            hint = " (the header holds tabs or semicolons: is it another delimiter?)"
        if field is None:
            raise CorpusError(f"{path}: no column {DEFAULT_FIELD!r}: give --field (columns: {cols}){hint}")
        raise CorpusError(f"{path}: no column {field!r} (columns: {cols}){hint}")
    return want


# ---- Parquet -----------------------------------------------------------------------------------------------------

def _check_parquet(path: Path, field: str | None, head: bytes) -> str:
    import pyarrow as pa

    if head[:4] != b"PAR1":
        kind = next((what for offset, magic, what in MAGIC if head[offset:offset + len(magic)] == magic), None)
        looks = f"this is {kind}" if kind else "it starts like text (a .txt, .jsonl or .csv file?)" if \
            head[:1].isascii() and b"\x00" not in head[:512] else "it does not start with PAR1"
        raise CorpusError(f"{path}: not a Parquet file: {looks}")
    with open_binary(path) as f:  # the footer's length, before pyarrow parses it
        try:
            f.seek(-8, os.SEEK_END)
            tail = f.read(8)
        except OSError:
            tail = b""
    if len(tail) != 8 or tail[4:] != b"PAR1":
        raise CorpusError(f"{path}: not a complete Parquet file (no footer: cut short?)")
    footer = struct.unpack("<I", tail[:4])[0]
    if footer > MAX_PARQUET_FOOTER:
        raise CorpusError(f"{path}: a Parquet schema of {footer / 2**20:,.0f} MiB (at most "
                          f"{MAX_PARQUET_FOOTER / 2**20:.0f} MiB): too many columns?")
    pf = open_parquet(path)
    names = pf.schema_arrow.names
    want = field or DEFAULT_FIELD
    if want not in names:
        cols = ", ".join(repr(c[:40]) for c in names[:20]) + (" ..." if len(names) > 20 else "")
        raise CorpusError(f"{path}: no column {want!r}" + (": give --field" if field is None else "") +
                          f" (columns: {cols})")
    kind = pf.schema_arrow.field(want).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or
            getattr(pa.types, "is_string_view", lambda _: False)(kind)):
        raise CorpusError(f"{path}: column {want!r} holds {kind}, not text")
    return want


def _parquet_shards(path: Path) -> tuple[int, tuple[Shard, ...]]:
    meta = open_parquet(path).metadata
    shards, first = [], 0
    for g in range(meta.num_row_groups):
        shards.append(Shard(g, g + 1, first))
        first += meta.row_group(g).num_rows
    return first, tuple(shards) or (Shard(0, 0, 0),)


def where(fmt: str, example_id: int) -> str:
    """How a message names a record: "line 12" (1-based, .txt / .jsonl) or "row 12" (1-based data row)."""
    return f"line {example_id + 1:,}" if fmt in ("txt", "jsonl") else f"row {example_id + 1:,}"


__all__ = ["Corpus", "DEFAULT_FIELD", "FORMATS", "open_corpus", "where"]
