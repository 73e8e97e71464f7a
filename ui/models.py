"""Which models the app offers, opening a typed path safely, and loading each model once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from model import hub, load, settings
from model.own.checkpoint import stamp as checkpoint_stamp
from model.safe.paths import PathPolicy
from model.training.tasks import TASKS, Story

from .boot import DEFAULT_MODEL, shipped_dir
from .cache import SharedLRU
from .launch import launch

ROOT = Path(__file__).resolve().parent.parent
MAX_LISTED = 200  # a models directory with thousands of entries lists the first ones only
FINAL = "final"


def models_dir() -> Path | None:
    value = settings.path("INSPECTOR_MODELS")
    return Path(value) if value else None


def path_policy() -> PathPolicy:
    return PathPolicy.from_env(shipped_dir(), models_dir(), hub.hub_cache() if hub.cache_enabled() else None)


def downloads_here() -> bool:
    """Whether a visitor may download a hub id the cache lacks (INSPECTOR_ALLOW_DOWNLOAD=1 or ``--allow-download``;
    never on a public server)."""
    return hub.downloads_allowed(asked=launch().allow_download)


def _has_config(path: Path) -> bool:
    try:
        return (path / "config.json").is_file()
    except OSError:
        return False


def _inside(path: Path, policy: PathPolicy | None) -> bool:
    """True when ``path``, symlinks resolved, is inside the policy's allowed roots (or the policy is open)."""
    if policy is None or not policy.restricted:
        return True
    try:
        return policy.allows(path.resolve(strict=True))
    except (OSError, RuntimeError, ValueError):
        return False


def _subdirs(parent: Path, policy: PathPolicy | None = None) -> list[Path]:
    """Up to MAX_LISTED subdirectories holding a config.json (never stats every file of a huge directory); with a
    restricted policy, only those that resolve inside its roots (a symlink out of them is not offered)."""
    found = []
    try:
        with os.scandir(parent) as it:
            for n, entry in enumerate(it):
                if n >= 20 * MAX_LISTED or len(found) >= MAX_LISTED:
                    break
                try:
                    if entry.is_dir() and not entry.name.startswith(".") and entry.name != "snapshots":
                        if _has_config(Path(entry.path)) and _inside(Path(entry.path), policy):
                            found.append(Path(entry.path))
                except OSError:
                    continue
    except OSError:
        return []
    return sorted(found, key=lambda p: p.name)


@dataclass(frozen=True)
class ModelChoice:
    label: str  # shown in the picker
    path: str
    name: str = ""  # how links and saved sessions name it (default: the directory's name)
    reason: str | None = None  # why it cannot be opened (a cached model listed with its reason); None: it can

    @property
    def link_name(self) -> str:
        return self.name or Path(self.path).name


def size_text(n: int) -> str:
    """Bytes as a person reads them: 640 kB, 91 MB, 1.2 GB."""
    return f"{n / 1e3:,.0f} kB" if n < 1e6 else f"{n / 1e6:,.0f} MB" if n < 1e9 else f"{n / 1e9:,.1f} GB"


def cached_choices() -> list[ModelChoice]:
    """The Hugging Face cache's models (huggingface_hub's scan, kept and bounded: model.hub.listing), openable ones
    labelled with family and size, the others with “cannot open” (the reason is shown when one is picked)."""
    if not hub.cache_enabled():
        return []
    out = []
    for m in hub.listing().models:
        label = f"{m.name} · {m.family or '?'} · {size_text(m.size_on_disk)}" if m.reason is None else \
            f"{m.name} · cannot open"
        out.append(ModelChoice(label, str(m.path), name=m.name, reason=m.reason))
    return out


def model_choices() -> list[ModelChoice]:
    """Shipped checkpoints (the default first), then the models directory's, then the Hugging Face cache's."""
    policy = path_policy()
    shipped = _subdirs(shipped_dir(), policy)
    shipped.sort(key=lambda p: (p.name != DEFAULT_MODEL, p.name))
    choices = [ModelChoice(p.name, str(p)) for p in shipped]
    extra = models_dir()
    if extra is not None:
        choices += [ModelChoice(f"{p.name} (models directory)", str(p)) for p in _subdirs(extra, policy)]
    return choices + cached_choices()


