"""The attention map at any length, on the canvas component: the pooled overview of every head of one attention,
exact cells once zoomed in, the query strip of a clicked row, and "find in text".

Parts are built from the trace (viz.tiles) and kept per traced call: the overview once per attention and stage,
the detail once per head, stage and view (a few recent ones).
"""

from __future__ import annotations

import json
import time
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

import viz
from model import RecordName
from model.core.interventions import Cells
from viz import tiles

from .. import state, validate
from ..components import attention_canvas
from ..page_types import Context
from .common import chart
from .knockout import knockout_panel

CANVAS_ABOVE = 128  # maps with more tokens than this on an axis are drawn on the canvas (Plotly below)
MAP_KEY = "map"
RECENT_DETAILS = 24  # detail parts kept per traced call


def wants_canvas(ctx: Context, name: str) -> bool:
    shape = ctx.traced.trace.shape(name)
    return max(shape.tq, shape.tk) > CANVAS_ABOVE


def _labels(ctx: Context, name: str):
    n = RecordName.parse(name)
    rows = ctx.tokens(n.query_stack)
    cols = None if n.key_stack == n.query_stack else ctx.tokens(n.key_stack)
    produces = ctx.result.output_tokens if n.query_stack == "decoder" and ctx.result.output_tokens else None
    if produces is not None and len(produces) != len(rows):
        produces = None
    return rows, cols, produces


def overview_part(ctx: Context, name: str, stage: str) -> dict:
    """Every head's overview tile of one attention and stage (uint8), its masks' blocks and the token labels."""
    def build() -> dict:
        trace = ctx.traced.trace
        shape = trace.shape(name)
        pool = trace.overview_pool(name)
        if stage == "weights":
            held, lo, hi, cmap = trace.overview(name, "max"), 0.0, 1.0, "viridis"
        else:
            values = trace.stage_overview(name, stage)
            lo, hi, cmap = tiles.value_range(stage, values)
            held = tiles.quantize(values, lo, hi)
        reasons = trace.block_reasons(name)
        codes = tiles.codes_from_reasons(reasons, held.shape[1:]) if reasons else None
        rows, cols, produces = _labels(ctx, name)
        n = RecordName.parse(name)
        return tiles.overview_payload(
            held, pool, shape.tq, shape.tk, rows, cols, reasons=codes, produces=produces, lo=lo, hi=hi,
            colormap=cmap, value_name=viz.STAGE_NAMES.get(stage, stage),
            title=f"{n.kind} attention · layer {n.layer} · {viz.STAGE_NAMES.get(stage, stage)}",
            heads=[str(h) for h in range(shape.n_heads)], head=max(ctx.sel.head, 0))
    return ctx.traced.memo(("canvas-overview", name, stage), build)


def detail_part(ctx: Context, name: str, head: int, stage: str, view: dict | None, overview_id: str, *,
                defer: bool = False) -> dict:
    """The cells of the reported view: exact once it holds at most tiles.DETAIL_SIDE cells per axis, else block
    maxima with where each maximum is (so the hover is exact at every zoom, up to tiles.DETAIL_MAX_CELLS cells).
    ``defer``: unless it is at hand, leave it for the page to ask for (a new overview is drawn without waiting)."""
    shape = ctx.traced.trace.shape(name)
    window = tiles.detail_window(view, shape.tq, shape.tk)
    if tiles.detail_too_big(window):
        return tiles.skipped_detail(window, head=head, overview_id=overview_id)
    key = ("canvas-detail", name, head, stage, json.dumps(window, sort_keys=True))
    if defer and not ctx.traced.has_recent(key):
        return tiles.deferred_detail(window, head=head, overview_id=overview_id)
    return ctx.traced.recent(key, lambda: tiles.trace_detail(ctx.traced.trace, name, head, window, stage,
                                                             overview_id=overview_id, view=view or window),
                             RECENT_DETAILS)


def _noop() -> None:
    """The page asked for a deferred detail: the rerun this triggers computes it."""


