"""Downloading a model into the Hugging Face cache, only when allowed (INSPECTOR_ALLOW_DOWNLOAD=1 or the command's
``--allow-download``; never under INSPECTOR_PUBLIC=1), through huggingface_hub itself (its endpoint, HF_ENDPOINT,
and its token).

Before any file is fetched, the hub's own listing (``model_info(files_metadata=True)``) says which files there are
and how big: only config, tokenizer and safetensors files are asked for (never ``.bin``, ``.pt``, pickles or code),
and their size is checked against INSPECTOR_MAX_MODEL_MB and the free disk. config.json comes first: a model that
needs remote code, or a family transformers does not know, is refused before its weights. A download runs as work
that can be stopped (``DownloadJob.stop``, Ctrl-C): huggingface_hub writes each file to a temporary name and moves
it into place only when complete, so a stopped or broken download leaves no half-written file, and the next try
fetches what is missing.
"""

from __future__ import annotations

import collections
import io
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..safe.errors import CheckpointError
from ..safe.files import read_json_file
from ..safe.memory import check_model_bytes
from .cache import (
    CONFIG,
    INDEX,
    PICKLED,
    SMALL_FILES,
    TOKENIZER,
    WEIGHTS,
    family_problem,
    find_snapshot,
    forget_listings,
    hub_cache,
    import_hub_modules,
    repo_folder,
)
from .ids import COMMIT, HubRef

SHARD = re.compile(r"model-\d{1,5}-of-\d{1,5}\.safetensors")
SPEED_WINDOW = 3.0  # seconds of transfer the speed is measured over
CHUNK_BYTES = 2**20  # huggingface_hub reports progress (and sees a stop) once per chunk received; default 10 MiB


class DownloadRefused(CheckpointError):
    """A download that is not started: not allowed here, not on the hub, or a model this app would not open."""


class DownloadFailed(CheckpointError):
    """A download that started and did not finish (the connection, the disk, or a stop); nothing half-written is
    kept."""


class DownloadStopped(DownloadFailed):
    """A download stopped on request (the Stop button, Ctrl-C)."""


def downloads_allowed(asked: bool = False) -> bool:
    """INSPECTOR_ALLOW_DOWNLOAD=1, or ``asked`` (``--allow-download``); never on a public server (INSPECTOR_PUBLIC=1),
    whatever else is set."""
    if settings.flag("INSPECTOR_PUBLIC"):
        return False
    return asked or settings.flag("INSPECTOR_ALLOW_DOWNLOAD")


def how_to_allow(ref: HubRef) -> str:
    """The sentence that says how to get a model the cache does not hold."""
    if settings.flag("INSPECTOR_PUBLIC"):
        return "this public server opens only the models it lists and never downloads"
    return (f"downloads are off: start the app with INSPECTOR_ALLOW_DOWNLOAD=1 (or `streamlit run app.py -- {ref.name} "
            f"--allow-download`), or fetch it first with `python -m model.hub get {ref.name} --allow-download`")


# what to fetch -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DownloadPlan:
    """What a download will fetch, read from the hub's listing before any file is: the commit, and each file still
    missing from the cache with its size (config and tokenizer first, then the weights)."""

    ref: HubRef
    commit: str
    small: tuple[tuple[str, int], ...]  # config and tokenizer files: (name, bytes)
    weights: tuple[tuple[str, int], ...]  # safetensors files (and their index)
    weights_bytes: int  # every weights file's size, cached or not: what the model takes in memory

    @property
    def files(self) -> tuple[tuple[str, int], ...]:
        return self.small + self.weights

    @property
    def total_bytes(self) -> int:
        """The bytes still to fetch."""
        return sum(size for _, size in self.files)


