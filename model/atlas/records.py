"""A corpus file's records, streamed: lines read in capped chunks (a line over the cap is skipped through, never
held), bytes decoded, every bad record a counted skip (``SKIP_REASONS``); a file that cannot be read mid-way is a
``CorpusError`` that names it. Checking a file before it is read, its hash and its shards are model.atlas.corpus.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_LINE_BYTES = 1 << 20  # a line (or a Parquet text) longer than this is skipped without being held
CHUNK_BYTES = 1 << 20  # files are read in chunks of this size
PARQUET_BATCH = 64  # Parquet rows read at a time

SKIP_REASONS = {
    "empty": "empty, or only whitespace",
    "over byte limit": "a line longer than the byte limit (skipped without reading it whole)",
    "undecodable": "bytes that are not UTF-8 (or a JSON string with a lone surrogate)",
    "NUL bytes": "the text holds NUL bytes",
    "not JSON": "a line that is not a JSON object",
    "missing field": "the field is missing, or null",
    "not text": "the field holds a number, a list or an object, not a string",
    "bad CSV row": "a row the CSV reader could not parse",
    "over token limit": "more tokens than --max-tokens (with --too-long skip)",
    "model error": "the model refused the text",
}
BOM = codecs.BOM_UTF8


class CorpusError(ValueError):
    """A corpus that cannot be read at all; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Record:
    """One record of a corpus: its text, or why it is skipped."""

    example_id: int  # index in the corpus (0-based line or data row)
    text: str | None  # None when skipped
    skip: str = ""  # a key of SKIP_REASONS, "" when the record is usable
    detail: str = ""

    @classmethod
    def skipped(cls, example_id: int, reason: str, detail: str = "") -> Record:
        return cls(example_id, None, reason, detail)


@dataclass(frozen=True)
class Shard:
    """A part of a corpus that one reader can read alone: bytes [start, stop) at line starts (.txt, .jsonl), or
    row groups [start, stop) (.parquet); ``first_id`` is the example_id of its first record."""

    start: int
    stop: int | None
    first_id: int


# ---- lines -----------------------------------------------------------------------------------------------------

