"""Test-wide settings and shared fixtures."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests import fake_hub as _fake_hub

# The Hugging Face side of the tests never leaves this machine and never sees the developer's own cache or token:
# huggingface_hub reads these once, when first imported (nothing has imported it yet), so the hub it talks to in
# this process is HUB, a server on 127.0.0.1 answering as the Hub does (tests/fake_hub.py), Xet off; a test that
# needs a cache lays one out (tests/hub_cache.py, the ``hub_cache`` fixture). Once per process: a test module that
# imports this file again (as tests.conftest) finds it done.
if _fake_hub.SESSION is None:
    assert "huggingface_hub" not in sys.modules, "huggingface_hub was imported before the tests' settings"
    _fake_hub.SESSION = _fake_hub.FakeHub().start()
    _home = Path(tempfile.mkdtemp(prefix="hf-home-"))
    os.environ.update({"HF_HOME": str(_home), "HF_HUB_CACHE": str(_home / "hub"), "HF_HUB_DISABLE_XET": "1",
                       "HF_ENDPOINT": _fake_hub.SESSION.url, "HF_HUB_DISABLE_TELEMETRY": "1"})
    for _name in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.pop(_name, None)
HUB = _fake_hub.SESSION

# huggingface_hub reads its settings once, now: the app's go_offline() sets HF_HUB_OFFLINE in os.environ later (in
# AppTest runs), which must not decide for the rest of the session.
import huggingface_hub.constants  # noqa: E402,F401
import torch  # noqa: E402

from model import load  # noqa: E402

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


@pytest.fixture
def hub_cache(monkeypatch, tmp_path):
    """An empty Hugging Face cache of this test's own (huggingface_hub's HF_HUB_CACHE, read by the app when used);
    the app's kept listing of the cache is dropped before and after."""
    from huggingface_hub import constants

    from model.hub.cache import forget_listings

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # for the subprocesses a test starts
    forget_listings()
    yield cache
    forget_listings()


@pytest.fixture
def fake_hub():
    """This process's hub (HF_ENDPOINT), emptied: the test adds repositories and reads the requests it got."""
    HUB.repos.clear()
    HUB.requests.clear()
    HUB.throttle = None
    HUB.die_after.clear()
    yield HUB
    HUB.repos.clear()


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
