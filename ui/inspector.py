"""The inspector's main area: the selection row (attention kind, layer, head, stage), the view picker and the
view. Drawn in a fragment, so a change of selection or view reruns this part only, never the sidebar or the model."""

from __future__ import annotations

import streamlit as st

import viz
from model import RecordName

from . import links, state
from .page_types import Context, Inputs, ModelPick, Selection
from .tracing import Traced
from .views import render
from .views.registry import offered


def kinds_of(info) -> list[str]:
    """The attention kinds this model has, cross first for encoder-decoders (where the story usually is)."""
    kinds = info.kinds()
    return sorted(kinds, key=lambda k: k != "cross")


def selection_row(pick: ModelPick, has_snapshots: bool) -> tuple[Selection, list[int]]:
    info = pick.pipe.info
    kinds = kinds_of(info)
    stages = [s for s in viz.STAGE_ORDER if s in info.stages]
    views = offered(pick.pipe.arch, has_snapshots)

    def layers_of(kind: str) -> list[int]:
        return sorted(RecordName.parse(n).layer for n in info.names_of_kind(kind))

    links.apply_selection(kinds, layers_of, info.n_heads, stages, views)  # a link's or a saved session's view
    links.show_notes()
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    with c1:
        kind = state.radio("Attention", kinds, key="kind", default=kinds[0], horizontal=True)
    layers = layers_of(kind)
    heads = [-1] + list(range(info.n_heads))
    with c2:
        layer = state.selectbox("Layer", layers, key="layer", default=layers[-1])
    with c3:
        head = state.selectbox("Head", heads, key="head", default=0,
                               format_func=lambda h: "all heads" if h < 0 else f"head {h}")
    with c4:
        stage = state.selectbox("Stage", stages, key="stage", default="weights",
                                format_func=lambda s: viz.STAGE_NAMES[s],
                                help="In the order the model computes them: q·k scores, scaled by 1/√d_k, masked "
                                  "(−∞ where the mask forbids), softmax weights (0..1).")
    names = [v.name for v in views]
    view = state.segmented_control("View", names, key="view", default=names[0], required=True)
    return Selection(kind=kind, layer=layer, head=head, stage=stage, view=view or names[0]), layers


@st.fragment
def inspector(pick: ModelPick, traced: Traced, inputs: Inputs, has_snapshots: bool) -> None:
    """Selection, view picker and the view, rerun on their own when only they change."""
    sel, layers = selection_row(pick, has_snapshots)
    links.share(pick.base, pick.pipe.arch, inputs.source, inputs.target, sel)
    ctx = Context(pick=pick, traced=traced, inputs=inputs, sel=sel, layers=layers)
    render(ctx)