def page_state(tq: int, tk: int, n_heads: int) -> dict:
    """What the page reported (view, head, query, selection, detail request), checked by ui.validate."""
    return validate.canvas_state(st.session_state.get(MAP_KEY), tq, tk, n_heads)


def _head_from_page(tq: int, tk: int, n_heads: int) -> None:
    head = page_state(tq, tk, n_heads)["head"]
    if head is not None:
        state.set_value("head", head)


def _query_from_page(tq: int, tk: int, n_heads: int) -> None:
    query = page_state(tq, tk, n_heads)["query"]
    if query is not None:
        st.session_state["map_query"] = query


def canvas_map(ctx: Context, stage: str) -> dict:
    """Draw the map of the selected attention and head; returns the page's state (view, head, query, selection),
    checked by ui.validate."""
    sel = ctx.sel
    name, head = sel.name, max(sel.head, 0)
    started = time.perf_counter()
    with st.spinner("Pooling every head's map…" if stage == "weights" else
                    f"Computing the {viz.STAGE_NAMES.get(stage, stage)} of every head, a block of rows at a time…"):
        overview = overview_part(ctx, name, stage)
    shape = ctx.traced.trace.shape(name)
    seen = page_state(shape.tq, shape.tk, ctx.info.n_heads)
    view = seen["view"]
    goto = st.session_state.pop("map_goto", None)
    # a new overview (another layer, stage or input) goes to the page alone; its detail follows when the page asks
    # (Streamlit draws the map only once the run ends: its detail, 80 ms at 1,024 tokens, would delay it)
    new = st.session_state.get("map_overview_sent") != overview["id"]
    st.session_state["map_overview_sent"] = overview["id"]
    detail = lambda: detail_part(ctx, name, head, stage, view, overview["id"], defer=new)  # noqa: E731
    bounds = (shape.tq, shape.tk, ctx.info.n_heads)
    attention_canvas({"overview": overview, "head": None, "detail": detail}, key=MAP_KEY,
                     on_head_change=partial(_head_from_page, *bounds),
                     on_query_change=partial(_query_from_page, *bounds), on_detail_request_change=_noop, goto=goto)
    pool = overview["pool"]
    how = "exact" if pool == 1 else f"max over {pool} × {pool} blocks"
    exact = ("computed on demand from the saved q and k by attention(), bitwise what the call computed"
             if ctx.traced.lazy and getattr(ctx.traced.trace, "exact", False) else
             "computed on demand by attention() from the q and k the call kept; the model's own forward ran the fast "
             "path, which agrees to float rounding (~1e-7)" if ctx.traced.lazy else "captured")
    side = int(tiles.DETAIL_MAX_CELLS ** 0.5)
    hover = ("hover any cell for both tokens and its value" if shape.tq * shape.tk <= tiles.DETAIL_MAX_CELLS else
             f"hover any cell for both tokens and its value (exact once at most {side:,} × {side:,} cells are in "
             "view; over that, the overview's, to 1/255)")
    st.caption(f"{shape.tq:,} × {shape.tk:,} tokens; the whole map is {how}, zoom in (wheel, drag a box, + / −, "
               f"arrow keys) for exact cells with token labels; {hover}; click "
               f"a row for its query strip. Every value is the number the model used in this call ({exact}). "
               f"Drawn in {time.perf_counter() - started:.2f} s on the server.")
    return page_state(*bounds)


def query_strip(ctx: Context, query: int) -> None:
    """One query's weights over every key, and its strongest keys."""
    sel = ctx.sel
    name, head = sel.name, max(sel.head, 0)
    shape = ctx.traced.trace.shape(name)
    query = int(np.clip(query, 0, shape.tq - 1))
    row = ctx.traced.recent(("row", name, head, query), lambda: ctx.traced.trace.row(name, head, query, top=10), 64)
    rows, cols, _ = _labels(ctx, name)
    keys = cols if cols is not None else rows
    chart(viz.query_strip(row.weights, row.allowed, keys, title=f"query {query}·{viz.esc(rows[query])}: its weight on "
                                                                    f"every key (head {head})"), "map_strip")
    top = pd.DataFrame({"key": [f"{int(k)}·{keys[int(k)]}" for k in row.top_keys],
                        "weight": np.round(row.top_weights.astype(float), 4)})
    st.dataframe(top, hide_index=True, height=min(400, 38 + 35 * len(top)))


