"""Long work as jobs (issue 32, item 2): a queue with places, at most N at once, one per session on a public server,
a time limit, stopped between runs of the model (its Stop button, its session gone) with its finished part kept,
on a lane of its own (interactive work never waits behind it); the analyses report progress and partial results;
the page shows the cost first, then progress and Stop. The fairness figure is benchmarks/bench_load.py --fairness."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import clear_app_caches, wait_for_jobs
from streamlit.testing.v1 import AppTest

from model import load
from model.analysis import logit_lens, patch_each_position, patch_heads, rank_heads, rerun, run_corrupt
from model.jobs import JOB_NICE, Estimate, JobRefused, JobRunner
from model.runtime import on_worker

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SHIPPED = ROOT / "checkpoints"
SOURCE, OTHER = "Saturday, November 21, 2026", "Saturday, November 21, 1999"
EST = Estimate(3, 0.01)


def settle(job, timeout: float = 300) -> None:
    """Until the job is over (``timeout`` only guards against a hang)."""
    deadline = time.monotonic() + timeout
    while not job.over and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.over, job


def until(condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def gated(gate: threading.Event, steps: int = 3):
    """Work of ``steps`` steps, each waiting for ``gate``; its partial result is the steps done."""
    def work(job):
        for i in range(steps):
            gate.wait()
            job.step(i + 1, partial=i + 1)
        return "all done"
    return work


# the runner ---------------------------------------------------------------------------------------------------------

def test_at_most_n_jobs_run_at_once_and_the_others_know_their_place():
    runner, gate = JobRunner(1), threading.Event()
    a = runner.submit("s1", "a", gated(gate), EST)
    b = runner.submit("s2", "b", gated(gate), EST)
    c = runner.submit("s3", "c", gated(gate), EST)
    until(lambda: a.status == "running")
    assert runner.running() == [a] and runner.position(b) == 1 and runner.position(c) == 2 and runner.queued() == 2
    gate.set()
    for job in (a, b, c):
        settle(job)
        assert job.status == "done" and job.result == "all done" and job.fraction == 1.0
    assert a.finished <= b.started and b.finished <= c.started  # first come, first served


def test_one_job_per_owner_when_asked():
    runner, gate = JobRunner(2), threading.Event()
    first = runner.submit("s", "first", gated(gate), EST, per_owner=1)
    with pytest.raises(JobRefused, match="already runs 1 job"):
        runner.submit("s", "second", gated(gate), EST, per_owner=1)
    other = runner.submit("t", "another session's", gated(gate), EST, per_owner=1)  # others are not held back
    gate.set()
    settle(first)
    settle(other)
    settle(runner.submit("s", "after the first", gated(gate), EST, per_owner=1))


def test_stop_between_steps_keeps_the_finished_part():
    runner = JobRunner(1)
    stepped, go_on = threading.Event(), threading.Event()

    def work(job):
        job.step(1, partial="first step's part")
        stepped.set()
        go_on.wait()
        job.step(2, partial="second")  # stopped here
        return "never"

    job = runner.submit("s", "w", work, EST)
    stepped.wait(300)
    runner.cancel(job, "stopped with its Stop button")
    go_on.set()
    settle(job)
    assert job.status == "stopped" and job.reason == "stopped with its Stop button" and job.result is None
    assert job.done == 2 and job.partial == "second"  # the part finished before the step that stopped it


def test_a_queued_job_stopped_never_runs():
    runner, gate = JobRunner(1), threading.Event()
    running = runner.submit("s", "a", gated(gate), EST)
    ran = []
    waiting = runner.submit("t", "b", lambda job: ran.append(1), EST)
    runner.cancel(waiting)
    assert waiting.status == "stopped" and runner.position(waiting) is None
    gate.set()
    settle(running)
    runner.submit("u", "c", lambda job: None, EST)  # the worker's turns go on
    until(lambda: runner.queued() == 0 and not runner.running())
    assert not ran


def test_a_job_whose_session_ended_or_whose_time_is_up_stops_at_its_next_step():
    runner = JobRunner(1)
    alive = [True]

    def work(job):
        job.step(1, partial="one")
        alive[0] = False  # the tab is closed
        job.step(2, partial="two")
        return "never"

    gone = runner.submit("s", "w", work, EST, alive=lambda: alive[0])
    settle(gone)
    assert gone.status == "stopped" and gone.reason == "its session ended" and gone.partial == "two"
    late = runner.submit("s", "w", lambda job: job.step(1), EST, max_seconds=0.0)
    settle(late)
    assert late.status == "stopped" and "INSPECTOR_MAX_JOB_SECONDS" in late.reason
    # the next submission drops the finished job nobody can collect (its partial result held for no one)
    settle(runner.submit("t", "w", lambda job: "done", EST))
    assert runner.get(gone.id) is None and runner.get(late.id) is late


def test_a_failing_job_says_why_and_the_worker_goes_on():
    runner = JobRunner(1)
    bad = runner.submit("s", "bad", lambda job: 1 / 0, EST)
    settle(bad)
    assert bad.status == "failed" and "ZeroDivisionError" in bad.reason
    good = runner.submit("s", "good", lambda job: 42, EST)
    settle(good)
    assert good.result == 42


def test_jobs_run_on_their_own_lane_and_interactive_work_never_waits_behind_them(monkeypatch):
    """Every forward of a job runs on a job worker (one torch thread, a lower CPU priority); with every job worker
    held, an interactive call still runs, on the small or big lane."""
    dates = load(SHIPPED / "dates", "cpu")
    runner, gate = JobRunner(2), threading.Event()
    seen = []
    real_forward = type(dates).forward

    def spy(self, *args, **kwargs):
        worker = on_worker()
        seen.append((worker.name, torch.get_num_threads(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
                     if hasattr(os, "getpriority") else None))
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(type(dates), "forward", spy)
    job = runner.submit("s", "a forward", lambda job: dates.run(SOURCE).output_text, EST)
    settle(job)
    assert job.status == "done" and seen and all(name == "jobs" and threads == 1 for name, threads, _ in seen)
    if platform.system() == "Linux":
        assert {nice for _, _, nice in seen} == {JOB_NICE}
    held = [runner.submit(f"s{i}", "held", gated(gate), EST) for i in range(3)]
    until(lambda: len(runner.running()) == 2)  # every job worker taken, one more waiting
    seen.clear()
    done = []
    t = threading.Thread(target=lambda: done.append(dates.run(SOURCE).output_text))
    t.start()
    t.join(300)
    gate.set()
    for h in held:
        settle(h)
    assert done == [job.result] and seen and all(name in ("small", "big") for name, _, _ in seen)


# the analyses' progress and their finished part ---------------------------------------------------------------------

class Stop(Exception):
    pass


def stop_after(n_calls: int, kept: list):
    """A progress callback that keeps each partial result and stops the work at its ``n_calls``-th call."""
    calls = [0]

    def progress(done, partial):
        calls[0] += 1
        kept.append((done, partial))
        if calls[0] >= n_calls:
            raise Stop
    return progress


@pytest.fixture(scope="module")
def runs():
    dates = load(SHIPPED / "dates", "cpu")
    base = dates.run(SOURCE)
    clean = rerun(dates, base, SOURCE, capture=False, keep_contexts=True)
    return dates, base, clean, run_corrupt(dates, clean, OTHER)


def test_patching_stopped_after_one_attention_keeps_its_heads(runs):
    dates, _, clean, corrupt = runs
    full = patch_heads(dates, clean, corrupt)
    kept: list = []
    with pytest.raises(Stop):
        patch_heads(dates, clean, corrupt, progress=stop_after(2, kept))  # a pass, then the first attention
    done, part = kept[-1]
    assert done == dates.info.n_heads + 1 and part is not None and not part.complete and full.complete
    first = next(k for k, e in part.effect.items() if np.isfinite(e).any())
    rows = np.isfinite(part.effect[first]).all(1)
    assert rows.sum() == 1 and sum(np.isfinite(e).any(1).sum() for e in part.effect.values()) == 1
    np.testing.assert_allclose(part.effect[first][rows], full.effect[first][rows], atol=1e-6)
    assert part.n_runs == dates.info.n_heads and np.isfinite(part.scale)


def test_ranking_positions_and_lens_report_their_finished_part(runs):
    dates, base, clean, corrupt = runs
    kept: list = []
    with pytest.raises(Stop):
        rank_heads(dates, base, "zero", progress=stop_after(1, kept))
    done, (table, _) = kept[-1]
    assert done == len(table) == dates.info.n_heads and table["attention"].nunique() == 1
    name = "decoder.1.cross_attn"
    full = patch_each_position(dates, clean, corrupt, name, 3)
    kept = []
    patch_each_position(dates, clean, corrupt, name, 3, budget=1, progress=lambda d, p: kept.append((d, p)))
    done, part = kept[1]  # one position per pass: the reference, then position 0
    assert done == 2 and np.isfinite(part.effect[:1]).all() and np.isnan(part.effect[1:]).all()
    np.testing.assert_allclose(part.effect[0], full.effect[0], atol=1e-9)
    assert kept[-1][0] == len(full.effect) + 1
    induction = load(SHIPPED / "induction", "cpu")
    words = "red fox blue owl red fox blue owl"
    hidden = induction.run(words, capture=False, hidden_states=True)
    kept = []
    with pytest.raises(Stop):
        logit_lens(induction, hidden, progress=stop_after(1, kept))
    done, lens = kept[-1]
    assert done == 1 and np.isfinite(lens.token_log_probs[0]).all() and np.isnan(lens.token_log_probs[1:]).all()
    np.testing.assert_allclose(lens.token_log_probs[0], logit_lens(induction, hidden).token_log_probs[0])


# the page -------------------------------------------------------------------------------------------------------------

@pytest.fixture
def app(monkeypatch):
    """The shipped checkpoints, local use; every piece of long work a job (the threshold lowered to 0)."""
    import ui.jobs

    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    for name in ("INSPECTOR_MODELS", "INSPECTOR_PUBLIC", "INSPECTOR_ALLOWED_ROOTS", "INSPECTOR_MAX_JOB_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ui.jobs, "JOB_FLOPS", 0)
    clear_app_caches()
    yield
    clear_app_caches()


def page(view: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["view"] = view
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def text_of(at) -> str:
    parts = list(at.markdown) + list(at.caption) + list(at.warning) + list(at.info)
    return " ".join(p.value for p in parts).replace("\\", "").replace("\u2068", "").replace("\u2069", "")


def held_patching(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Patching that, once its first attention is done (and reported), holds until ``gate`` is set: -> (holding,
    gate). The page sees it running, and a Stop arrives after a finished part, whatever the machine's speed."""
    import ui.views.patching

    holding, gate = threading.Event(), threading.Event()
    real = ui.views.patching.patch_heads

    def slow(*args, progress=None, **kwargs):
        def held(done, partial):
            progress(done, partial)
            if partial is not None and not holding.is_set():
                holding.set()
                gate.wait()
        return real(*args, progress=held, **kwargs)

    monkeypatch.setattr(ui.views.patching, "patch_heads", slow)
    return holding, gate


