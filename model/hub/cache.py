"""The Hugging Face cache (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), read through huggingface_hub's own
functions: a hub id resolves the way transformers' ``from_pretrained(..., local_files_only=True)`` does (a branch
or tag through ``refs/``, then ``snapshots/<commit>``), and the listing is ``scan_cache_dir``'s, with what this app
can open and, for the rest, why not.

Nothing here downloads (model/hub/download.py does, when allowed) and nothing imports torch: the listing reads
each snapshot's config.json and file names only.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..safe.errors import CheckpointError
from ..safe.files import read_json_file
from .ids import COMMIT, SHORT_COMMIT, SHOWN_COMMIT, HubRef

# the files a model is opened from (what model/hf/loader.py reads): asked of huggingface_hub by these patterns
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
SHARDS = "model-*-of-*.safetensors"
SMALL_FILES = (CONFIG, "generation_config.json", TOKENIZER, "tokenizer_config.json")
MODEL_FILES = (*SMALL_FILES, WEIGHTS, INDEX, SHARDS)
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")
MAX_LISTED_REPOS = 2_000  # a cache with more repositories is listed in part (the scan says so)
SCAN_TTL = 30.0  # seconds a listing is reused (a new repository in the cache is seen at once: the folder's time)
REGISTRY = "transformers.models.auto.configuration_auto"  # transformers' model types (imported with transformers)
SCAN_WAIT = 1.5  # seconds a caller waits for a scan before going on without it (the scan finishes in the background)


class NotCached(CheckpointError):
    """A valid hub id that the cache does not hold (or holds in part); ``ref`` says which, ``suggestions`` what the
    cache has that looks like it."""

    def __init__(self, message: str, ref: HubRef, suggestions: tuple[str, ...] = (), partial: str | None = None):
        super().__init__(message)
        self.ref, self.suggestions = ref, suggestions
        self.partial = partial  # what an interrupted or partial download left out, in words; None: nothing cached


def hub_cache() -> Path:
    """The cache huggingface_hub uses (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), read now."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cache_enabled() -> bool:
    """INSPECTOR_HUB_CACHE: whether hub ids resolve through the cache and its models are listed. Unset: yes for local
    use, no on a public server (the operator's cache may hold models never meant for visitors: 1 opens it to them)."""
    if settings.raw("INSPECTOR_HUB_CACHE") == "":
        return not settings.flag("INSPECTOR_PUBLIC")
    return settings.flag("INSPECTOR_HUB_CACHE")


def repo_folder(cache: Path, repo_id: str) -> Path:
    """``models--org--name``, the folder huggingface_hub keeps a model repository in."""
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=repo_id, repo_type="model")


# naming a snapshot directory ------------------------------------------------------------------------------------

def _refs(repo: Path) -> dict[str, str]:
    """ref name -> commit, from a cached repository's ``refs/`` (what huggingface_hub wrote there)."""
    out = {}
    base = repo / "refs"
    try:
        for root, dirs, files in os.walk(base):
            dirs[:] = dirs[:16]
            for f in files[:64]:
                p = Path(root) / f
                text = p.read_text(encoding="ascii", errors="replace").strip()[:64]
                if COMMIT.fullmatch(text):
                    out[p.relative_to(base).as_posix()] = text
    except OSError:
        pass
    return out


def snapshot_ref(path: str | Path) -> HubRef | None:
    """The hub model a snapshot directory (``.../models--org--name/snapshots/<commit>``) holds, named by the branch
    or tag that points to it (none for main), else by its commit's first digits; None for any other directory."""
    p = Path(path)
    if p.parent.name != "snapshots" or not p.parent.parent.name.startswith("models--"):
        return None
    parts = p.parent.parent.name.split("--")[1:]
    repo_id = "/".join(parts)
    try:
        ref = HubRef.parse(repo_id)
    except CheckpointError:
        return None
    if repo_folder(p.parent.parent.parent, ref.repo_id).name != p.parent.parent.name or not COMMIT.fullmatch(p.name):
        return None
    names = sorted(n for n, c in _refs(p.parent.parent).items() if c == p.name)
    if "main" in names:
        return ref
    return HubRef(ref.repo_id, names[0] if names else p.name[:SHOWN_COMMIT])


# resolving an id ------------------------------------------------------------------------------------------------

