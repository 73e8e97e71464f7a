"""The inspector's main area: the selection row (attention kind, layer, head, stage), the view picker and the
view. Drawn in a fragment, so a change of selection or view reruns this part only, never the sidebar or the model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import streamlit as st

import viz
from model import record_name

from . import state
from .sidebar import Inputs, ModelPick
from .tracing import Traced

PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
VIEWS = ("Attention map", "Head grid", "Model overview", "Head view", "Step by step", "One query", "Decoding",
         "Statistics", "Rollout", "Ablation", "Compare", "Training", "Export")


def chart(fig, key: str, **kwargs) -> None:
    st.plotly_chart(fig, key=key, config=PLOT_CONFIG, **kwargs)


@dataclass(frozen=True)
class Selection:
    kind: str  # UI label: "cross", "encoder self", "decoder masked self"
    stack: str
    trace_kind: str
    layer: int
    head: int  # -1 = all heads
    stage: str
    view: str

    @property
    def name(self) -> str:
        return record_name(self.stack, self.layer, self.trace_kind)


@dataclass(frozen=True)
class Context:
    """Everything a view needs: the model, the traced call, the selection, and token labels."""

    pick: ModelPick
    traced: Traced
    inputs: Inputs
    sel: Selection
    layers: list[int]

    @property
    def pipe(self):
        return self.pick.pipe

    @property
    def info(self):
        return self.pick.pipe.info

    @property
    def result(self):
        return self.traced.result

    @cached_property
    def rec(self):
        return self.traced.record(self.sel.name)

    def tokens(self, stack: str) -> list[str]:
        return self.result.tokens_for(stack)

    def labels(self, stack: str, produces: bool = True) -> list[str]:
        """Axis labels of one stack; decoder rows also say what they produce ("0·[BOS] → 2")."""
        toks = self.tokens(stack)
        if stack == "decoder" and produces and self.result.output_tokens:
            return viz.token_labels(toks, self.result.output_tokens)
        return viz.token_labels(toks)

    def axes_for(self, name: str) -> tuple[list[str], list[str], list[str], list[str]]:
        """(query tokens, key tokens, query labels, key labels) of one record."""
        stack, _, kind = name.split(".")
        k_stack = "encoder" if kind == "cross_attn" else stack
        return (self.tokens(stack), self.tokens(k_stack), self.labels(stack),
                self.labels(k_stack, produces=False))

    @property
    def record_names(self) -> list[str]:
        return list(self.info.record_names)

    def names_of_kind(self) -> list[str]:
        return [record_name(self.sel.stack, i, self.sel.trace_kind) for i in self.layers]

    def reasons(self, rec, head: int) -> dict:
        return viz.head_reasons(rec, max(head, 0))


def kinds_of(info) -> list[str]:
    """The attention kinds this model has, cross first for encoder-decoders (where the story usually is)."""
    out = []
    if info.has_cross:
        out.append("cross")
    if info.has_encoder:
        out.append("encoder self")
    if info.has_decoder:
        out.append("decoder masked self")
    return out


def views_of(pick: ModelPick, has_snapshots: bool) -> list[str]:
    views = list(VIEWS)
    if pick.pipe.kind == "encoder-only":
        views.remove("Decoding")
    if pick.pipe.info.kind and not has_snapshots:
        views.remove("Training")
    return views


def open_cell(chart_key: str, cells: list, kind: str | None, view: str = "Attention map") -> None:
    """Callback of a click on a thumbnail or a heat-strip cell: open that layer and head."""
    cell = viz.clicked_cell(st.session_state.get(chart_key), cells)
    if cell is None:
        return
    layer, head = cell
    state.set_value("layer", layer)
    state.set_value("head", head)
    if kind is not None:
        state.set_value("kind", kind)
    state.set_value("view", view)


def selection_row(pick: ModelPick, has_snapshots: bool) -> tuple[Selection, list[int]]:
    info = pick.pipe.info
    kinds = kinds_of(info)
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    with c1:
        kind = state.radio("Attention", kinds, key="kind", default=kinds[0], horizontal=True)
    stack, trace_kind = viz.KIND_LABELS[kind]
    n_layers = info.n_encoder_layers if stack == "encoder" else info.n_decoder_layers
    layers = list(range(n_layers))
    heads = [-1] + list(range(info.n_heads))
    with c2:
        layer = state.selectbox("Layer", layers, key="layer", default=layers[-1])
    with c3:
        head = state.selectbox("Head", heads, key="head", default=0,
                               format_func=lambda h: "all heads" if h < 0 else f"head {h}")
    stages = [s for s in viz.STAGE_ORDER if s != "adjusted" or info.family in ("t5", "gemma2", "gemma3")]
    with c4:
        stage = state.selectbox("Stage", stages, key="stage", default="weights",
                                format_func=lambda s: viz.STAGE_NAMES[s],
                                help="In the order the model computes them: q·k scores, scaled by 1/√d_k, masked "
                                  "(−∞ where the mask forbids), softmax weights (0..1).")
    views = views_of(pick, has_snapshots)
    view = state.segmented_control("View", views, key="view", default=views[0], required=True)
    return Selection(kind=kind, stack=stack, trace_kind=trace_kind, layer=layer, head=head, stage=stage,
                     view=view or views[0]), layers


@st.fragment
def inspector(pick: ModelPick, traced: Traced, inputs: Inputs, has_snapshots: bool) -> None:
    """Selection, view picker and the view, rerun on their own when only they change."""
    from .views import render

    sel, layers = selection_row(pick, has_snapshots)
    ctx = Context(pick=pick, traced=traced, inputs=inputs, sel=sel, layers=layers)
    render(ctx)