def test_the_page_shows_the_cost_then_progress_and_stop_then_the_finished_part(app, monkeypatch):
    holding, gate = held_patching(monkeypatch)
    at = page("Patching", patch_source=OTHER)
    assert not at.exception
    assert "25 runs of the model × about" in text_of(at) and "runs as a job" in text_of(at)
    at.button(key="patch_run").click().run()
    assert holding.wait(300)
    at.run()
    assert not at.exception and at.get("progress") and "Stop" in [b.label for b in at.button]
    stop = next(b for b in at.button if b.label == "Stop")
    stop.click().run()
    gate.set()
    wait_for_jobs(at)
    assert not at.exception
    text = text_of(at)
    assert "stopped with its Stop button" in text and "Shown: the part it finished" in text
    assert "The heads not patched yet are blank" in text
    assert "Patch all 24 heads again" in [b.label for b in at.button]
    at.button(key="patch_run").click().run()  # again, to the end
    wait_for_jobs(at)
    assert not at.exception and "One colour scale for every kind" in text_of(at)
    assert "blank" not in text_of(at)


def test_a_public_server_runs_one_job_per_session(app, monkeypatch):
    _, gate = held_patching(monkeypatch)
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    at = page("Patching", patch_source=OTHER)
    at.button(key="patch_run").click().run()
    assert not at.exception and at.get("progress")
    at.session_state["view"] = "Ablation"
    at.run()
    at.button(key="rank_heads").click().run()
    assert not at.exception and "already runs 1 job" in " ".join(w.value for w in at.warning).replace("\\", "")
    gate.set()
    at.session_state["view"] = "Patching"
    wait_for_jobs(at)
    assert not at.exception


def test_a_job_stops_when_its_session_ends(monkeypatch):
    """The session's liveness comes from Streamlit's runtime (a closed tab is no longer an active session)."""
    import streamlit.runtime as runtime

    from ui.jobs import session_alive

    class Fake:
        active = {"open"}

        def is_active_session(self, session_id):
            return session_id in self.active

    monkeypatch.setattr(runtime.Runtime, "exists", classmethod(lambda cls: True))
    monkeypatch.setattr(runtime.Runtime, "instance", classmethod(lambda cls: Fake()))
    assert session_alive("open")() and not session_alive("closed")()
    runner = JobRunner(1)
    job = runner.submit("closed", "w", lambda job: job.step(1), EST, alive=session_alive("closed"))
    settle(job)
    assert job.status == "stopped" and job.reason == "its session ended"