def snapshots(path: str) -> list[tuple[int, str]]:
    """(step, path) of a checkpoint's training snapshots, in step order (none for most models)."""
    snap_dir = Path(path) / "snapshots"
    out = []
    for p in _subdirs(snap_dir, path_policy()):
        if p.name.startswith("step_") and p.name[5:].isdigit():
            out.append((int(p.name[5:]), str(p)))
    return sorted(out)


def story_for(meta: dict) -> Story | None:
    task = TASKS.get(str(meta.get("task", "")))
    return None if task is None else task.story


def example_for(path: str) -> str | None:
    name = Path(path).name
    task = TASKS.get(name)
    return task.story.example if task and task.story else None


def open_typed_path(text: str) -> str:
    """A directory or hub id typed into the sidebar -> a directory the policy allows (model.hub.locate: a cached hub
    model's snapshot); CheckpointError otherwise (hub.NotCached for an id the cache lacks, saying how to get it)."""
    return str(hub.locate(text, path_policy(), downloads=downloads_here()).path)


def model_cache_bytes() -> int:
    """INSPECTOR_MODEL_CACHE_MB (default 4096): what the loaded models shared by every session may hold together
    (their parameters and buffers); the least recently used go first (the one in use always stays)."""
    return settings.megabytes("INSPECTOR_MODEL_CACHE_MB")


def pipeline_bytes(pipe) -> int:
    """The bytes a loaded model holds (parameters and buffers)."""
    module = getattr(pipe, "model", None)
    if module is None:
        return 0
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


_MODELS: SharedLRU = SharedLRU(model_cache_bytes(), pipeline_bytes)


def clear_models() -> None:
    _MODELS.clear()


def load_pipeline(path: str, device: str, stamp: float):
    """One pipeline per (path, device, file times), shared by every session and never mutated; at most
    INSPECTOR_MODEL_CACHE_MB of them (by their weights' bytes), not a number of entries."""
    _MODELS.max_bytes = model_cache_bytes()

    def compute():
        with st.spinner("Loading the model…"):
            return load(path, device, policy=path_policy())
    return _MODELS.get((path, device, stamp), compute)


def pipeline(path: str, device: str):
    return load_pipeline(path, device, checkpoint_stamp(path))


GENERIC_DIRS = {"model", "models", "checkpoint", "checkpoints", "ckpt", "hf", "final", "best", "output", "outputs",
                "weights", "snapshot", "snapshots", "latest", "export", "exported", "pretrained", "saved_model",
                "transformers", "huggingface", "main", "default", "files", "data"}


def _generic(name: str) -> bool:
    n = name.strip().lower()
    return not n or n in GENERIC_DIRS or n.startswith(("step_", "checkpoint-")) or n in (".", "..")


def model_name(path: str) -> str:
    """A name a person recognises for the model at ``path``: a snapshot of the Hugging Face cache by its hub id (and
    revision off main); else its directory's name; for a directory with a generic name ("model", "checkpoint",
    "step_1000"...), config.json's ``_name_or_path`` when it names a model, else the nearest parent with a real
    name."""
    ref = hub.snapshot_ref(path)
    if ref is not None:
        return ref.name
    p = Path(path)
    if not _generic(p.name):
        return p.name
    try:
        from model.safe.files import read_json_file

        config = read_json_file(p / "config.json")
    except Exception:  # no config.json, unreadable, hostile: the path's names will do
        config = None
    named = config.get("_name_or_path") if isinstance(config, dict) else None
    if isinstance(named, str) and 0 < len(named) <= 200:
        parts = [q for q in named.replace("\\", "/").split("/") if q and not _generic(q)]
        if parts:
            # a hub id ("sentence-transformers/all-MiniLM-L6-v2") as it is; a local path by its last real name
            return named if named.count("/") == 1 and not named.startswith(("/", ".", "~")) else parts[-1]
    for parent in list(p.parents)[:3]:
        if not _generic(parent.name):
            return f"{parent.name}/{p.name}"
    return p.name


def model_stem(path: str) -> str:
    """The model's name as the start of a file name (exports, saved sessions): ``org/name`` -> ``org--name``."""
    name = model_name(path).replace("/", "--")
    return "".join(c if c.isalnum() or c in "._@-" else "_" for c in name)[:120] or "model"