def open_binary(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise CorpusError(f"{path}: cannot be opened ({e.strerror})") from None


def capped_lines(path: Path, start: int, stop: int | None, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(byte offset, the line's bytes without its line break, or None when longer than ``max_bytes``) of every line
    that starts in [start, stop). A line over the cap is skipped through, never held."""
    with open_binary(path) as f:
        f.seek(start)
        offset = start  # file offset of ``chunk``
        line_start = start
        buf = bytearray()
        over = False
        while True:
            try:
                chunk = f.read(CHUNK_BYTES)
            except OSError as e:
                raise CorpusError(f"{path}: cannot be read ({e.strerror})") from None
            if not chunk:
                if buf or over:
                    yield line_start, None if over else bytes(buf)
                return
            i = 0
            while True:
                j = chunk.find(b"\n", i)
                if j < 0:
                    if not over:
                        buf += chunk[i:]
                        if len(buf) > max_bytes:
                            over = True
                            buf = bytearray()
                    break
                if not over:
                    buf += chunk[i:j]
                    over = len(buf) > max_bytes
                yield line_start, None if over else bytes(buf)
                buf = bytearray()
                over = False
                line_start = offset + j + 1
                i = j + 1
                if stop is not None and line_start >= stop:
                    return
            offset += len(chunk)


def record_from_bytes(example_id: int, raw: bytes | None, max_bytes: int) -> Record:
    """A line's bytes -> a Record holding its text (not yet checked for emptiness), or a skip."""
    if raw is None:
        return Record.skipped(example_id, "over byte limit", f"over {max_bytes:,} bytes")
    if example_id == 0 and raw.startswith(BOM):
        raw = raw[len(BOM):]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if b"\x00" in raw:
        return Record.skipped(example_id, "NUL bytes", f"{raw.count(0):,} NUL bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Record.skipped(example_id, "undecodable", f"byte 0x{raw[e.start]:02x} at byte {e.start:,}")
    return Record(example_id, text)


def _checked_text(example_id: int, text: str) -> Record:
    """The checks every text passes, whatever the format."""
    if "\x00" in text:
        return Record.skipped(example_id, "NUL bytes")
    if not text.strip():
        return Record.skipped(example_id, "empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape, or undecodable CSV bytes (surrogateescape)
        return Record.skipped(example_id, "undecodable", "not valid Unicode text")
    return Record(example_id, text)


def txt_record(example_id: int, raw: bytes | None, max_bytes: int) -> Record:
    rec = record_from_bytes(example_id, raw, max_bytes)
    return rec if rec.skip else _checked_text(example_id, rec.text)


def jsonl_record(field: str):
    def parse(example_id: int, raw: bytes | None, max_bytes: int) -> Record:
        rec = record_from_bytes(example_id, raw, max_bytes)
        if rec.skip:
            return rec
        if not rec.text.strip():
            return Record.skipped(example_id, "empty")
        value, problem = _json_field(rec.text, field)
        if problem:
            return Record.skipped(example_id, *problem)
        return _checked_text(example_id, value)
    return parse


def _json_field(line: str, field: str) -> tuple[str | None, tuple[str, str] | None]:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, or an integer over Python's digit limit
        return None, ("not JSON", str(e)[:120])
    if not isinstance(obj, dict):
        return None, ("not JSON", f"a JSON {type(obj).__name__}, not an object")
    value = obj.get(field)
    if value is None:
        return None, ("missing field", f"no {field!r}")
    if not isinstance(value, str):
        return None, ("not text", f"{field!r} is a {type(value).__name__}")
    return value, None


# ---- CSV ---------------------------------------------------------------------------------------------------------

def csv_rows(path: Path, max_bytes: int, delimiter: str, flags: dict):
    """csv.reader over the file's decoded lines; a line over the cap reaches the reader as an empty line and sets
    ``flags["over"]`` (the row it falls in is skipped)."""
    csv.field_size_limit(max(max_bytes, 1024))  # a quoted field that never closes stops here

    def text_lines():
        for n, (_, raw) in enumerate(capped_lines(path, 0, None, max_bytes)):
            if raw is None:
                flags["over"] = True
                yield "\n"
                continue
            if n == 0 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            yield raw.decode("utf-8", "surrogateescape") + "\n"  # undecodable bytes are caught per field
    return csv.reader(text_lines(), delimiter=delimiter)


def csv_records(path: Path, field: str, max_bytes: int, delimiter: str) -> Iterator[Record]:
    flags = {"over": False}
    reader = csv_rows(path, max_bytes, delimiter, flags)
    header = next(reader)
    column = header.index(field)
    example_id = 0
    while True:
        flags["over"] = False
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield Record.skipped(example_id, "bad CSV row", str(e)[:120])
            example_id += 1
            continue
        if flags["over"]:
            yield Record.skipped(example_id, "over byte limit", f"a line over {max_bytes:,} bytes")
        elif not row:
            yield Record.skipped(example_id, "empty")
        elif column >= len(row):
            yield Record.skipped(example_id, "missing field", f"{len(row)} columns")
        else:
            yield _checked_text(example_id, row[column])
        example_id += 1


# ---- Parquet -----------------------------------------------------------------------------------------------------

def open_parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise CorpusError(f"{path}: not a readable Parquet file ({str(e)[:160]})") from None


def parquet_records(path: Path, field: str, max_bytes: int, shard: Shard | None) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.compute as pc

    pf = open_parquet(path)
    groups = list(range(pf.metadata.num_row_groups)) if shard is None else list(range(shard.start, shard.stop))
    example_id = 0 if shard is None else shard.first_id
    try:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=[field], row_groups=groups):
            col = batch.column(0)
            sizes = pc.binary_length(col).to_pylist()
            for i, n in enumerate(sizes):
                if n is None:
                    yield Record.skipped(example_id, "missing field", "null")
                elif n > max_bytes:
                    yield Record.skipped(example_id, "over byte limit", f"{n:,} bytes")
                else:
                    yield _checked_text(example_id, col[i].as_py())
                example_id += 1
    except (pa.ArrowException, OSError) as e:
        raise CorpusError(f"{path}: cannot be read at row {example_id:,} ({str(e)[:160]})") from None


__all__ = ["CHUNK_BYTES", "CorpusError", "MAX_LINE_BYTES", "PARQUET_BATCH", "Record", "SKIP_REASONS", "Shard"]
