"""Long work as jobs in the page (model/jobs.py): what it will cost, shown before it starts (runs of the model x
seconds each); once started, a progress bar with its place in the queue and a Stop button (a fragment polls the job
every POLL_SECONDS, so the rest of the page stays as it is); then its result, or the part it finished when it was
stopped. A job runs on the job lane, never the lanes interactive work uses, and stops at its next step once its
session has ended (the tab closed: Streamlit's runtime no longer lists the session).

Under INSPECTOR_PUBLIC=1 a session runs one job at a time, and each job stops at INSPECTOR_MAX_JOB_SECONDS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from model import settings
from model.jobs import Estimate, Job, JobRefused, max_job_seconds, runner

from .text import md, short

POLL_SECONDS = 2.0  # how often a running job's progress is drawn again (each time a small rerun of the page)
JOB_FLOPS = 1e11  # work of more operations than this is a job; less runs at once, on its click (a model's small inputs)
JOBS = "_jobs"  # session key: {job key: job id}
STOPPED = "_jobs_stopped"  # session key: {job key: (the finished part, what happened)}


@dataclass(frozen=True)
class Outcome:
    """Where a job of the page stands: ``status`` "none" (not started), "queued", "running", "done", "stopped" or
    "failed"; ``value``: its result when done, the part it finished when stopped (None: nothing finished)."""

    status: str
    value: Any = None
    note: str = ""  # what happened, in words, for a stopped or failed job


def session_id() -> str:
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "no-session"


def session_alive(session: str) -> Callable[[], bool]:
    """Whether the session ``session`` is still connected (the tab open); always True without a server (AppTest)."""
    def alive() -> bool:
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return True
        return Runtime.instance().is_active_session(session)
    return alive


def job_key(key) -> str:
    return repr(key)


def run_flops(pipe, result, runs: int) -> float:
    """About the operations of ``runs`` runs of the model on ``result``'s input (2 x parameters x tokens each)."""
    tokens = sum(len(e.ids) for e in (result.source, result.target) if e is not None)
    return 2.0 * pipe.info.parameters * tokens * runs


def run_or_job(key, title: str, work: Callable[[Job], Any], estimate: Estimate, *, flops: float, start: str,
               button_key: str) -> Outcome:
    """Work of more than JOB_FLOPS operations as a job (``run_as_job``); less at once when its ``start`` button is
    clicked (a spinner, as any view: no job to wait for)."""
    if flops > JOB_FLOPS:
        return run_as_job(key, title, work, estimate, start=start, button_key=button_key)
    if not st.button(start, key=button_key, type="primary"):
        return Outcome("none")
    with st.spinner(f"{title}…"):
        return Outcome("done", work(Job(id="inline", owner=session_id(), title=title, estimate=estimate, work=work)))


def run_as_job(key, title: str, work: Callable[[Job], Any], estimate: Estimate, *, start: str,
               button_key: str) -> Outcome:
    """The job ``key`` of this session: not started (its cost and a ``start`` button), queued or running (progress,
    place, Stop), or over (its result, or its finished part). ``work(job)`` computes the result, calling
    ``job.step(done, partial)`` between runs of the model."""
    k = job_key(key)
    jobs = st.session_state.setdefault(JOBS, {})
    stopped = st.session_state.setdefault(STOPPED, {})
    job = runner().get(jobs[k]) if k in jobs else None
    if job is not None and job.over:
        outcome = _collect(k, job)
        if outcome.status == "done":
            return outcome
        job = None
    if job is None and k in stopped:  # stopped before: its finished part, and the way to start it again
        value, note = stopped[k]
        if not st.button(f"{start} again", key=button_key):
            return Outcome("stopped", value, note)
        del stopped[k]
        return _start(k, title, work, estimate)
    if job is None:
        st.caption(f"{md(title)}: {md(estimate.describe())}. It runs as a job: a progress bar and a Stop button "
                   "follow, the rest of the page stays usable, and what it finished is kept if it is stopped.")
        if not st.button(start, key=button_key, type="primary"):
            return Outcome("none")
        return _start(k, title, work, estimate)
    _progress(job)
    return Outcome(job.status, job.partial)


def _start(k: str, title: str, work: Callable[[Job], Any], estimate: Estimate) -> Outcome:
    session = session_id()
    try:
        job = runner().submit(session, title, work, estimate, alive=session_alive(session),
                              max_seconds=max_job_seconds(),
                              per_owner=1 if settings.flag("INSPECTOR_PUBLIC") else None)
    except JobRefused as e:
        st.warning(md(short(e, 400)))
        return Outcome("none")
    st.session_state[JOBS][k] = job.id
    _progress(job)
    return Outcome(job.status, job.partial)


def _collect(k: str, job: Job) -> Outcome:
    """A finished job: its result (done), or its finished part kept in the session (stopped, failed)."""
    del st.session_state[JOBS][k]
    runner().forget(job)
    if job.status == "done":
        return Outcome("done", job.result)
    note = (f"Stopped after {job.done:,} of {job.total:,} {job.estimate.what} ({job.seconds:,.1f} s): {job.reason}"
            if job.status == "stopped" else f"Failed: {job.reason}")
    st.session_state[STOPPED][k] = (job.partial, note)
    return Outcome(job.status, job.partial, note)


def _progress(job: Job) -> None:
    """The job's progress, drawn again every POLL_SECONDS by a fragment; the page reruns when the job is over."""
    @st.fragment(run_every=POLL_SECONDS)
    def poll() -> None:
        if job.over:
            st.rerun()  # the whole page: the view shows the result (or the finished part)
        place = runner().position(job)
        if job.status == "queued" and place is not None:
            text = (f"{job.title}: waiting, number {place} in the queue ({runner().workers} job(s) run at once on "
                    "this server)")
        else:
            text = (f"{job.title}: {job.done:,} of {job.total:,} {job.estimate.what} in {job.seconds:,.0f} s "
                    f"(estimated {job.estimate.seconds:,.0f} s)")
        a, b = st.columns([5, 1])
        a.progress(job.fraction, text=text)
        if b.button("Stop", key=f"stop_{job.id}"):
            runner().cancel(job, "stopped with its Stop button")
            st.rerun()
    poll()


def stopped_note(outcome: Outcome) -> None:
    """What the page says above a stopped or failed job's finished part."""
    if outcome.status in ("stopped", "failed"):
        st.warning(md(short(outcome.note, 500)) + (" Shown: the part it finished." if outcome.value is not None else
                                                   " It finished nothing to show."))


def shown_value(outcome: Outcome, keep: Callable[[Any], Any] = lambda value: value) -> Any:
    """What a view shows of a job's outcome: its result, handed to ``keep`` (e.g. into the traced call's memo); the
    finished part of a stopped or failed job, with the note above it; None while nothing is there to show (not
    started, queued, running, or stopped before it finished anything)."""
    if outcome.status == "done":
        return keep(outcome.value)
    stopped_note(outcome)
    return outcome.value if outcome.status in ("stopped", "failed") else None


__all__ = ["JOBS", "JOB_FLOPS", "Outcome", "POLL_SECONDS", "run_as_job", "run_flops", "run_or_job", "session_alive",
           "session_id", "shown_value", "stopped_note"]
