"""The attention map of one head, the heads of one layer, and every layer and head of one attention kind."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

import viz
from model import allowed_matrix

from ..page_types import Context
from . import canvas
from .common import chart, open_cell

OVERVIEW_EXACT_MAX = 64  # up to this many tokens per axis the overview shows exact weights, else pooled


def attention_map(ctx: Context) -> None:
    """One attention's map at any length on the canvas (every head, and the maps the page switches to by itself);
    "all heads": the head grid."""
    sel = ctx.sel
    if sel.head < 0:
        head_grid(ctx, "map_grid")
        return
    stage = sel.stage
    if stage == "adjusted" and "adjusted" not in ctx.info.stages:
        stage = "scaled"
    result = canvas.canvas_map(ctx, stage)
    canvas.knockout_from_map(ctx, result["selection"])
    left, right = st.columns([3, 2])
    with right:
        canvas.find_in_text(ctx)
    with left:
        query = st.session_state.get("map_query")
        if isinstance(query, int):
            canvas.query_strip(ctx, query)
        else:
            st.caption("Click a row of the map for its query strip: that query's weight on every key.")


def head_grid(ctx: Context, key: str = "grid") -> None:
    sel = ctx.sel
    cells = [(sel.layer, h) for h in range(ctx.info.n_heads)]
    q, k, ql, kl = ctx.axes_for(sel.name)
    if viz.grid_is_readable(len(q), len(k)):
        rec = ctx.rec
        stage = sel.stage
        if stage == "adjusted" and rec.adjusted is None:
            st.caption("This model does not adjust its scaled scores (no bias or softcap): showing the scaled "
                       "scores.")
            stage = "scaled"
        masks_applied = stage in ("masked", "weights")
        fig = viz.thumbnail_grid(np.asarray(getattr(rec, stage))[0], ql, kl, cells=cells, cols=min(4, len(cells)),
                                 allowed=allowed_matrix(rec) if masks_applied else None, stage=stage,
                                 row_names=[f"{sel.kind} layer {i}" for i in ctx.layers],
                                 title=f"{sel.kind} attention, layer {sel.layer}: {viz.STAGE_NAMES[stage]} of every "
                                       "head (click one to open it)")
        scale = "0..1" if stage == "weights" else "one diverging scale around 0, shared by every head"
        st.caption(f"Rows are queries, columns are keys; {viz.STAGE_NAMES[stage]} on {scale}"
                   + ("; grey cells are masked." if masks_applied else "."))
    else:
        thumbs = list(ctx.traced.overview(sel.name))
        fig = viz.overview_mosaic(thumbs, cells, cols=min(8, len(cells)),
                                  row_names=[f"layer {i}" for i in ctx.layers],
                                  title=f"{sel.kind} attention, layer {sel.layer}: every head (click one to open it)",
                                  note=f"{len(q)} x {len(k)} tokens: each thumbnail max-pooled to "
                                       f"{thumbs[0].shape[0]} x {thumbs[0].shape[1]}; the map you open is exact")
        if sel.stage != "weights":
            st.caption(f"Above {viz.GRID_MAX_TOKENS} tokens the thumbnails are pooled weights; open a head for its "
                       f"{viz.STAGE_NAMES[sel.stage]}.")
    chart(fig, key, on_select=partial(open_cell, key, cells, None), selection_mode="points", theme=None)


def model_overview(ctx: Context) -> None:
    sel = ctx.sel
    names = ctx.names_of_kind()
    H = ctx.info.n_heads
    cells = [(i, h) for i in ctx.layers for h in range(H)]
    q, k, _, _ = ctx.axes_for(sel.name)
    exact = max(len(q), len(k)) <= OVERVIEW_EXACT_MAX and not ctx.traced.lazy
    if exact:
        thumbs = []
        for n in names:
            rec = ctx.traced.record(n)
            w = np.asarray(rec.weights, dtype=np.float32)[0]
            thumbs += list(np.where(allowed_matrix(rec), w, np.nan))
        note = f"exact weights ({len(q)} x {len(k)}), enlarged; masked cells grey"
    else:
        thumbs = [t for n in names for t in ctx.traced.overview(n)]
        note = (f"{len(q)} x {len(k)} tokens, each thumbnail max-pooled to {thumbs[0].shape[0]} x {thumbs[0].shape[1]} "
                "(uint8) from the first pass; the map you open is exact")
    fig = viz.overview_mosaic(thumbs, cells, cols=H, row_names=[f"layer {i}" for i in ctx.layers],
                              title=f"{sel.kind} attention: {len(names)} layers x {H} heads (click one to open it)",
                              note=note)
    chart(fig, "overview", on_select=partial(open_cell, "overview", cells, sel.kind), selection_mode="points",
          theme=None)
    if sel.stage != "weights":
        st.caption(f"The overview shows every head's weights; open a head (or the head grid) for its "
                   f"{viz.STAGE_NAMES[sel.stage]}.")
