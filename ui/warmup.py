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
    chart), then torch, the model code and the inspector's modules."""
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



__all__ = ["warm_up"]
