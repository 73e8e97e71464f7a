"""Test-wide settings and shared fixtures."""

from pathlib import Path

import pytest
import torch

from model import load

# The app computes with one intra-op thread (app.py, ATTN_TORCH_THREADS). Reference runs in the tests use the
# same, so that "the chart holds exactly the model's numbers" compares like with like: another thread count
# changes the summation order and the last float bits.
torch.set_num_threads(1)


def clear_app_caches() -> None:
    """Empty every cache the app shares between sessions (Streamlit's and the traced calls')."""
    import streamlit as st

    from ui.models import clear_models
    from ui.tracing import clear_cache

    st.cache_resource.clear()
    st.cache_data.clear()
    clear_cache()
    clear_models()


CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


@pytest.fixture
def shipped_app(monkeypatch):
    """The app on the shipped checkpoints only (no models directory), its shared caches empty before and after."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(CHECKPOINTS))
    monkeypatch.delenv("INSPECTOR_MODELS", raising=False)
    clear_app_caches()
    yield
    clear_app_caches()


@pytest.fixture(scope="module")
def dates():
    """The shipped dates model (one per test module)."""
    return load(CHECKPOINTS / "dates", "cpu")


@pytest.fixture(scope="module")
def induction():
    """The shipped induction model (one per test module)."""
    return load(CHECKPOINTS / "induction", "cpu")


def wait_for_jobs(at, timeout: float = 600):
    """Rerun ``at`` (an AppTest) once its session's jobs (ui/jobs.py) are over: a job runs in a worker thread, the page
    shows its result at the next run. ``timeout`` only guards against a hung job."""
    import time

    from model.jobs import runner

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = at.session_state["_jobs"].values() if "_jobs" in at.session_state else ()
        jobs = [runner().get(i) for i in ids]
        if not any(j is not None and not j.over for j in jobs):
            break
        time.sleep(0.05)
    return at.run()
