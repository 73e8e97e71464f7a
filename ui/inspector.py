"""The inspector's main area: the selection row (attention kind, layer, head, stage), the view picker and the
view. Drawn in a fragment, so a change of selection or view reruns this part only, never the sidebar or the model."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import viz
from model import STAGES, RecordName
from model.core.names import story_order

from . import links, state
from .page_types import Context, Inputs, ModelPick, Selection
from .tracing import Traced
from .views import render
from .views.registry import View, offered

PICKER_CSS = (Path(__file__).parent / "assets" / "view_picker.css").read_text(encoding="utf-8")
GROUP_GAP = "0.75rem"  # between two groups of the view picker
IDLE = ":not([data-selected]):not([data-hovered]):not([data-focus-visible])"  # a button with the plain border
EDGE = "color-mix(in srgb, currentColor 16%, transparent)"  # about the plain border's colour, in either theme
SECOND_ROW = "Explain"  # the group that starts the picker's second row: what to look at above, analyses below


def kinds_of(info) -> list[str]:
    """The attention kinds this model has, cross first for encoder-decoders (where the story usually is)."""
    return story_order(info.kinds())


def picker_style(views: list[View]) -> str:
    """The view picker's CSS: PICKER_CSS, and per group its name above its first button and a gap after its last;
    the groups from SECOND_ROW on go after the row break."""
    button = '.st-key-view [role="radiogroup"] > button:nth-of-type({})'
    groups = [v.group for v in views]  # the registry keeps each group's views together
    second = groups.index(SECOND_ROW) + 1 if SECOND_ROW in groups else len(groups) + 1
    rules = []
    for i, group in enumerate(groups, start=1):
        if i >= second:
            rules.append(f"{button.format(i)} {{ order: 2; }}")
        if i > 1 and group == groups[i - 2]:
            continue
        rules.append(f'{button.format(i)}::before {{ content: "{group}" / ""; }}')  # "/ ''": not part of its name
        if i > 1:  # the gap after the previous group (a gap before this one would indent a wrapped row)
            rules.append(f"{button.format(i - 1)} {{ margin-right: {GROUP_GAP}; border-top-right-radius: 0.5rem; "
                         "border-bottom-right-radius: 0.5rem; }")
            rules.append(f"{button.format(i)} {{ border-top-left-radius: 0.5rem; border-bottom-left-radius: 0.5rem; }}")
            # Streamlit hides the border a button shares with a selected or hovered neighbour (with rules more
            # specific than these, hence !important); across a gap it is not shared, so each keeps its own
            rules.append(f"{button.format(i - 1)}{IDLE} {{ border-right-color: {EDGE} !important; }}")
            rules.append(f"{button.format(i)}{IDLE} {{ border-left-color: {EDGE} !important; }}")
    return "<style>\n" + PICKER_CSS + "\n".join(rules) + "\n</style>"


def view_picker(views: list[View]) -> str:
    """The views in one segmented control, grouped (See, Explain, ...) by its style: the selected view's name. One
    control, not one per group: a link, a saved session and a click on the map all set the one value "view"."""
    names = [v.name for v in views]
    st.html(picker_style(views))
    return state.segmented_control("View", names, key="view", default=names[0], required=True,
                                   label_visibility="collapsed") or names[0]


def selection_row(pick: ModelPick, views: list[View]) -> tuple[dict, list[int]]:
    """The attention kind, layer, head and stage selectors (a link's or a saved session's values applied first)."""
    info = pick.pipe.info
    kinds = kinds_of(info)
    stages = [s for s in STAGES if s in info.stages]

    def layers_of(kind: str) -> list[int]:
        return sorted(RecordName.parse(n).layer for n in info.names_of_kind(kind))

    links.apply_selection(kinds, layers_of, info.n_heads, stages, views)
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
    return {"kind": kind, "layer": layer, "head": head, "stage": stage}, layers


@st.fragment
def inspector(pick: ModelPick, traced: Traced, inputs: Inputs, has_snapshots: bool) -> None:
    """Selection, view picker and the view, rerun on their own when only they change."""
    views = offered(pick.pipe.arch, has_snapshots)
    chosen, layers = selection_row(pick, views)
    picker, link = st.columns([6, 1], vertical_alignment="bottom")  # the picker, and "Copy link" beside it
    with picker:
        sel = Selection(**chosen, view=view_picker(views))
    with link:
        links.share(pick.base, pick.pipe.arch, inputs.source, inputs.target, sel)
    render(Context(pick=pick, traced=traced, inputs=inputs, sel=sel, layers=layers))
