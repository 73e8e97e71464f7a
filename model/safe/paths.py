"""Which checkpoint directories a visitor may open, and turning any typed string into one safely.

On a laptop every readable directory is allowed. On a shared or public server, set ``INSPECTOR_ALLOWED_ROOTS``
(directories separated by the OS path separator) or ``INSPECTOR_PUBLIC=1`` (then the roots default to the shipped
checkpoints and the models directory): a typed path must resolve, symlinks followed, inside one of the roots, and
the error for anything else is the same whether or not it exists, so a visitor cannot probe the server's files.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from .errors import CheckpointError

MAX_PATH_CHARS = 1024  # longer strings are refused before touching the file system
OUTSIDE = "not an allowed checkpoint directory"


@dataclass(frozen=True)
class PathPolicy:
    """Allowed roots (resolved); an empty tuple allows any directory (local use)."""

    roots: tuple[Path, ...] = ()
    public: bool = False  # public deployment: typed paths are restricted, error details kept vague

    @classmethod
    def from_env(cls, shipped: Path, models_dir: Path | None, hub_cache: Path | None = None) -> "PathPolicy":
        """The deployment's policy; ``hub_cache`` (the Hugging Face cache, when the app opens models from it) is one
        more root whenever the roots are restricted: its models are listed, so they may be opened."""
        public = settings.flag("INSPECTOR_PUBLIC")
        listed = settings.paths("INSPECTOR_ALLOWED_ROOTS")
        roots = [Path(p) for p in listed]
        if public and not roots:
            roots = [shipped] + ([models_dir] if models_dir is not None else [])
        if roots and hub_cache is not None:
            roots.append(hub_cache)
        resolved = []
        for r in roots:
            try:
                resolved.append(r.expanduser().resolve(strict=False))
            except (OSError, RuntimeError, ValueError):
                continue
        return cls(roots=tuple(resolved), public=public)

    @property
    def restricted(self) -> bool:
        return bool(self.roots) or self.public

    def allows(self, path: Path) -> bool:
        if not self.restricted:
            return True
        return any(path == root or root in path.parents for root in self.roots)


def resolve_checkpoint_dir(text: str, policy: PathPolicy) -> Path:
    """A typed string -> a resolved directory inside the allowed roots, or a CheckpointError with a clear message.

    Never raises anything else: too long, NUL bytes, symlink loops, FIFOs, devices, no permission, all end here.
    """
    raw = str(text).strip()
    if not raw:
        raise CheckpointError("the checkpoint path is empty")
    if len(raw) > MAX_PATH_CHARS:
        raise CheckpointError(f"the checkpoint path is {len(raw):,} characters long (at most {MAX_PATH_CHARS:,})")
    if "\x00" in raw or any(ord(c) < 32 for c in raw):
        raise CheckpointError("the checkpoint path contains control characters")
    try:
        path = Path(raw).expanduser().resolve(strict=False)
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an unknown ~user...
        if policy.restricted:
            raise CheckpointError(f"{raw}: {OUTSIDE}") from None
        raise CheckpointError(f"{raw}: the path cannot be resolved (a symlink loop?)") from None
    if not policy.allows(path):
        raise CheckpointError(f"{raw}: {OUTSIDE}" + ("" if policy.public else
                                                     f" (allowed: {', '.join(str(r) for r in policy.roots)})"))
    try:
        st = os.stat(path)
    except PermissionError:
        raise CheckpointError(f"{raw}: permission denied") from None
    except (OSError, ValueError):
        raise CheckpointError(f"{raw}: no such checkpoint directory") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{raw}: not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise CheckpointError(f"{raw}: permission denied")
    return path