def selected_cells(selection: dict | None, tq: int, tk: int) -> tuple[Cells, str] | None:
    """The canvas's selection ({"kind": "cells" | "row" | "column" | "rect", ...}), checked by ui.validate, as
    knockout cells: (Cells, never a (Tq, Tk) array; what it is in words), or None when nothing is selected."""
    picked = validate.selection(selection, tq, tk)
    if picked is None:
        return None
    kind = picked["kind"]
    if kind == "cells":
        return Cells.select(tq, tk, pairs=picked["cells"]), f"{len(picked['cells'])} cell(s)"
    if kind == "row":
        return Cells.select(tq, tk, queries=[picked["row"]]), f"query row {picked['row']}"
    if kind == "column":
        return Cells.select(tq, tk, keys=[picked["col"]]), f"key column {picked['col']}"
    r0, r1, c0, c1 = (picked[k] for k in ("r0", "r1", "c0", "c1"))
    return Cells.select(tq, tk, rows=range(r0, r1), cols=range(c0, c1)), f"queries {r0}–{r1 - 1} × keys {c0}–{c1 - 1}"


def knockout_from_map(ctx: Context, selection: dict | None) -> None:
    """Under the map: "Knock out" the cells selected on it (select: cells, row, column or rect), then the what-if."""
    sel = ctx.sel
    shape = ctx.traced.trace.shape(sel.name)
    picked = selected_cells(selection, shape.tq, shape.tk)
    if picked is None:
        st.caption("To knock cells out, pick *select* on the map (cells, a row, a key column such as a sink, or a "
                   "rectangle), then “Knock out”.")
        return
    cells, what = picked
    head = max(sel.head, 0)
    if st.button(f"Knock out {what} of head {head}", key="map_knock_out"):
        st.session_state["map_ko"] = (sel.name, head, cells)
    chosen = st.session_state.get("map_ko")
    if chosen and chosen[0] == sel.name:
        knockout_panel(ctx, *chosen)


def find_in_text(ctx: Context) -> None:
    """Type a word: the positions whose token holds it; "Show" moves the map there."""
    sel = ctx.sel
    rows, cols, _ = _labels(ctx, sel.name)
    c1, c2 = st.columns([3, 1])
    with c1:
        word = st.text_input("Find in text", key="map_find", max_chars=200, placeholder="a word of the input")
    if not word or not word.strip():
        return
    needle = word.strip().lower()
    matches = [i for i, t in enumerate(rows) if needle in str(t).lower()][:500]
    if not matches:
        st.caption(f"No query token holds “{viz.esc(word.strip())}”.")
        return
    with c2:
        pos = st.selectbox("Position", matches, key="map_find_pos",
                           format_func=lambda i: f"{i}·{rows[i]}")
    half = 32
    shape = ctx.traced.trace.shape(sel.name)
    r0 = max(0, pos - half)
    center = pos + (shape.tk - shape.tq) if cols is None else min(pos, shape.tk - 1)
    k0 = max(0, center - 2 * half)
    if st.button("Show it on the map", key="map_find_go"):
        st.session_state["map_goto"] = {"r0": r0, "r1": min(shape.tq, r0 + 2 * half), "c0": k0,
                                        "c1": min(shape.tk, k0 + 4 * half), "nonce": time.time()}
        st.session_state["map_query"] = int(pos)
        st.rerun(scope="fragment")
    st.caption(f"{len(matches)} position(s) hold it" + (" (the first 500)" if len(matches) == 500 else "") + ".")


__all__ = ["CANVAS_ABOVE", "canvas_map", "find_in_text", "knockout_from_map", "query_strip", "selected_cells",
           "wants_canvas"]
