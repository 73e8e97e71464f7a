"""Long work as jobs: patching every head, ranking heads by ablation, the logit lens of a long input. A job runs on a
worker of its own lane (never the small or big lane that interactive calls use), at a lower CPU priority, with its
cost known before it starts; it reports its progress between forwards, where it may be stopped (a Stop button, its
session gone, its time up) and keeps what it finished.

- ``Job``: one piece of work, its estimate (forwards x seconds each), its progress, its finished part and its result.
  The work calls ``job.step(done, partial)`` between forwards: that raises ``Cancelled`` once the job is stopped.
- ``JobRunner``: the server's jobs. At most ``workers`` run at once ($INSPECTOR_MAX_JOBS, default half the cores),
  the others wait in a queue
  (first come, first served) and know their place; an owner (a session) may be held to ``per_owner`` jobs at once;
  each job may be held to ``max_seconds``.

Nothing here knows Streamlit: ui/jobs.py draws a job (estimate, progress bar, Stop) and says when its session ends.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import settings
from .runtime import Lane, small_threads

JOB_NICE = 19  # job workers' CPU niceness (Linux threads), the lowest priority: a job gets what interactive work leaves
KEEP_FINISHED = 64  # finished jobs kept for their owners to collect (the oldest go first)
PUBLIC_MAX_SECONDS = 600.0  # a job's time limit under INSPECTOR_PUBLIC=1 when INSPECTOR_MAX_JOB_SECONDS is unset
STATES = ("queued", "running", "done", "stopped", "failed")


class Cancelled(Exception):
    """A job stopped between two steps: its Stop button, its session gone, or its time up (the message says which)."""


class JobRefused(ValueError):
    """A job that may not start now (its owner already has as many as it may); the message says why."""


@dataclass(frozen=True)
class Estimate:
    """What a job will cost: ``steps`` forwards (or passes) of about ``seconds_each`` seconds."""

    steps: int
    seconds_each: float
    what: str = "forwards"  # what a step is, in words

    @property
    def seconds(self) -> float:
        return self.steps * self.seconds_each

    def describe(self) -> str:
        """"145 forwards x about 0.30 s each: about 44 s"."""
        total = self.seconds
        when = f"{total:,.0f} s" if total < 120 else f"{total / 60:,.1f} min"
        return f"{self.steps:,} {self.what} × about {self.seconds_each:.2g} s each: about {when}"


@dataclass(eq=False)
class Job:
    """One piece of long work and where it stands (read by any thread; written by its worker and ``cancel``)."""

    id: str
    owner: str
    title: str
    estimate: Estimate
    work: Callable[[Job], Any]
    alive: Callable[[], bool] = lambda: True  # False once the owner (a session) has ended
    max_seconds: float | None = None
    status: str = "queued"
    done: int = 0  # steps finished
    partial: Any = None  # what the finished steps give (the work says, at each step)
    result: Any = None
    reason: str = ""  # why it stopped or failed
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def total(self) -> int:
        return self.estimate.steps

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def seconds(self) -> float:
        """Time running so far (or in all, once finished)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def over(self) -> bool:
        return self.status in ("done", "stopped", "failed")

    def cancel(self, reason: str = "stopped") -> None:
        """Ask the job to stop at its next step (a queued job never starts)."""
        if not self._stop.is_set():
            self.reason = self.reason or reason
            self._stop.set()

    def check(self) -> None:
        """Cancelled when the job should stop now: stopped, its owner gone, its time up."""
        if not self._stop.is_set():
            if not self.alive():
                self.cancel("its session ended")
            elif self.max_seconds is not None and self.seconds > self.max_seconds:
                self.cancel(f"it ran past its time limit of {self.max_seconds:,.0f} s (INSPECTOR_MAX_JOB_SECONDS)")
        if self._stop.is_set():
            raise Cancelled(self.reason)

    def step(self, done: int, partial: Any = None) -> None:
        """Between two forwards: ``done`` steps finished (``partial``: what they give); Cancelled to stop here."""
        self.done = int(done)
        if partial is not None:
            self.partial = partial
        self.check()


