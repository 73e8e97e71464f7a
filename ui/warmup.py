"""The server's warm-up (the lifespan of app.py's st.App): the heavy imports start when the server starts, while the
browser loads the page. Kept apart from ui/boot.py, which the pages use: this module imports the pages' modules."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator

from model import settings

from .boot import PLOTTING_READY, WARMING, go_offline


def _warm() -> None:
    """The imports every page needs first: NumPy, pandas and Plotly (then ``PLOTTING_READY`` is set: a page may draw a
    chart), then torch, the model code and the inspector's modules, then the default model's first trace."""
    try:
        import numpy  # noqa: F401
        import pandas  # noqa: F401
        import plotly.graph_objects  # noqa: F401
        import plotly.io  # noqa: F401
    finally:
        PLOTTING_READY.set()
    go_offline()
    from model.runtime import configure_cpu

    configure_cpu()  # the worker lanes start now; a page's configure_once sets its own thread's count again
    from . import header, inspector, sidebar  # noqa: F401

    first_trace()


def first_trace() -> None:
    """The default model opened and its example traced into the caches a first visit reads (the sidebar's
    defaults: the shipped default model on "auto", its example, the generation cap), so that a cold start's first
    map waits for neither (nor for torch's first kernels). Any failure is left for the visit to meet and say."""
    from .boot import DEFAULT_MODEL, shipped_dir
    from .models import pipeline
    from .sidebar import DEFAULT_SOURCE
    from .tracing import MAX_GENERATED, trace

    path = shipped_dir() / DEFAULT_MODEL
    try:
        if not (path / "config.json").is_file():
            return
        pipe = pipeline(str(path), "auto")
        max_new = min(max(1, pipe.info.max_len - 1), MAX_GENERATED) if pipe.arch == "encoder-decoder" else 0
        trace(str(path), "auto", DEFAULT_SOURCE, None, max_new)
    except Exception:  # noqa: BLE001 - the first visit loads and traces it again, and shows what went wrong
        return


@contextlib.asynccontextmanager
async def warm_up(_app) -> AsyncIterator[None]:
    """Lifespan of the server (app.py's st.App): start the heavy imports when the server starts, in a thread, while
    the browser loads Streamlit's page (about 1.3 s here), instead of after the first visitor connects. Measured
    here (benchmarks/bench_first_use.py): the first map about 1 s sooner, the first paint about 0.4 s later (the
    two cores are shared). INSPECTOR_WARM_UP=0 turns it off."""
    if settings.raw("INSPECTOR_WARM_UP") != "0":  # 0: import on the first visit instead
        thread = threading.Thread(target=_warm, name="warm-up", daemon=True)
        WARMING.append(thread)
        thread.start()
    yield



__all__ = ["first_trace", "warm_up"]
