"""Training output that is never half-written: a staging directory beside --out, renamed into place at the end."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..checkpoint import CONFIG_FILE, META_FILE
from .data import TrainError


def _existing_task(out: Path) -> str | None:
    try:
        return str(json.loads((out / META_FILE).read_text(encoding="utf-8")).get("task"))
    except (OSError, ValueError, AttributeError):
        return None


class StagedOutput:
    """Write a checkpoint into ``<out>.partial-*`` beside ``out``; ``commit()`` swaps it into place.

    A directory that holds a checkpoint of another task (or anything that is not a checkpoint) is not replaced
    unless ``overwrite``; an interrupted run leaves ``out`` as it was and its partial output in ``staging``.
    """

    def __init__(self, out: str | Path, task: str, overwrite: bool = False):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise TrainError(f"--out {self.out}: is a file, not a directory")
        if self.out.is_dir() and any(self.out.iterdir()) and not overwrite:
            if not (self.out / CONFIG_FILE).is_file():
                raise TrainError(f"--out {self.out}: exists and is not a checkpoint; pass --overwrite to replace it")
            existing = _existing_task(self.out)
            if existing != task:
                raise TrainError(f"--out {self.out}: holds a checkpoint of task {existing!r}, not {task!r}; pass "
                                 f"--overwrite to replace it")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.staging = self.out.parent / f".{self.out.name}.partial-{stamp}-{os.getpid()}"
        self.staging.mkdir()

    def commit(self) -> Path:
        """Replace ``out`` by the finished checkpoint (two renames; the old one is removed afterwards)."""
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(self.out, old)
        os.replace(self.staging, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out
