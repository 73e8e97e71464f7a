"""The image page's main area: the prediction, the selection (layer, head or mean or rollout, query), the overlay
of the query's attention on the picture, the head grid, the attention map on the canvas, the statistics with the
tokens that stand out, and the what-ifs on patches.

Every number comes from the traced call (an ``ImageCall``), through model.analysis.patch_maps; the figures from
viz.overlay. Drawn in a fragment: a change of selection never runs the model again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from model import RecordName
from model.analysis.patch_maps import HOW, head_rows, query_row
from viz import overlay

from .. import state
from ..page_types import Context, Inputs, ModelPick, Selection
from ..text import md
from ..views.common import chart, table_downloads
from ..views.registry import MAP
from .calls import ImageCall
from .inputs import Picture

PICTURE_PX = 160  # the picture in its own colours beside the overlay (nearest-neighbour: crisp pixels)

OVERLAY_KEY = "img_overlay"
OVERLAY_PX = 480  # the overlay's height: the picture, its title and its colour bar in a 1440 x 900 window
GRID_KEY = "img_head_grid"
PICKED = "img_picked"  # patches picked on the overlay (box or lasso), for a knockout
MEAN, ROLLOUT = HOW[1], HOW[2]
HOW_NAMES = {MEAN: "mean over heads", ROLLOUT: "rollout (layers 0..this one)"}


@dataclass(frozen=True)
class ImageSelection:
    """What the selectors chose: a layer (index into the call's names), one head, the mean or rollout, a query."""

    layer: int
    how: int | str  # a head index, "mean" or "rollout"
    query: int  # a sequence position

    def describe(self, call: ImageCall) -> str:
        how = f"head {self.how}" if isinstance(self.how, int) else HOW_NAMES[self.how]
        return f"layer {self.layer}, {how}, query {call.labels[self.query]}"


def show_prediction(call: ImageCall, picture: Picture) -> None:
    """One line: the predicted class and its probability, the next classes, and for a sample its true class."""
    if not call.classes:
        st.info("This model has no classifier: the page shows its attention only.")
        return
    label, p = call.predicted
    rest = "; then " + ", ".join(f"{md(c)} {q:.3f}" for c, q in call.top()[1:]) if len(call.classes) > 1 else ""
    truth = ""
    if picture.label:
        verdict = "right" if picture.label == label else "wrong"
        truth = f"  \nThe red object is a **{md(picture.label)}**: the model is {verdict}."
    st.markdown(f"**Prediction for {md(picture.name)}: {md(label)}**, probability {p:.3f}{rest}.{truth}")


def _query_from_overlay(call: ImageCall) -> None:
    """Callback of a click, box or lasso on the overlay: one patch picks the query, several go to the knockout."""
    selection = st.session_state.get(OVERLAY_KEY)
    picked = overlay.picked_patches(selection, len(call.positions))
    sel = selection.get("selection") if isinstance(selection, dict) else None  # the browser's: anything may be there
    if isinstance(sel, dict) and (sel.get("box") or sel.get("lasso")):
        st.session_state[PICKED] = picked
    elif len(picked) == 1:
        state.set_value("img_query", call.positions[picked[0]])


def _head_from_grid(n_heads: int) -> None:
    picked = overlay.picked_patches(st.session_state.get(GRID_KEY), n_heads)
    if picked:
        state.set_value("img_how", picked[0])


def sync_from_map(call: ImageCall) -> None:
    """A row clicked on the canvas (its callback keeps it as "map_query") becomes the overlay's query."""
    clicked = st.session_state.get("map_query")
    st.session_state.setdefault("img_map_seen", clicked)  # a row clicked on the inspector's map is not ours
    if clicked != st.session_state.get("img_map_seen"):
        st.session_state["img_map_seen"] = clicked
        if isinstance(clicked, int) and 0 <= clicked < call.n_tokens:
            state.set_value("img_query", clicked)


def selection_row(call: ImageCall):
    """Layer, head (or mean, or rollout) and query -> (the selection, the row's last column, for the link)."""
    layers = list(range(len(call.names)))
    hows: list = list(range(call.n_heads)) + [MEAN, ROLLOUT]
    c1, c2, c3, c4 = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
    with c1:
        layer = state.selectbox("Layer", layers, key="img_layer", default=layers[-1],
                                format_func=lambda i: f"layer {RecordName.parse(call.names[i]).layer}")
    with c2:
        how = state.selectbox("Head", hows, key="img_how", default=MEAN,
                              format_func=lambda h: f"head {h}" if isinstance(h, int) else HOW_NAMES[h],
                              help="One head's weights; their mean over heads; or rollout: how much of each input "
                                   "token reaches the query through layers 0..this one (the residual counted as "
                                   "half of each layer, heads averaged).")
    with c3:
        query = state.selectbox("Query", list(range(call.n_tokens)), key="img_query", default=call.cls,
                                format_func=lambda i: f"{i}·{call.labels[i]}",
                                help="Whose attention the overlay shows; click a patch on the picture to pick it.")
    return ImageSelection(layer=int(layer), how=how, query=int(query)), c4


def query_values(call: ImageCall, sel: ImageSelection) -> np.ndarray:
    """(T,) the selection's row, computed once per traced call."""
    return call.traced.memo(("image-row", sel.layer, sel.how, sel.query),
                            lambda: query_row(call.trace, call.names, sel.layer, sel.how, sel.query))


def overlay_section(call: ImageCall, sel: ImageSelection) -> None:
    """The query's row over the picture (click a patch: its query; box or lasso: patches to knock out), what it
    reads outside the picture, and the downloads."""
    row = query_values(call, sel)
    values = overlay.patch_values(row, call.positions, call.grid)
    left, right = st.columns([3, 2])
    with right:
        opacity = st.slider("Heat layer opacity", 0.1, 0.9, overlay.OPACITY, 0.05, key="img_opacity")
    picked = [p for p in st.session_state.get(PICKED, []) if 0 <= p < len(call.positions)]
    what = "weights" if sel.how != ROLLOUT else "rollout"
    fig = overlay.overlay_figure(
        call.picture, values, call.patch_labels, value_name="weight" if sel.how != ROLLOUT else "rollout",
        title=f"{sel.describe(call)}: its {what} on every patch", opacity=opacity,
        query_patch=call.patch_of(sel.query), marked=picked,
        note="click a patch to make it the query; the box or lasso tool (top right) picks patches to knock out",
        height=OVERLAY_PX)
    with left:
        chart(fig, OVERLAY_KEY, on_select=lambda: _query_from_overlay(call), selection_mode=("points", "box", "lasso"),
              theme=None, width="content")
    with right:
        # the overlay shows the picture in grey (its own colours would read as weights): here it is as it is
        st.image(overlay.blend(call.picture, np.zeros(call.grid, np.float32), 1.0, PICTURE_PX, opacity=0.0,
                               grey=False),
                 caption="The picture in its own colours; under the heat layer, grey", width=PICTURE_PX)
        others = overlay.other_tokens(row, call.positions, call.labels)
        on_patches = float(values.sum())
        st.markdown(f"**On the picture:** {on_patches:.4f} of the query's {what} in all; the largest on "
                    f"**{md(call.patch_labels[int(np.argmax(values))])}** ({float(values.max()):.4f}).")
        if others:
            st.markdown("**Outside the picture** (no patch to colour):")
            if sel.query != call.cls:
                st.button(f"Make {call.labels[call.cls]} the query", key="img_query_cls", on_click=state.set_value,
                          args=("img_query", call.cls))
            st.dataframe(pd.DataFrame([(f"{i}·{lab}", v) for i, lab, v in others], columns=["token", what]),
                         hide_index=True, height=35 * (min(len(others), 8) + 1) + 3)
        table = overlay.patch_table(row, call.positions, call.grid, call.labels, value_name=what)
        stem = f"overlay-layer{sel.layer}-{sel.how}-query{sel.query}"
        st.download_button("PNG of the overlay", overlay.overlay_png(call.picture, values, opacity=opacity),
                           f"{stem}.png", "image/png", key="img_png", on_click="ignore")
        table_downloads(table, "these numbers", stem, "img_csv",
                        meta={"selection": sel.describe(call), "grid": list(call.grid)})
        st.caption(f"Colours: 0 .. the largest value on a patch ({float(values.max()):.4f}), Viridis. Each patch is "
                   f"{call.picture.shape[0] // call.grid[0]} × {call.picture.shape[1] // call.grid[1]} pixels of the "
                   "picture as the model saw it; the numbers are the trace's own.")


def head_grid_section(call: ImageCall, sel: ImageSelection) -> None:
    """Every head of the layer for the same query, one small overlay each (click one to open it)."""
    name = call.names[sel.layer]
    rows = call.traced.memo(("image-heads", sel.layer, sel.query), lambda: head_rows(call.trace, name, sel.query))
    values = np.stack([overlay.patch_values(r, call.positions, call.grid) for r in rows])
    titles = [f"head {h} · max {float(values[h].max()):.3f}" for h in range(len(values))]
    fig = overlay.head_grid_figure(call.picture, values, titles, cols=min(6, len(values)),
                                   title=f"Every head of layer {RecordName.parse(name).layer}, query "
                                         f"{call.labels[sel.query]} (click one to open it)",
                                   note="each panel on its own scale, 0 .. its largest weight on a patch")
    chart(fig, GRID_KEY, on_select=lambda: _head_from_grid(len(values)), selection_mode="points", theme=None)
    long = pd.DataFrame([(h, call.patch_labels[n], float(values[h].ravel()[n])) for h in range(len(values))
                         for n in range(values[h].size)], columns=["head", "patch", "weight"])
    table_downloads(long, "every head's weights", f"heads-layer{sel.layer}-query{sel.query}", "img_heads_csv")


def map_section(pick: ModelPick, call: ImageCall, sel: ImageSelection) -> None:
    """The attention map of the layer on the canvas (tokens "[CLS]", "r0c0", ...); a click on a row picks the query."""
    from ..views.canvas import canvas_map

    n = RecordName.parse(call.names[sel.layer])
    head = sel.how if isinstance(sel.how, int) else 0
    ctx = Context(pick=pick, traced=call.traced, inputs=Inputs(source="", target=None, max_new=0),
                  sel=Selection(kind=n.kind, layer=n.layer, head=head, stage="weights", view=MAP.name),
                  layers=[RecordName.parse(x).layer for x in call.names])
    canvas_map(ctx, "weights")
    if not isinstance(sel.how, int):
        st.caption(f"The map shows one head at a time (head {head} first; its buttons switch heads); the overlay "
                   f"above shows the {HOW_NAMES[sel.how]}.")
