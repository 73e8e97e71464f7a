"""Training output that is never half-written: a staging directory beside --out, swapped into place at the end.

Before training: --out is refused when it holds another run's checkpoint (another task, other data, another
architecture) unless --overwrite, when it cannot be replaced by a rename (a mount point such as /proc, the current
directory or a folder holding it, a folder holding the --data file), and a symlinked --out is followed (its target
is replaced, the link stays). Leftovers of earlier runs are dealt with and reported: an --out lost between the two
renames of a swap is put back, staging folders of interrupted runs are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..own.checkpoint import CONFIG_FILE, META_FILE
from .data import TrainError


def _read(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def difference(out: Path, task: str, data_sha256: str | None, arch: dict[str, Any] | None) -> str | None:
    """Why the checkpoint in ``out`` is not an earlier run of the same training, or None when it is."""
    meta, config = _read(out / META_FILE), _read(out / CONFIG_FILE)
    existing = str(meta.get("task"))
    if existing != task:
        return f"holds a checkpoint of task {existing!r}, not {task!r}"
    if data_sha256 is not None and meta.get("data_sha256") != data_sha256:
        if meta.get("data_sha256") is None:
            return "holds a checkpoint whose meta.json records no hash of its --data, so it may be other data"
        return (f"holds a checkpoint trained on other data ({meta.get('data')}, sha256 "
                f"{str(meta['data_sha256'])[:12]}…, not {data_sha256[:12]}…)")
    if arch is not None:
        changed = [f"{k} {config.get(k)!r} -> {v!r}" for k, v in arch.items() if config.get(k) != v]
        if changed:
            return "holds a checkpoint of another architecture (" + ", ".join(changed) + ")"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue
    return total


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


class StagedOutput:
    """Write a checkpoint into ``.<out>.partial-*`` beside ``out``; ``commit()`` swaps it into place.

    A directory that holds another run's checkpoint (or anything that is not a checkpoint) is not replaced unless
    ``overwrite``; an interrupted run leaves ``out`` as it was and its partial output in ``staging``. What is done
    to leftovers of earlier runs is printed (stderr) and kept in ``notes``.
    """

    def __init__(self, out: str | Path, task: str, overwrite: bool = False, data_sha256: str | None = None,
                 arch: dict[str, Any] | None = None, data: str | Path | None = None):
        self.out = Path(out)
        self.notes: list[str] = []
        try:
            # a symlinked --out stays a symlink: its target is what gets replaced
            self.target = Path(os.path.realpath(self.out)) if self.out.is_symlink() else self.out.absolute()
        except (OSError, ValueError) as e:
            raise TrainError(f"--out {self.out}: cannot be resolved ({e})") from None
        self._refuse_unreplaceable(data)
        self._recover()
        if self.target.exists() and not self.target.is_dir():
            raise TrainError(f"--out {self.out}: is a file, not a directory")
        if self.target.is_dir() and any(self.target.iterdir()) and not overwrite:
            if not (self.target / CONFIG_FILE).is_file():
                raise TrainError(f"--out {self.out}: exists and is not a checkpoint; pass --overwrite to replace it")
            why = difference(self.target, task, data_sha256, arch)
            if why:
                raise TrainError(f"--out {self.out}: {why}; pass --overwrite to replace it")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.staging = self.target.parent / f".{self.target.name}.partial-{stamp}-{os.getpid()}"
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir()
        except OSError as e:
            raise TrainError(f"--out {self.out}: cannot write beside it in {self.target.parent} "
                             f"({e.strerror or e})") from None

    def _refuse_unreplaceable(self, data: str | Path | None) -> None:
        """What a rename cannot replace, refused before any training: mount points, the current directory, a
        folder holding the --data file."""
        target = Path(os.path.realpath(self.target))
        if os.path.ismount(target):
            raise TrainError(f"--out {self.out}: is a mount point; a checkpoint is written beside --out and renamed "
                             "into place, which a mount point cannot be")
        try:
            cwd = Path(os.path.realpath(os.getcwd()))
        except OSError:
            cwd = None
        if cwd is not None and _is_within(cwd, target):
            raise TrainError(f"--out {self.out}: contains the current directory ({cwd}); replacing it would pull "
                             "the ground from under this command. Run it from elsewhere or pick another --out")
        if data is not None and _is_within(Path(os.path.realpath(data)), target):
            raise TrainError(f"--out {self.out}: holds the --data file {data}, which replacing it would delete")

    def _note(self, text: str) -> None:
        self.notes.append(text)
        print(text, file=sys.stderr)

    def _recover(self) -> None:
        """Put back an --out lost between the two renames of an earlier swap; remove what earlier runs left."""
        parent, name = self.target.parent, self.target.name
        try:
            leftovers = sorted(parent.glob(f".{name}.old-*"), key=lambda p: p.stat().st_mtime)
            partials = sorted(parent.glob(f".{name}.partial-*"))
        except OSError:
            return
        if leftovers and not self.target.exists():
            newest = leftovers.pop()
            try:
                os.replace(newest, self.target)
            except OSError as e:
                raise TrainError(f"--out {self.out}: missing, and the previous checkpoint an earlier run left in "
                                 f"{newest} cannot be put back ({e.strerror or e})") from None
            self._note(f"restored {self.out} from {newest}, where an earlier run left it when it was stopped "
                              "while swapping in its checkpoint")
        for old in leftovers:  # the swap finished but removing the previous checkpoint did not
            shutil.rmtree(old, ignore_errors=True)
            self._note(f"removed {old}, a previous checkpoint an earlier run had already replaced")
        stale = []
        for p in partials:
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue  # another run into the same --out, still going
            stale.append((p, _size(p)))
            shutil.rmtree(p, ignore_errors=True)
        if stale:
            total = sum(s for _, s in stale)
            self._note(f"removed {len(stale)} staging folder(s) of interrupted runs beside {self.out} "
                              f"({total / 2**20:.1f} MB): " + ", ".join(p.name for p, _ in stale[:5])
                              + (" ..." if len(stale) > 5 else ""))

    def commit(self) -> Path:
        """Replace ``out`` by the finished checkpoint: two renames, with Ctrl-C held back between them (and the
        previous checkpoint put back if the second fails); the previous one is removed afterwards."""
        deferred: list[int] = []
        previous = signal.getsignal(signal.SIGINT)
        hold = threading.current_thread() is threading.main_thread() and previous is not None
        if hold:
            signal.signal(signal.SIGINT, lambda signum, frame: deferred.append(signum))
        old = None
        try:
            try:
                if self.target.exists():
                    old = self.target.parent / f".{self.target.name}.old-{os.getpid()}-{time.time_ns()}"
                    os.replace(self.target, old)
                os.replace(self.staging, self.target)
            except BaseException:
                if old is not None and old.exists() and not self.target.exists():
                    os.replace(old, self.target)  # the previous checkpoint back where it was
                print(f"\nnot saved: {self.out} is as it was; this run's checkpoint is in {self.staging}",
                      file=sys.stderr)
                raise
        finally:
            if hold:
                signal.signal(signal.SIGINT, previous)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if deferred:
            print(f"\ninterrupted while saving: {self.out} holds this run's finished checkpoint", file=sys.stderr)
            raise KeyboardInterrupt
        return self.out