def _hub_error(ref: HubRef, e: BaseException) -> DownloadRefused:
    """huggingface_hub's exceptions -> one sentence for the person who typed ``ref``."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, OfflineModeIsEnabled):
        return DownloadRefused(f"{ref.name}: HF_HUB_OFFLINE is set in this environment, so huggingface_hub does not "
                               "reach the hub: unset it to download")
    if isinstance(e, GatedRepoError):
        return DownloadRefused(f"{ref.name} is gated on the hub: accept its terms there and log in (`hf auth login` "
                               "or HF_TOKEN) to download it")
    if isinstance(e, RepositoryNotFoundError):
        return DownloadRefused(f"the hub ({constants.ENDPOINT}) has no model “{ref.repo_id}” (or it is private: log in "
                               "with `hf auth login` or set HF_TOKEN)")
    if isinstance(e, RevisionNotFoundError):
        return DownloadRefused(f"{ref.repo_id} has no revision “{ref.wanted}” on the hub")
    if isinstance(e, HfHubHTTPError):
        return DownloadRefused(f"{ref.name}: the hub answered {str(e).splitlines()[0][:200]}")
    return DownloadRefused(f"{ref.name}: the hub at {constants.ENDPOINT} cannot be reached ({type(e).__name__}: "
                           f"{str(e)[:200]})")


def plan_download(ref: HubRef, cache: Path | None = None) -> DownloadPlan:
    """Ask the hub which files ``ref`` has (one request, no file fetched) and decide what to fetch; DownloadRefused
    for a model with no safetensors weights, config.json or tokenizer.json, and for weights over the memory budget
    or the free disk."""
    from huggingface_hub import HfApi

    if not downloads_allowed(asked=True):  # a public server never reaches the hub, whatever the caller asked
        raise DownloadRefused(f"{ref.name}: {how_to_allow(ref)}")
    cache = cache or hub_cache()
    try:
        info = HfApi().model_info(ref.repo_id, revision=ref.wanted, files_metadata=True)
    except Exception as e:  # every failure of the request is one of the hub's answers or the network's
        raise _hub_error(ref, e) from None
    commit = str(info.sha or "")
    if not COMMIT.fullmatch(commit):
        raise DownloadRefused(f"{ref.name}: the hub's answer names no commit")
    sizes = {s.rfilename: s.size for s in info.siblings or [] if "/" not in s.rfilename}
    if CONFIG not in sizes:
        raise DownloadRefused(f"{ref.name} has no config.json on the hub: not a transformers model")
    if WEIGHTS in sizes:
        weights = [WEIGHTS]
    elif INDEX in sizes:
        weights = [INDEX] + sorted(n for n in sizes if SHARD.fullmatch(n))
    else:
        pickled = [n for n in PICKLED if n in sizes]
        raise DownloadRefused(f"{ref.name} has no safetensors weights on the hub" + (
            f", only {pickled[0]} (pickled: loading it would run code from the file, which this app never does)"
            if pickled else ""))
    if TOKENIZER not in sizes:
        raise DownloadRefused(f"{ref.name} has no tokenizer.json on the hub (this app reads the fast-tokenizer file)")
    unknown = [n for n in [*SMALL_FILES, *weights] if n in sizes and not isinstance(sizes[n], int)]
    if unknown:
        raise DownloadRefused(f"{ref.name}: the hub does not say how big {unknown[0]} is; nothing was downloaded")
    weights_bytes = sum(sizes[n] for n in weights)
    try:
        check_model_bytes(weights_bytes, ref.name, f"the weights to download ({len(weights)} files)")
    except CheckpointError as e:
        raise DownloadRefused(f"{e}; nothing was downloaded") from None
    snapshot = repo_folder(cache, ref.repo_id) / "snapshots" / commit

    def missing(names) -> tuple[tuple[str, int], ...]:
        return tuple((n, sizes[n]) for n in names if n in sizes and not (snapshot / n).is_file())

    plan = DownloadPlan(ref=ref, commit=commit, small=missing(SMALL_FILES), weights=missing(weights),
                        weights_bytes=weights_bytes)
    free = _free_bytes(cache)
    if free is not None and plan.total_bytes > free:
        raise DownloadRefused(f"{ref.name}: {plan.total_bytes / 2**30:,.2f} GiB to download, {free / 2**30:,.2f} GiB "
                              f"free where the cache is ({cache}); nothing was downloaded")
    return plan


def _free_bytes(cache: Path) -> int | None:
    for place in (cache, *cache.parents):
        try:
            return shutil.disk_usage(place).free
        except OSError:
            continue
    return None


# fetching ------------------------------------------------------------------------------------------------------

class Counter:
    """Bytes fetched so far and the recent speed, fed by the progress bars huggingface_hub drives; asks the
    download to stop (from any thread) with ``stop``."""

    def __init__(self, total: int):
        self.total = total
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._stage_base = 0  # bytes of the stages already finished
        self._bars: dict[int, int] = {}  # this stage's byte bars: id -> bytes (huggingface_hub counts a file twice)
        self._samples: collections.deque = collections.deque()
        self.started = time.monotonic()

    @property
    def done(self) -> int:
        with self._lock:
            return self._stage_base + max(self._bars.values(), default=0)

    def next_stage(self) -> None:
        with self._lock:
            self._stage_base += max(self._bars.values(), default=0)
            self._bars.clear()

    def saw(self, bar: int, n: int) -> None:
        with self._lock:
            self._bars[bar] = n
            now = time.monotonic()
            self._samples.append((now, self._stage_base + max(self._bars.values())))
            while len(self._samples) > 1 and now - self._samples[1][0] > SPEED_WINDOW:
                self._samples.popleft()  # keep one sample from before the window: the speed is measured across it

    def speed(self) -> float:
        """Bytes per second over about the last SPEED_WINDOW seconds, up to now (a stall lowers it; 0 at first)."""
        with self._lock:
            now = time.monotonic()
            t0, b0 = (self.started, 0)
            for t, b in self._samples:
                if now - t >= SPEED_WINDOW:
                    t0, b0 = t, b
            done = self._samples[-1][1] if self._samples else 0
            return (done - b0) / (now - t0) if now - t0 > 0.5 and done > b0 else 0.0


def _bar_class(counter: Counter) -> type:
    """A tqdm class for huggingface_hub's ``tqdm_class``: it draws nothing, reports bytes to ``counter``, and stops
    the download (at the next chunk a worker receives) once the counter is asked to."""
    from tqdm import tqdm

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=io.StringIO(), disable=False, mininterval=3600)
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if counter.stopping.is_set():
                raise DownloadStopped("stopped")
            out = super().update(n)
            if self.unit == "B":
                counter.saw(id(self), int(self.n))
            return out

    return Bar


def fetch(plan: DownloadPlan, counter: Counter | None = None, cache: Path | None = None) -> Path:
    """Fetch what ``plan`` lists into the cache (huggingface_hub's ``snapshot_download``, pinned to the plan's
    commit): config and tokenizer first (a model with code of its own or an unknown family is refused before its
    weights), then the weights; then the branch or tag is recorded and the snapshot returned, checked complete.
    DownloadFailed (or DownloadStopped) when it does not finish; DownloadRefused for a model refused on its
    config."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.file_download import _cache_commit_hash_for_specific_revision

    constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, CHUNK_BYTES)  # a bar that moves, a prompt stop
    cache = cache or hub_cache()
    counter = counter or Counter(plan.total_bytes)
    ref = plan.ref
    bar = _bar_class(counter)

    def stage(names: list[str]) -> None:
        if not names:
            return
        try:
            snapshot_download(ref.repo_id, revision=plan.commit, cache_dir=cache, allow_patterns=names,
                              tqdm_class=bar, max_workers=4)
        except DownloadStopped:
            raise DownloadStopped(f"the download of {ref.name} was stopped: nothing half-written was kept, and the "
                                  "files that had finished stay in the cache for the next try") from None
        except KeyboardInterrupt:
            raise
        except Exception as e:  # the network, the disk, the hub: one message; the cache as huggingface_hub left it
            raise DownloadFailed(f"the download of {ref.name} did not finish ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:240] if str(e) else 'no detail'}); nothing half-written "
                                 "was kept: try again to fetch what is missing") from None
        counter.next_stage()

    snapshot = repo_folder(cache, ref.repo_id) / "snapshots" / plan.commit
    stage([n for n, _ in plan.small])
    try:
        config = read_json_file(snapshot / CONFIG)
    except CheckpointError as e:
        raise DownloadRefused(f"{ref.name}: {e}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    problem = "config.json names no model_type" if not isinstance(model_type, str) else \
        family_problem(model_type, config, load=False)  # exact when transformers is loaded (the loader checks later)
    if problem:
        raise DownloadRefused(f"{ref.name}: {problem}; its weights were not downloaded")
    stage([n for n, _ in plan.weights])
    if ref.revision is None or not COMMIT.fullmatch(ref.revision):  # a branch or tag: record where it points
        _cache_commit_hash_for_specific_revision(str(repo_folder(cache, ref.repo_id)), ref.wanted, plan.commit)
    forget_listings()
    return find_snapshot(ref if ref.revision is None or not COMMIT.fullmatch(ref.revision) else
                         HubRef(ref.repo_id, plan.commit), cache)


# stoppable work ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DownloadState:
    """Where a download stands, for a progress bar."""

    name: str
    status: str  # "downloading", "done", "failed", "stopped"
    done: int  # bytes fetched
    total: int  # bytes to fetch
    speed: float  # bytes per second, recently
    seconds: float
    message: str = ""  # why it failed or stopped
    path: str | None = None  # the snapshot, once done

    @property
    def running(self) -> bool:
        return self.status == "downloading"

    def line(self) -> str:
        """ "45.1 MB of 90.9 MB · 12.3 MB/s · about 4 s left" """
        text = f"{_mb(self.done)} of {_mb(self.total)}"
        if self.running and self.speed > 0:
            left = (self.total - self.done) / self.speed
            text += f" · {_mb(self.speed)}/s · about {left:,.0f} s left"
        elif self.seconds > 0 and self.done:
            text += f" in {self.seconds:,.1f} s ({_mb(self.done / self.seconds)}/s)"
        return text


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


class DownloadJob:
    """One download running in a thread of its own: ``state()`` for progress, ``stop()`` to stop it."""

    def __init__(self, plan: DownloadPlan, cache: Path | None = None):
        self.plan, self.cache = plan, cache
        self.counter = Counter(plan.total_bytes)
        self._status, self._path, self._ended = "downloading", None, None
        self.error: CheckpointError | None = None  # why it did not finish
        self._thread = threading.Thread(target=self._run, name=f"download {plan.ref.name}", daemon=True)

    def start(self) -> DownloadJob:
        import_hub_modules()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._path = str(fetch(self.plan, self.counter, self.cache))
            self._status = "done"
        except DownloadStopped as e:
            self._status, self.error = "stopped", e
        except CheckpointError as e:
            self._status, self.error = "failed", e
        except BaseException as e:  # a bug must not leave the page waiting for ever
            self._status, self.error = "failed", DownloadFailed(f"{type(e).__name__}: {str(e)[:300]}")
        finally:
            self._ended = time.monotonic()

    def stop(self) -> None:
        self.counter.stopping.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def state(self) -> DownloadState:
        end = self._ended or time.monotonic()
        return DownloadState(name=self.plan.ref.name, status=self._status, done=self.counter.done,
                             total=self.plan.total_bytes, speed=self.counter.speed(),
                             seconds=end - self.counter.started, message=str(self.error or ""), path=self._path)


_JOBS: dict[tuple[str, str], DownloadJob] = {}
_JOBS_LOCK = threading.Lock()


def current_job(ref: HubRef, cache: Path | None = None) -> DownloadJob | None:
    """The download of ``ref`` this process started last (running or ended), if any."""
    with _JOBS_LOCK:
        return _JOBS.get((str(cache or hub_cache()), ref.name))


def start_job(plan: DownloadPlan, cache: Path | None = None) -> DownloadJob:
    """Start downloading ``plan`` in the background, unless the same model is being downloaded already (then that
    job): one download per model per process, whoever asks."""
    key = (str(cache or hub_cache()), plan.ref.name)
    with _JOBS_LOCK:
        job = _JOBS.get(key)
        if job is None or not job.state().running:
            job = _JOBS[key] = DownloadJob(plan, cache).start()
        return job


def download(ref: HubRef, cache: Path | None = None, progress: bool = True,
             on_state: Callable[[DownloadState], None] | None = None) -> Path:
    """Plan and fetch ``ref`` in the foreground, for the commands and the Python API: a progress bar on stderr
    (bytes and speed), Ctrl-C stops it cleanly (DownloadStopped). Assumes the caller checked that downloads are
    allowed (plan_download checks the public server again)."""
    from tqdm import tqdm

    plan = plan_download(ref, cache)
    import transformers.models.auto.configuration_auto  # noqa: F401  (here, not in the job's thread: exact families)

    job = DownloadJob(plan, cache).start()
    with tqdm(total=plan.total_bytes, unit="B", unit_scale=True, desc=f"downloading {ref.name}", disable=not progress,
              file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        try:
            while not job.wait(0.2):
                state = job.state()
                bar.update(state.done - bar.n)
                if on_state is not None:
                    on_state(state)
        except KeyboardInterrupt:
            job.stop()
            job.wait()
            raise DownloadStopped(f"the download of {ref.name} was stopped (Ctrl-C): nothing half-written was kept, "
                                  "and the same command fetches what is missing") from None
        state = job.state()
        bar.update(state.done - bar.n)
    if state.status != "done" or state.path is None:
        raise job.error or DownloadFailed(f"the download of {ref.name} did not finish")
    if progress:
        print(f"downloaded {ref.name}: {state.line()} into {state.path}", file=sys.stderr)
    return Path(state.path)


__all__ = ["DownloadFailed", "DownloadJob", "DownloadPlan", "DownloadRefused", "DownloadState", "DownloadStopped",
           "current_job", "download", "downloads_allowed", "fetch", "how_to_allow", "plan_download", "start_job"]
