"""Reading a checkpoint's files, which may be hostile: every loader opens them through ``checked_path``.

A file is opened by its real path (symlinks resolved), only when that path is a regular file inside the allowed
roots of the path policy (when it is restricted), and read with a byte cap: a symlink out of the roots, a FIFO, a
device or a 300-MB JSON file ends in a ``CheckpointError`` naming the file, before anything is parsed.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .paths import PathPolicy

MAX_JSON_BYTES = 4 * 2**20  # config.json, meta.json, generation_config.json, tokenizer_config.json, index files
MAX_TOKENIZER_BYTES = 64 * 2**20  # tokenizer.json (Gemma's is 33 MB)
MAX_JSON_DEPTH = 64
OUTSIDE_ROOTS = "links outside the allowed checkpoint directories"


def is_file(file: Path) -> bool:
    """True for an existing file (symlinks followed); False for anything unreadable, too long, a loop..."""
    try:
        return Path(file).is_file()
    except (OSError, ValueError):
        return False


def require_directory(path: Path) -> Path:
    """``path`` if it is a directory, else a CheckpointError (an unreadable path is no directory either)."""
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        raise CheckpointError(f"{path}: no such checkpoint directory")
    return path


def checked_path(file: str | Path, policy: PathPolicy | None = None) -> Path:
    """The real path of ``file``: a regular file, inside the policy's roots when it is restricted.

    The one gate every loader passes before opening a file; symlinks are followed first, so a ``config.json`` that
    links to ``/etc/passwd`` is refused in public mode however it is named.
    """
    file = Path(file)
    try:
        real = Path(os.path.realpath(file, strict=True))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: file is missing") from None
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long, a NUL byte
        raise CheckpointError(f"{file}: the path cannot be resolved (a symlink loop?)") from None
    if policy is not None and not policy.allows(real):
        raise CheckpointError(f"{file}: {OUTSIDE_ROOTS}")
    try:
        mode = os.stat(real).st_mode
    except OSError:
        raise CheckpointError(f"{file}: file is missing") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{file}: not a regular file")
    return real


def read_bytes(file: str | Path, max_bytes: int, policy: PathPolicy | None = None) -> bytes:
    """At most ``max_bytes`` of a checked file (more is a CheckpointError, refused before reading it)."""
    file = Path(file)
    real = checked_path(file, policy)
    try:
        # O_NOFOLLOW / O_NONBLOCK: a file swapped for a symlink or a FIFO after the check is not followed or waited on
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be opened ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{file}: not a regular file")
        if st.st_size > max_bytes:
            raise CheckpointError(f"{file}: {st.st_size / 2**20:.1f} MiB is too large for this file "
                                  f"(at most {max_bytes / 2**20:.0f} MiB)")
        chunks, total = [], 0
        while total <= max_bytes:  # a file that grows after fstat is still cut at the cap
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e.strerror})") from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise CheckpointError(f"{file}: larger than {max_bytes / 2**20:.0f} MiB, too large for this file")
    return b"".join(chunks)


def read_text(file: str | Path, max_bytes: int, policy: PathPolicy | None = None) -> str:
    """A checked file as UTF-8 text, at most ``max_bytes``."""
    data = read_bytes(file, max_bytes, policy)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{file}: cannot be read as UTF-8 text ({type(e).__name__})") from None


def parse_json(text: str, file: Path) -> Any:
    """Parse JSON text that may be hostile: depth-bounded, no huge integers, no NaN; CheckpointError."""
    if nesting(text) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{file}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        # ValueError: an integer over Python's digit limit; parse_constant: NaN / Infinity
        raise CheckpointError(f"{file}: not valid JSON ({str(e)[:200]})") from None


def read_json_file(file: str | Path, max_bytes: int = MAX_JSON_BYTES, policy: PathPolicy | None = None) -> Any:
    """A checked JSON file: size-bounded, depth-bounded, no huge integers; CheckpointError."""
    file = Path(file)
    return parse_json(read_text(file, max_bytes, policy), file)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]+")


def nesting(text: str) -> int:
    """Deepest bracket nesting outside strings (a scan, so that json.loads never recurses too deep)."""
    depth = deepest = 0
    for run in _BRACKETS.findall(_STRING.sub('""', text)):
        for ch in run:
            if ch in "[{":
                depth += 1
                deepest = max(deepest, depth)
            else:
                depth -= 1
    return deepest
