"""What a page does before its first heavy import: paint its frame and say what is loading.

Importing torch, pandas and the model code takes about 2 s on a loaded 2-core machine. Two things keep that off
the first screen: the server starts those imports when it starts (``warm_up``, the lifespan of app.py's st.App),
while the browser is still loading Streamlit's page; and a page writes its title and a loading line before its
own heavy imports (``first_load``): Streamlit sends each element as the script reaches it, so the frame is painted
at once. Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import streamlit as st

from model import settings

ROOT = Path(__file__).resolve().parent.parent
ICON = ROOT / "ui" / "assets" / "icon.png"  # a 4 x 4 causal attention map: served by this server, never a web font
DEFAULT_MODEL = "dates"
HEAVY = ("torch", "model.api", "viz")  # imported once per process; after that the process is warm
SESSION_FLAG = "_boot_done"  # this session has drawn its first page


def shipped_dir() -> Path:
    """Where the shipped checkpoints are (INSPECTOR_CHECKPOINTS, default checkpoints/)."""
    return Path(settings.path("INSPECTOR_CHECKPOINTS") or ROOT / "checkpoints")


def page_icon() -> str:
    """The page icon as a local file (a ":material/...:" icon makes the browser fetch an SVG from Google)."""
    return str(ICON)


WARMING: list[threading.Thread] = []
PLOTTING_READY = threading.Event()  # set when the warm-up has imported NumPy, pandas and Plotly
_ACTIVE = threading.local()  # .slot: the loading line of the run in this thread, while it is shown


def go_offline() -> None:
    """Never reach a model hub (HF_HUB_OFFLINE, read by huggingface_hub once, when first imported), unless downloads
    are allowed (INSPECTOR_ALLOW_DOWNLOAD=1 or ``--allow-download``; never on a public server): then only a download
    the visitor starts reaches it (model/hub/download.py)."""
    from model.hub import downloads_allowed

    from .launch import launch

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if not downloads_allowed(asked=launch().allow_download):
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(name, "1")


def wait_for_warm_up() -> None:
    """Block until the server's warm-up imports are done (two threads importing the same modules can see each
    other's half-imported modules)."""
    for thread in list(WARMING):
        if thread is not threading.current_thread():
            thread.join()


def public_config() -> bool:
    """Under INSPECTOR_PUBLIC=1 a visitor never sees a traceback or a server path: Streamlit's
    ``client.showErrorDetails`` is set to "none" (.streamlit/config.toml ships "full" for local debugging), through
    Streamlit's supported ``st.set_option`` (a client option a script may set), when the server imports app.py and
    again once per process. Returns whether it was set."""
    if not settings.flag("INSPECTOR_PUBLIC"):
        return False
    st.set_option("client.showErrorDetails", "none")
    return True


@st.cache_resource(show_spinner=False)
def configure_once() -> dict:
    """Once per server process: never reach a model hub (transformers is imported later, when a model in the
    Hugging Face layout is opened); torch threads, the allocator and the worker lanes (model/runtime.py)."""
    wait_for_warm_up()
    go_offline()
    public_config()  # also when a page runs without app.py (AppTest, `streamlit run app_pages/...`)
    from model.runtime import configure_cpu

    return configure_cpu()


def cold() -> bool:
    """True until this process has imported the heavy modules once (or while the warm-up imports them)."""
    return any(t.is_alive() for t in WARMING) or any(name not in sys.modules for name in HEAVY)


def model_being_opened() -> str:
    """A name for the loading line: the linked model (?model=..., or the command line's), the one picked before, or
    the default."""
    from .launch import launch

    linked = st.query_params.get("model") or launch().model
    if isinstance(linked, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,96}(/[A-Za-z0-9_.-]{1,96})?(@[\w./-]{1,40})?",
                                                linked):
        return linked
    picked = st.session_state.get("model")
    picked = picked.split(" · ")[0] if isinstance(picked, str) else picked  # a cached model's label: its name first
    if isinstance(picked, str) and re.fullmatch(r"[A-Za-z0-9_. ()/@-]{1,120}", picked):
        return picked
    return DEFAULT_MODEL if (shipped_dir() / DEFAULT_MODEL).is_dir() else ""


@contextlib.contextmanager
def first_load(what: str | None = None) -> Iterator[None]:
    """On a session's first run (or while the process is cold): a line saying what is loading, until the body ends
    (also by st.stop), with an empty chart so that the browser fetches plotly.js meanwhile; the imports
    (``configure_once``) are done when the body starts. Later runs: only ``configure_once``."""
    cold_now = cold()
    if not cold_now and st.session_state.get(SESSION_FLAG):
        configure_once()
        yield
        return
    if what is None:
        name = model_being_opened()
        what = f"the {name} model" if name else "the model"
    slot = st.empty()
    _ACTIVE.slot = slot
    with slot.container():
        st.caption(f"Loading {what}: PyTorch, the model and its first trace (a few seconds on a cold start)…"
                   if cold_now else f"Opening {what}…")
        # Plotly reads NumPy and pandas from sys.modules: never while the warm-up is still importing them.
        if WARMING:
            PLOTTING_READY.wait()
        st.plotly_chart({"data": [{"type": "scatter", "x": [], "y": []}],
                         "layout": {"height": 40, "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
                                    "xaxis": {"visible": False}, "yaxis": {"visible": False}}},
                        key="boot_chart", config={"staticPlot": True})
        configure_once()  # waits for the warm-up's imports (or makes them)
    try:
        yield
        st.session_state[SESSION_FLAG] = True
    finally:
        _ACTIVE.slot = None
        slot.empty()


def stop() -> NoReturn:
    """``st.stop()`` that first removes the loading line (after st.stop nothing more reaches the page)."""
    slot = getattr(_ACTIVE, "slot", None)
    if slot is not None:
        _ACTIVE.slot = None
        slot.empty()
    st.stop()
