"""The inspector's views: one module per view, one table of them (registry.py); ``render`` draws the selected one."""

from __future__ import annotations

import streamlit as st

from model import CaptureBudgetError, RecordTooLarge

from .. import state
from ..page_types import Context
from .registry import HEAD_GRID, MAP, STATISTICS, named


def render(ctx: Context) -> None:
    """Draw the selected view; one that needs more of a long input's record than fits says so and offers the map."""
    view = named(ctx.sel.view)
    try:
        view.draw(ctx)
    except RecordTooLarge as e:
        needs = view.needs or "the complete record"
        st.warning(f"**{view.name}** needs {needs}, and at this length that is too much to compute at once: {e}. "
                   f"The {MAP.name} shows this attention at any length (pooled overview, exact cells when zoomed "
                   f"in, the strip of any query); {STATISTICS.name} and the {HEAD_GRID.name} work from the first "
                   "pass.")
        if st.button(f"Open it on the {MAP.name}", key="needs_record_map"):
            state.set_value("view", MAP.name)
            st.rerun()
    except CaptureBudgetError as e:
        st.error(str(e))
