"""What makes a run: the model's content, the corpus's content and the options that change rows, hashed into
``run_id``. The same command on the same files continues its run; another model, corpus or option is another run."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from .records import CHUNK_BYTES

MAX_MODEL_FILES = 1_000  # a model directory with more top-level files than this is hashed on its first ones only


class AtlasError(ValueError):
    """A mistake in how the atlas was asked for (a database that is not one, a bad option); the message says it."""


def model_hash(path: str | Path) -> str:
    """SHA-256 over the names and bytes of the regular files at the top of a model directory (sorted by name;
    subfolders such as ``snapshots/`` are not the model)."""
    path = Path(path)
    h = hashlib.sha256()
    try:
        with os.scandir(path) as it:
            entries = sorted((e for _, e in zip(range(MAX_MODEL_FILES), it, strict=False)), key=lambda e: e.name)
    except OSError as e:
        raise AtlasError(f"{path}: the model directory cannot be read ({e.strerror})") from None
    for entry in entries:
        try:
            if not stat.S_ISREG(os.stat(entry.path).st_mode):
                continue
            h.update(entry.name.encode("utf-8", "surrogateescape") + b"\x00")
            with open(entry.path, "rb") as f:
                while chunk := f.read(CHUNK_BYTES):
                    h.update(chunk)
        except OSError:
            continue
        h.update(b"\x00")
    return h.hexdigest()


def run_id(model_sha256: str, corpus_sha256: str, identity: dict) -> str:
    """16 hex digits naming one run: the model and corpus contents and the options that change rows."""
    text = json.dumps({"model": model_sha256, "corpus": corpus_sha256, **identity}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["AtlasError", "model_hash", "run_id"]
