"""Which atlas files the app offers and opens: the databases of a folder, and any typed string turned safely into one
(inside the allowed roots of the path policy when it is restricted, as for checkpoints)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..safe.paths import MAX_PATH_CHARS, PathPolicy
from .identity import AtlasError

SUFFIXES = (".duckdb", ".db")
MAX_LISTED = 200  # a folder with thousands of files lists its first databases only
OUTSIDE = "not an allowed atlas file"


def list_databases(folder: Path | None, policy: PathPolicy | None = None) -> list[Path]:
    """Up to MAX_LISTED atlas files (``*.duckdb``) directly in ``folder``, by name; none that resolve outside the
    policy's roots."""
    if folder is None:
        return []
    found = []
    try:
        with os.scandir(folder) as it:
            for n, entry in enumerate(it):
                if n >= 20 * MAX_LISTED or len(found) >= MAX_LISTED:
                    break
                if entry.name.startswith(".") or not entry.name.lower().endswith(SUFFIXES[0]):
                    continue
                try:
                    real = Path(os.path.realpath(entry.path, strict=True))
                    if stat.S_ISREG(os.stat(real).st_mode) and (policy is None or policy.allows(real)):
                        found.append(Path(entry.path))
                except (OSError, RuntimeError, ValueError):
                    continue
    except OSError:
        return []
    return sorted(found, key=lambda p: p.name)


def resolve_database(text: str, policy: PathPolicy) -> Path:
    """A typed string -> the real path of a regular ``.duckdb`` file inside the allowed roots; AtlasError with a clear
    message otherwise (the same message for a missing file and one outside the roots in public mode)."""
    raw = str(text).strip()
    if not raw:
        raise AtlasError("the database path is empty")
    if len(raw) > MAX_PATH_CHARS:
        raise AtlasError(f"the database path is {len(raw):,} characters long (at most {MAX_PATH_CHARS:,})")
    if any(ord(c) < 32 for c in raw):
        raise AtlasError("the database path contains control characters")
    if not raw.lower().endswith(SUFFIXES):
        raise AtlasError(f"{raw}: an atlas database ends in .duckdb")
    try:
        real = Path(os.path.realpath(Path(raw).expanduser(), strict=True))
    except (OSError, RuntimeError, ValueError):
        raise AtlasError(f"{raw}: {OUTSIDE}" if policy.public else f"{raw}: no such file") from None
    if not policy.allows(real):
        raise AtlasError(f"{raw}: {OUTSIDE}" + ("" if policy.public else
                                                f" (allowed: {', '.join(str(r) for r in policy.roots)})"))
    try:
        mode = os.stat(real).st_mode
    except OSError:
        raise AtlasError(f"{raw}: no such file") from None
    if not stat.S_ISREG(mode):
        raise AtlasError(f"{raw}: not a regular file")
    if not os.access(real, os.R_OK):
        raise AtlasError(f"{raw}: permission denied")
    return real


__all__ = ["OUTSIDE", "SUFFIXES", "list_databases", "resolve_database"]