class JobRunner:
    """The server's jobs: ``workers`` run at once on the job lane (each worker's torch thread count set once, at a
    lower CPU priority), the rest wait in a first-come queue."""

    def __init__(self, workers: int, threads: int = 1, nice: int = JOB_NICE):
        self.workers = workers
        self.lane = Lane("jobs", workers, threads, nice=nice)
        self._lock = threading.Lock()
        self._queue: list[Job] = []
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._ids = itertools.count(1)

    def submit(self, owner: str, title: str, work: Callable[[Job], Any], estimate: Estimate, *,
               alive: Callable[[], bool] = lambda: True, max_seconds: float | None = None,
               per_owner: int | None = None) -> Job:
        """Queue ``work(job)`` -> the Job. JobRefused when ``owner`` already has ``per_owner`` jobs queued or
        running."""
        with self._lock:
            if per_owner is not None:
                mine = [j for j in self._jobs.values() if j.owner == owner and not j.over]
                if len(mine) >= per_owner:
                    raise JobRefused(f"this session already runs {len(mine)} job(s) (“{mine[0].title}”): on this "
                                     f"server a session runs {per_owner} at a time; stop it or wait for it")
            job = Job(id=f"job-{next(self._ids)}", owner=owner, title=title, estimate=estimate, work=work,
                      alive=alive, max_seconds=max_seconds)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._forget_finished()
        self.lane.submit(self._next)  # one worker's turn per job: it takes the first job still waiting
        return job

    def _next(self) -> None:
        with self._lock:
            job = self._queue.pop(0) if self._queue else None
        if job is None:
            return
        job.started = time.monotonic()
        job.status = "running"
        try:
            job.check()  # stopped while it waited, or its session gone
            job.result = job.work(job)
            job.done = job.total
            job.status = "done"
        except Cancelled:
            job.status = "stopped"
        except Exception as e:  # the work's own error: the job says it, the worker goes on
            job.reason = f"{type(e).__name__}: {e}"
            job.status = "failed"
        finally:
            job.finished = time.monotonic()

    def cancel(self, job: Job, reason: str = "stopped") -> None:
        """Stop a job: a queued one leaves the queue at once, a running one at its next step."""
        job.cancel(reason)
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
                job.status, job.finished = "stopped", time.monotonic()

    def position(self, job: Job) -> int | None:
        """A queued job's place in the queue (1 = next), else None."""
        with self._lock:
            return self._queue.index(job) + 1 if job in self._queue else None

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.status == "running"]

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def forget(self, job: Job) -> None:
        """A finished job its owner has collected."""
        with self._lock:
            if job.over:
                self._jobs.pop(job.id, None)

    def _forget_finished(self) -> None:
        """Drop the finished jobs nobody can collect any more (their session has ended: their partial results, a
        lens' hidden states, would be held for no one), then the oldest beyond KEEP_FINISHED."""
        for j in [j for j in self._jobs.values() if j.over and not _alive(j)]:
            del self._jobs[j.id]
        over = [j for j in self._jobs.values() if j.over]
        for j in over[: max(0, len(over) - KEEP_FINISHED)]:
            del self._jobs[j.id]


def _alive(job: Job) -> bool:
    """Whether a job's owner is still there (an owner check that fails counts as there: keep the job)."""
    try:
        return bool(job.alive())
    except Exception:  # noqa: BLE001 - the owner check is the caller's code; a job is never lost to it
        return True


def max_jobs() -> int:
    """$INSPECTOR_MAX_JOBS (default: half the cores, at least 1): jobs running at once on the whole server."""
    return settings.count("INSPECTOR_MAX_JOBS", max(1, (os.cpu_count() or 2) // 2))


def max_job_seconds() -> float | None:
    """$INSPECTOR_MAX_JOB_SECONDS; unset: no limit, or PUBLIC_MAX_SECONDS under INSPECTOR_PUBLIC=1."""
    limit = settings.seconds("INSPECTOR_MAX_JOB_SECONDS")
    if limit is None and settings.flag("INSPECTOR_PUBLIC"):
        return PUBLIC_MAX_SECONDS
    return limit


_RUNNER: list[JobRunner] = []
_runner_lock = threading.Lock()


def runner() -> JobRunner:
    """The server's job runner, started on first use ($INSPECTOR_MAX_JOBS workers, one torch thread each)."""
    with _runner_lock:
        if not _RUNNER:
            _RUNNER.append(JobRunner(max_jobs(), threads=small_threads()))
        return _RUNNER[0]


__all__ = ["Cancelled", "Estimate", "JOB_NICE", "Job", "JobRefused", "JobRunner", "PUBLIC_MAX_SECONDS", "STATES",
           "max_job_seconds", "max_jobs", "runner"]
