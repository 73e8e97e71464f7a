"""What a person types to open a model (a directory, or a hub id) -> the directory to load and the name to show.

One function for the sidebar's box, links, saved sessions, ``python -m model.atlas --model`` and ``model.load``: an
existing directory (inside the allowed roots) wins, as in transformers; text shaped as a hub id then resolves
through the Hugging Face cache. Nothing here downloads: an id the cache does not hold is a ``NotCached`` error that
says how to get it (``model.hub.download`` fetches it, when allowed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..safe.errors import CheckpointError
from ..safe.files import read_json_file
from ..safe.paths import OUTSIDE, PathPolicy, resolve_checkpoint_dir
from .cache import (
    NotCached,
    cache_enabled,
    family_problem,
    find_snapshot,
    hub_cache,
    listing,
    opening_problem,
    snapshot_ref,
    suggestions,
)
from .download import downloads_allowed, how_to_allow
from .ids import HubIdError, HubRef, looks_like_hub_id

SUGGEST_WAIT = 0.5  # seconds "did you mean" may wait for the cache's listing


@dataclass(frozen=True)
class Located:
    """A model to open: its directory, and how the app names it (a hub id for a cached model)."""

    path: Path
    ref: HubRef | None = None  # the hub model, when it comes from the cache (typed by id or by snapshot path)

    @property
    def name(self) -> str | None:
        """The hub name (``org/name``, ``org/name@rev``); None for any other directory (named by its folders)."""
        return None if self.ref is None else self.ref.name


def locate(text: str, policy: PathPolicy | None = None, downloads: bool | None = None) -> Located:
    """A typed directory or hub id -> a Located; CheckpointError with a clear message for anything else (NotCached
    for a valid id the cache lacks: its message says how to get it, with "did you mean" from the cache's listing).
    ``downloads``: whether the caller may download (only changes the message; None: the setting)."""
    policy = policy or PathPolicy()
    raw = str(text).strip()
    if "://" in raw[:16] and len(raw) < 2048:
        raise CheckpointError(f"“{raw[:80]}” is a web address: type the model's hub id (org/name) or a local "
                              "directory")
    try:
        path = resolve_checkpoint_dir(raw, policy)
    except CheckpointError as path_error:
        if not (looks_like_hub_id(raw) and cache_enabled() and raw and len(raw) < 512 and raw.isprintable()):
            if len(raw) > 160 and str(path_error).startswith(raw):  # say what is wrong, not the whole text again
                raise CheckpointError(f"{raw[:80]}…{str(path_error)[len(raw):]}") from None
            raise
        try:
            ref = HubRef.parse(raw)
        except HubIdError as e:
            raise CheckpointError(f"{path_error}, nor a hub id: {e}") from None
    else:
        return Located(path, snapshot_ref(path))
    try:
        snapshot = find_snapshot(ref)
    except NotCached as e:
        raise _not_cached(raw, ref, e, policy, downloads) from None
    if policy.restricted and not policy.allows(snapshot.resolve()):
        raise CheckpointError(f"{raw}: {OUTSIDE}")
    family, problem = opening_problem(snapshot)
    if problem is None and family:
        config = read_json_file(snapshot / "config.json", policy=policy)
        problem = family_problem(family, config if isinstance(config, dict) else {})
    if problem:
        raise CheckpointError(f"{ref.name} is in the Hugging Face cache but cannot be opened: {problem}")
    return Located(snapshot, ref)


def _not_cached(raw: str, ref: HubRef, e: NotCached, policy: PathPolicy, downloads: bool | None) -> NotCached:
    allowed = downloads_allowed() if downloads is None else downloads and downloads_allowed(asked=True)
    if e.partial:
        head = f"{ref.name} is in the Hugging Face cache but cannot be opened: {e.partial}."
        fix = " What is missing can be downloaded from the hub." if allowed else \
            f" To fetch what is missing: {how_to_allow(ref)}."
        return NotCached(head + fix, ref, (), e.partial)
    where = "an allowed directory" if policy.public else "a directory"
    cache = "" if policy.public else f" ({hub_cache()})"  # a public server does not say where its files are
    head = f"“{raw}” is neither {where} nor a model in the Hugging Face cache{cache}"
    close = suggestions(ref.repo_id, listing(wait=SUGGEST_WAIT))
    head += f"; did you mean {' or '.join(close)}?" if close else "."
    fix = " It can be downloaded from the hub." if allowed else f" To get it: {how_to_allow(ref)}."
    return NotCached(head + fix, ref, close)


def locate_or_download(text: str, policy: PathPolicy | None = None, allow_download: bool = False,
                       progress: bool = True) -> Located:
    """``locate``, and for a hub id the cache lacks, download it first when allowed (``allow_download`` or
    INSPECTOR_ALLOW_DOWNLOAD=1, never on a public server) with a progress bar on stderr; Ctrl-C stops it
    (DownloadStopped)."""
    from .download import download

    allowed = downloads_allowed(asked=allow_download)
    try:
        return locate(text, policy, downloads=allowed)
    except NotCached as e:
        if not allowed:
            raise
        download(e.ref, progress=progress)
        return locate(text, policy, downloads=allowed)


__all__ = ["Located", "locate", "locate_or_download"]
