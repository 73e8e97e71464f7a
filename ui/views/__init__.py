"""One function per view; ``render`` picks the selected one."""

from __future__ import annotations

import streamlit as st

from model import CaptureBudgetError, RecordTooLarge

from .. import state
from ..page_types import Context
from .ablation import ablation
from .compare import compare
from .decoding import decoding
from .export import export
from .headview import head_view
from .knockout import knockout_view
from .lens import lens_view
from .maps import attention_map, head_grid, model_overview
from .needle import needle
from .patching import patching_view
from .rollout import rollout_view
from .stats import statistics
from .steps import one_query, step_by_step
from .training import training

VIEW_FUNCTIONS = {
    "Attention map": attention_map, "Head grid": head_grid, "Model overview": model_overview, "Head view": head_view,
    "Step by step": step_by_step, "One query": one_query, "Decoding": decoding, "Statistics": statistics,
    "Rollout": rollout_view, "Needle": needle, "Ablation": ablation, "Knockout": knockout_view,
    "Logit lens": lens_view, "Patching": patching_view, "Compare": compare, "Training": training,
    "Export": export,
}


NEEDS_RECORD = {  # what a view needs that a long input's trace computes only up to a budget
    "Head view": "every head's complete weights", "Step by step": "every stage of the complete record",
    "One query": "the complete record (q, k and every stage of one row)", "Rollout": "every layer's complete weights",
    "Compare": "the complete records of both runs", "Ablation": "the complete records of the ablated run",
    "Decoding": "the complete cross-attention record",
}


def render(ctx: Context) -> None:
    try:
        VIEW_FUNCTIONS[ctx.sel.view](ctx)
    except RecordTooLarge as e:
        needs = NEEDS_RECORD.get(ctx.sel.view, "the complete record")
        st.warning(f"**{ctx.sel.view}** needs {needs}, and at this length that is too much to compute at once: {e}. "
                   "The Attention map shows this attention at any length (pooled overview, exact cells when zoomed "
                   "in, the strip of any query); Statistics and the Head grid work from the first pass.")
        if st.button("Open it on the Attention map", key="needs_record_map"):
            state.set_value("view", "Attention map")
            st.rerun()
    except CaptureBudgetError as e:
        st.error(str(e))
