"""What-ifs on a picture, through the one traced call: knock patches out of attention (every query loses them as
keys) and/or ablate heads, run the same picture again, and compare the prediction before and after."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from model import RecordName
from model.analysis.patch_maps import patch_knockouts

from .. import state
from ..page_types import ModelPick
from ..text import md
from ..tracing import trace_image
from ..views.common import chart, table_downloads
from .calls import ImageCall, image_call
from .inputs import Picture
from .page import PICKED, ImageSelection, query_values

WHERE = ("every layer and head", "this layer, every head", "this layer and head")
ACTIVE = "img_whatif"  # the what-if whose result is shown (kept across reruns after the click)


def target_patches(grid: tuple[int, int], picture: Picture) -> list[int]:
    """The patches of a ``grid`` (rows, cols) laid over the picture that hold any pixel of a sample's red object
    (none for an upload). Exact when the model reads the picture resized as a whole (the shapes model reads it as it
    is); for a processor that also crops, the patches at the border are approximate."""
    if picture.target is None:
        return []
    mask = np.asarray(picture.target, dtype=bool)
    rows, cols = grid
    H, W = mask.shape
    ys = np.linspace(0, H, rows + 1)
    xs = np.linspace(0, W, cols + 1)
    held = [mask[int(ys[r]):int(np.ceil(ys[r + 1])), int(xs[c]):int(np.ceil(xs[c + 1]))].any()
            for r in range(rows) for c in range(cols)]
    return [n for n, h in enumerate(held) if h]


def _set_patches(patches: list[int]) -> None:
    st.session_state[PICKED] = list(patches)
    st.session_state.pop("img_ko_patches", None)


def patch_picker(call: ImageCall, picture: Picture) -> list[int]:
    """The patches to knock out: picked on the overlay (box or lasso), in this list, or a sample's red object."""
    labels = call.patch_labels
    picked = [p for p in st.session_state.get(PICKED, []) if 0 <= p < len(labels)]
    if st.session_state.get("img_ko_patches") is None or st.session_state.get("_img_picked_seen") != picked:
        st.session_state["img_ko_patches"] = [labels[p] for p in picked]  # the overlay's pick shows here
        st.session_state["_img_picked_seen"] = picked
    chosen = st.multiselect("Patches to knock out", labels, key="img_ko_patches",
                            help="Drag a box or lasso over the picture above, or pick them here.")
    b1, b2 = st.columns(2)
    red = target_patches(call.grid, picture)
    b1.button("The red object's patches", key="img_ko_red", disabled=not red, on_click=_set_patches, args=(red,),
              help="Every patch holding a pixel of the sample's red object." if red else "For samples only.")
    b2.button("Clear", key="img_ko_clear", on_click=_set_patches, args=([],))
    return [labels.index(c) for c in chosen if c in labels]


def whatif_section(pick: ModelPick, call: ImageCall, picture: Picture, sel: ImageSelection) -> None:
    if not call.classes:
        st.info("This model has no classifier: a what-if's effect is measured on its prediction.")
        return
    patches = patch_picker(call, picture)
    where = state.radio("Knock them out in", WHERE, key="img_ko_where", default=WHERE[0], horizontal=True)
    heads = [f"{RecordName.parse(n).layer}.{h}" for n in call.names for h in range(call.n_heads)]
    ablate = st.multiselect("…and/or ablate heads (layer.head: context set to 0)", heads, key="img_ablate")
    names = call.names if where == WHERE[0] else [call.names[sel.layer]]
    head_set = [sel.how] if where == WHERE[2] and isinstance(sel.how, int) else None
    if where == WHERE[2] and not isinstance(sel.how, int):
        st.caption("“This layer and head” needs one head picked above; every head of the layer is used.")
    knockouts = patch_knockouts(names, call.n_heads, call.n_tokens, [call.positions[p] for p in patches],
                                head_set) if patches else {}
    ablations: dict = {}
    for item in ablate:
        layer, head = (int(x) for x in item.split("."))
        name = next(n for n in call.names if RecordName.parse(n).layer == layer)
        ablations.setdefault(name, {})[head] = "zero"
    key = (picture.key, tuple(patches), where, str(head_set), tuple(ablate))
    if st.button("Run the picture again", key="img_ko_run", type="primary", disabled=not (patches or ablate)):
        st.session_state[ACTIVE] = key
    if st.session_state.get(ACTIVE) != key or not (patches or ablate):
        st.caption("Pick patches (or heads), then run: the same picture through the same call, with those patches "
                   "taken out of every query's keys (each row renormalises over the keys left).")
        return
    after_traced = trace_image(pick.path, pick.device, picture.key, picture.image, ablations=ablations or None,
                               knockouts=knockouts or None)
    after = image_call(pick.pipe, after_traced)
    before_label, before_p = call.predicted
    after_label, after_p = after.predicted
    changed = "changes" if after_label != before_label else "stays"
    what = (f"{len(patches)} patch(es) knocked out in {where}" if patches else "") + \
        (" and " if patches and ablate else "") + (f"{len(ablate)} head(s) ablated" if ablate else "")
    st.markdown(f"With {md(what)}, the prediction **{changed}**: {md(before_label)} ({before_p:.3f}) → "
                f"**{md(after_label)}** ({after_p:.3f}).")
    table = pd.DataFrame({"class": call.classes, "before": call.probs, "after": after.probs,
                          "change": after.probs - call.probs}).sort_values("before", ascending=False).head(10)
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.4f")
                                                        for c in ("before", "after", "change")})
    table_downloads(table, "the prediction before and after", "whatif-prediction", "img_ko_csv",
                    meta={"knocked_out": [call.patch_labels[p] for p in patches], "where": where,
                          "ablated": list(ablate)})
    from viz import overlay

    row_after = query_values(after, sel)
    values = overlay.patch_values(row_after, after.positions, after.grid)
    chart(overlay.overlay_figure(after.picture, values, after.patch_labels, marked=patches, height=420,
                                 title=f"After: {sel.describe(after)}", value_name="weight"),
          "img_ko_overlay", theme=None, width="content")
