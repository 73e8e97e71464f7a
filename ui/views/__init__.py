"""One function per view; ``render`` picks the selected one."""

from __future__ import annotations

import streamlit as st

from model import CaptureBudgetError, RecordTooLarge

from .ablation import ablation
from .common import Context
from .compare import compare
from .decoding import decoding
from .export import export
from .headview import head_view
from .maps import attention_map, head_grid, model_overview
from .rollout import rollout_view
from .stats import statistics
from .steps import one_query, step_by_step
from .training import training

VIEW_FUNCTIONS = {
    "Attention map": attention_map, "Head grid": head_grid, "Model overview": model_overview, "Head view": head_view,
    "Step by step": step_by_step, "One query": one_query, "Decoding": decoding, "Statistics": statistics,
    "Rollout": rollout_view, "Ablation": ablation, "Compare": compare, "Training": training, "Export": export,
}


def render(ctx: Context) -> None:
    try:
        VIEW_FUNCTIONS[ctx.sel.view](ctx)
    except (CaptureBudgetError, RecordTooLarge) as e:
        st.error(str(e))