def _full_commit(ref: HubRef, cache: Path) -> str | None:
    """A revision given as a commit's leading digits -> the one cached snapshot whose commit starts so (None: the
    revision is a branch or tag name, or no snapshot or several match)."""
    rev = ref.revision
    if rev is None or not SHORT_COMMIT.fullmatch(rev) or (repo_folder(cache, ref.repo_id) / "refs" / rev).is_file():
        return None
    try:
        found = [e.name for e in os.scandir(repo_folder(cache, ref.repo_id) / "snapshots") if e.name.startswith(rev)]
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def find_snapshot(ref: HubRef, cache: Path | None = None) -> Path:
    """The cached snapshot directory of ``ref`` (huggingface_hub's ``snapshot_download(local_files_only=True)``: the
    branch or tag through refs/, a commit directly; a snapshot its own listing shows as interrupted is refused).
    NotCached when it is not there; CheckpointError for a cache that cannot be read."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    cache = cache or hub_cache()
    revision = _full_commit(ref, cache) or ref.wanted
    try:
        found = Path(snapshot_download(ref.repo_id, revision=revision, cache_dir=cache, local_files_only=True,
                                       allow_patterns=list(MODEL_FILES)))
    except IncompleteSnapshotError as e:
        missing = "an interrupted download, missing " + str(e).split("are missing (")[-1].split(")")[0][:200]
        raise NotCached(f"the cached copy of {ref.name} is incomplete ({missing})", ref, partial=missing) from None
    except LocalEntryNotFoundError:
        raise NotCached(f"{ref.name} is not in the Hugging Face cache ({cache})", ref) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{ref.name}: the Hugging Face cache ({cache}) cannot be read ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    missing = missing_files(found)
    if missing:
        raise NotCached(f"the cached copy of {ref.name} has no {missing}", ref, partial=f"no {missing}")
    return found


def missing_files(snapshot: Path) -> str | None:
    """What a snapshot lacks to be opened (config.json, tokenizer.json, safetensors weights), in words; None: none."""
    def has(name: str) -> bool:
        try:
            return (snapshot / name).is_file()
        except OSError:
            return False

    lacks = [n for n in (CONFIG, TOKENIZER) if not has(n)]
    if not has(WEIGHTS) and not has(INDEX):
        pickled = [n for n in PICKLED if has(n)]
        lacks.append(f"safetensors weights (only {pickled[0]}, which is pickled: this app never unpickles)" if pickled
                     else "weights")
    return ", ".join(lacks) or None


# the listing ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CachedModel:
    """One model revision in the cache, as the picker lists it."""

    ref: HubRef  # how it is named (and opened again)
    commit: str
    path: Path  # its snapshot directory
    size_on_disk: int  # bytes of its files (huggingface_hub's figure)
    family: str  # config.json's model_type ("" when unreadable)
    reason: str | None = None  # why this app cannot open it; None: it can

    @property
    def name(self) -> str:
        return self.ref.name


@dataclass(frozen=True)
class Listing:
    """What a scan of the cache found: the model revisions (openable or not), and what went wrong while scanning."""

    cache: Path
    models: tuple[CachedModel, ...] = ()
    problems: tuple[str, ...] = ()  # damaged repositories, an unreadable cache, a scan that has not finished...
    older: int = 0  # snapshots no branch or tag points to, of repositories that have a current one (not listed)
    seconds: float = 0.0  # how long the scan took
    stamp: float = 0.0  # the cache folder's modification time when scanned
    done: bool = True  # False: still scanning (nothing listed yet)
    families: bool = False  # whether transformers' registry was loaded, so family problems were checked too

    def openable(self) -> list[CachedModel]:
        return [m for m in self.models if m.reason is None]


def opening_problem(snapshot: Path, config: dict | None = None) -> tuple[str, str | None]:
    """(family, why this app cannot open the snapshot or None), from its file names and config.json alone: the
    checks that need neither torch nor transformers' modules (the loader checks everything else when it opens it),
    and the family's when transformers' registry is loaded already (``family_problem``)."""
    if config is None:
        try:
            config = read_json_file(snapshot / CONFIG)
        except CheckpointError as e:
            missing = missing_files(snapshot)
            return "", (f"no {missing}" if missing else f"config.json cannot be read ({str(e)[-120:]})")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not model_type:
        return "", "config.json names no model_type (not a transformers model, or this app's own format)"
    missing = missing_files(snapshot)
    return model_type, (f"no {missing}" if missing else family_problem(model_type, config, load=False))


def family_problem(model_type: str, config: dict, load: bool = True) -> str | None:
    """Why transformers cannot build this model_type here: a type it does not know, needing code from the repository
    (``auto_map``: remote code, never run) or not; None when transformers defines it. ``load=False``: answer only if
    transformers' registry is imported already (None otherwise: the loader checks it when the model is opened), so
    that listing the cache never imports transformers (seconds on a cold start)."""
    if not load and REGISTRY not in sys.modules:
        return None
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type in CONFIG_MAPPING_NAMES:
        return None
    if isinstance(config.get("auto_map"), dict):
        return f"its model type “{model_type[:60]}” needs code of its own from the repository (remote code), which " \
               "this app never runs"
    return f"transformers has no model type “{model_type[:60]}” (an unsupported family)"


def _listed_revisions(repo) -> tuple[list, int]:
    """The revisions of a scanned repository worth listing: those a branch or tag points to; the newest detached
    one when none is; -> (revisions, how many older detached ones were left out)."""
    named = [r for r in repo.revisions if r.refs]
    detached = sorted((r for r in repo.revisions if not r.refs), key=lambda r: r.last_modified, reverse=True)
    if named:
        return named, len(detached)
    return detached[:1], max(0, len(detached) - 1)


def _ref_of(repo_id: str, revision) -> HubRef:
    refs = sorted(revision.refs)
    if not refs or "main" in refs:
        return HubRef(repo_id) if refs else HubRef(repo_id, revision.commit_hash[:SHOWN_COMMIT])
    return HubRef(repo_id, refs[0])


def scan(cache: Path | None = None) -> Listing:
    """Scan the cache now (huggingface_hub's ``scan_cache_dir``): every model revision with its size and family,
    and why the ones that cannot be opened cannot. A cache that is missing is an empty listing; one that cannot be
    read, or a damaged repository, is a listed problem, never an exception."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache = Path(cache or hub_cache())
    started = time.perf_counter()
    stamp = _stamp(cache)
    families = REGISTRY in sys.modules
    if not _is_dir(cache):
        return Listing(cache=cache, seconds=time.perf_counter() - started, stamp=stamp)
    try:
        if _entries(cache) > MAX_LISTED_REPOS:
            return _fallback(cache, started, stamp, f"the cache holds more than {MAX_LISTED_REPOS:,} repositories: "
                                                    f"only the first {MAX_LISTED_REPOS:,} model folders are listed")
        info = scan_cache_dir(cache)
    except CacheNotFound:
        return Listing(cache=cache, seconds=time.perf_counter() - started, stamp=stamp)
    except (OSError, ValueError, RuntimeError) as e:  # an unreadable folder inside the cache stops the whole scan
        return _fallback(cache, started, stamp, f"the cache scan stopped ({type(e).__name__}: {str(e)[:160]}); "
                                                "each model folder was read on its own")
    models, older = [], 0
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        revisions, n_older = _listed_revisions(repo)
        older += n_older
        for revision in sorted(revisions, key=lambda r: sorted(r.refs) != ["main"]):
            family, reason = opening_problem(revision.snapshot_path)
            ref = _ref_of(repo.repo_id, revision)
            if reason is None:
                reason = _incomplete(ref, cache)
            models.append(CachedModel(ref=ref, commit=revision.commit_hash, path=revision.snapshot_path,
                                      size_on_disk=revision.size_on_disk, family=family, reason=reason))
    problems = [f"{_repo_in(str(w)) or 'a folder'}: the cache entry is damaged ({str(w)[:200]})" for w in info.warnings]
    return Listing(cache=cache, models=tuple(models), problems=tuple(problems), older=older,
                   seconds=time.perf_counter() - started, stamp=stamp, families=families)


def _incomplete(ref: HubRef, cache: Path) -> str | None:
    try:
        find_snapshot(ref, cache)
    except NotCached as e:
        return e.partial or str(e)
    except CheckpointError as e:
        return str(e)[:200]
    return None


def _repo_in(text: str) -> str | None:
    """The repository a scan warning is about (``.../models--org--name/...`` -> ``org/name``)."""
    found = re.search(r"models--([^/\\\s'\")]+)", text)
    return found[1].replace("--", "/") if found else None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _stamp(cache: Path) -> float:
    try:
        return os.stat(cache).st_mtime
    except OSError:
        return 0.0


def _entries(cache: Path) -> int:
    """How many entries the cache folder has (counting stops past the listing's limit)."""
    n = 0
    with os.scandir(cache) as it:
        for n, _ in enumerate(it, 1):
            if n > MAX_LISTED_REPOS:
                break
    return n


def _fallback(cache: Path, started: float, stamp: float, problem: str) -> Listing:
    """When scan_cache_dir cannot finish (an unreadable folder raises out of it) or the cache is huge: each model
    folder on its own, its main branch resolved by ``find_snapshot``; what fails is listed with its reason."""
    models, problems = [], [problem]
    try:
        with os.scandir(cache) as it:
            names = sorted(e.name for _, e in zip(range(MAX_LISTED_REPOS), it, strict=False)
                           if e.name.startswith("models--"))
    except OSError as e:
        return Listing(cache=cache, problems=(f"the cache {cache} cannot be read ({e.strerror})",),
                       seconds=time.perf_counter() - started, stamp=stamp)
    for folder in names:
        try:
            ref = HubRef.parse("/".join(folder.split("--")[1:]))
        except CheckpointError:
            problems.append(f"{folder}: not a model folder huggingface_hub writes")
            continue
        try:
            path = find_snapshot(ref, cache)
        except NotCached as e:
            if e.partial:
                models.append(CachedModel(ref=ref, commit="", path=cache / folder, size_on_disk=0, family="",
                                          reason=e.partial))
            else:
                problems.append(f"{ref.name}: no snapshot of its main branch could be read")
            continue
        except CheckpointError as e:
            problems.append(f"{ref.name}: {str(e)[:200]}")
            continue
        family, reason = opening_problem(path)
        models.append(CachedModel(ref=ref, commit=path.name, path=path, size_on_disk=_size(path), family=family,
                                  reason=reason))
    return Listing(cache=cache, models=tuple(models), problems=tuple(problems), seconds=time.perf_counter() - started,
                   stamp=stamp)


def _size(snapshot: Path) -> int:
    total = 0
    try:
        for e in os.scandir(snapshot):
            try:
                total += os.stat(e.path).st_size
            except OSError:
                continue
    except OSError:
        pass
    return total


# the listing, kept and bounded ----------------------------------------------------------------------------------

_LOCK = threading.Lock()
_KEPT: dict[Path, tuple[float, Listing]] = {}  # cache -> (when scanned, listing)
_SCANS: dict[Path, threading.Thread] = {}


def import_hub_modules() -> None:
    """Import what the background threads use, in the caller's thread: two threads importing the same modules can see
    each other's half-imported modules (transformers imports huggingface_hub too)."""
    import huggingface_hub._snapshot_download  # noqa: F401
    import huggingface_hub.file_download  # noqa: F401
    import huggingface_hub.utils._cache_manager  # noqa: F401
    import tqdm  # noqa: F401


def listing(cache: Path | None = None, wait: float = SCAN_WAIT) -> Listing:
    """The cache's listing, kept: scanned again in a background thread when SCAN_TTL seconds have passed (the kept one
    is returned meanwhile), when a repository folder appears or once transformers is loaded (then family problems
    are checked too); a caller waits for those at most ``wait`` seconds, then gets the kept listing (or an empty one
    that says the scan is still running), so a slow or huge cache never holds up the page."""
    cache = Path(cache or hub_cache())
    with _LOCK:
        kept = _KEPT.get(cache)
        current = kept is not None and kept[1].stamp == _stamp(cache) and (kept[1].families or
                                                                          REGISTRY not in sys.modules)
        if current and time.monotonic() - kept[0] < SCAN_TTL:
            return kept[1]
        thread = _SCANS.get(cache)
        if thread is None or not thread.is_alive():
            import_hub_modules()
            thread = threading.Thread(target=_scan_into_kept, args=(cache,), name="hub-cache-scan", daemon=True)
            _SCANS[cache] = thread
            thread.start()
    if current:  # only old: refreshed in the background, the kept one serves meanwhile
        return kept[1]
    thread.join(wait)
    with _LOCK:
        kept = _KEPT.get(cache)
    if kept is not None:
        return kept[1]
    return Listing(cache=cache, problems=("the Hugging Face cache is still being scanned",), done=False)


def _scan_into_kept(cache: Path) -> None:
    try:
        result = scan(cache)
    except Exception as e:  # never leave a caller without a listing
        result = Listing(cache=cache, problems=(f"the cache scan failed ({type(e).__name__}: {str(e)[:160]})",))
    with _LOCK:
        _KEPT[cache] = (time.monotonic(), result)


def forget_listings() -> None:
    """Drop every kept listing (after a download, and in tests)."""
    with _LOCK:
        _KEPT.clear()


def suggestions(repo_id: str, found: Listing) -> tuple[str, ...]:
    """Cached model names close to a typed id (a typo, another case, a missing organisation; the revisions cached
    when the repository is but the revision is not): "did you mean"."""
    same = [m.name for m in found.models if m.ref.repo_id == repo_id]
    if same:
        return tuple(same[:3])
    names = sorted({m.ref.repo_id for m in found.models})
    lower = {n.lower(): n for n in names}
    exact = [lower[repo_id.lower()]] if repo_id.lower() in lower and lower[repo_id.lower()] != repo_id else []
    tail = [n for n in names if n.split("/")[-1].lower() == repo_id.split("/")[-1].lower() and n != repo_id]
    close = difflib.get_close_matches(repo_id, names, n=3, cutoff=0.75)
    return tuple(dict.fromkeys(exact + tail + close))[:3]


__all__ = ["CachedModel", "Listing", "MODEL_FILES", "NotCached", "cache_enabled", "find_snapshot", "forget_listings",
           "hub_cache", "listing", "missing_files", "opening_problem", "scan", "snapshot_ref", "suggestions"]
