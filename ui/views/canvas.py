"""The attention map at every length, on the canvas component: every head of one attention (exact cells for short
inputs, a pooled overview with exact cells once zoomed in for long ones), the maps the page may switch to without a
rerun (other layers, kinds and stages), the query strip of a clicked row, and "find in text".

Parts are built from the trace (viz.tiles) and kept per traced call: each map's overview once per attention and
stage, the stack of a short input's maps once, the detail once per head, stage and view (a few recent ones).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

import viz
from model import STAGES, RecordName
from model.capture.trace import stage_values
from model.core.interventions import Cells
from model.core.names import story_order
from model.core.reasons import record_codes
from viz import map_parts, tiles

from .. import state, validate
from ..components import attention_canvas
from ..page_types import Context
from .common import chart
from .knockout import knockout_panel
from .record_map import EXACT_BYTES

MAP_KEY = "map"
RECENT_DETAILS = 24  # detail parts kept per traced call
STACK_BYTES = 4 * 2**20  # the maps a short input sends at once (every kind, layer and stage, if they fit)
NEAR_BYTES = 16 * 2**20  # the neighbours of the shown map sent after it is drawn (layers beside it, its stages)
NEAR_NOW_BYTES = 1 * 2**20  # up to this size the neighbours go in the same run; above, once the page asks


@dataclass(frozen=True)
class MapChoice:
    """One map the page can show: an attention kind, a layer and a stage (every head of it)."""

    kind: str
    layer: int
    stage: str

    @property
    def name(self) -> str:
        return str(RecordName.of_kind(self.kind, self.layer))

    def as_dict(self) -> dict:
        return {"kind": self.kind, "layer": self.layer, "stage": self.stage}


def stages_of(ctx: Context) -> list[str]:
    return [s for s in STAGES if s in ctx.info.stages]


def all_choices(ctx: Context) -> list[MapChoice]:
    """Every map of the model, in the page's order: kinds (cross first), layers, stages."""
    out = []
    for kind in story_order(ctx.info.kinds()):
        for layer in sorted(RecordName.parse(n).layer for n in ctx.info.names_of_kind(kind)):
            out += [MapChoice(kind, layer, s) for s in stages_of(ctx)]
    return out


def choices_of(ctx: Context) -> dict:
    """The page's controls: kind (when the model has several), layer and, after the heads, stage."""
    every = all_choices(ctx)
    kinds = list(dict.fromkeys(c.kind for c in every))
    layers = sorted({c.layer for c in every})
    stages = stages_of(ctx)
    groups = [tiles.choice_group("kind", kinds, label="attention"), tiles.choice_group("layer", layers),
              tiles.choice_group("stage", stages, texts=[viz.STAGE_NAMES[s] for s in stages], after_heads=True)]
    return tiles.choice_groups(groups, [[c.kind, c.layer, c.stage] for c in every])


def scope_of(ctx: Context) -> str:
    return f"call-{ctx.traced.serial}"


def _labels(ctx: Context, name: str):
    return map_parts.map_labels(ctx.result, name)


def _cells(ctx: Context, name: str) -> int:
    shape = ctx.traced.trace.shape(name)
    return shape.n_heads * shape.tq * shape.tk


def precision_of(ctx: Context, name: str) -> str:
    """How a map's overview holds its cells: "f4" (exact float32, from the record, up to EXACT_BYTES), "u1" (uint8
    of every cell, pool 1) or "p<pool>" (uint8 block maxima from the trace's overview)."""
    trace = ctx.traced.trace
    pool = trace.overview_pool(name)
    if pool > 1:
        return f"p{pool}"
    if _cells(ctx, name) * 4 <= EXACT_BYTES and not ctx.traced.lazy:
        return "f4"
    return "u1"


def overview_bytes(ctx: Context, name: str) -> int:
    """What a map's overview holds (``precision_of``): every head's float32 or uint8 cells, or its pooled blocks."""
    precision = precision_of(ctx, name)
    if precision.startswith("p"):
        shape, pool = ctx.traced.trace.shape(name), int(precision[1:])
        return shape.n_heads * -(-shape.tq // pool) * -(-shape.tk // pool)
    return _cells(ctx, name) * (4 if precision == "f4" else 1)


def map_overview(ctx: Context, choice: MapChoice, precision: str | None = None) -> dict:
    """The overview of one map (every head), memoised per traced call; its id names the map and how it is held, so
    that the same map sent in a stack and as the shown overview is one map to the page."""
    name, stage = choice.name, choice.stage
    precision = precision or precision_of(ctx, name)
    scope = scope_of(ctx)

    def build() -> dict:
        trace = ctx.traced.trace
        shape = trace.shape(name)
        rows, cols, produces = _labels(ctx, name)
        common = dict(produces=produces, value_name=viz.STAGE_NAMES.get(stage, stage),
                      title=map_parts.map_title(name, stage),
                      heads=[str(h) for h in range(shape.n_heads)], choice=choice.as_dict(), scope=scope,
                      overview_id=f"{scope}/{name}/{stage}/{precision}")
        if precision in ("f4", "u1") and not ctx.traced.lazy:
            rec = ctx.traced.record(name)
            values = np.asarray(stage_values(rec, stage), dtype=np.float32)[0]  # (H, Tq, Tk)
            codes = record_codes(rec) if stage in ("masked", "weights") else None
            return tiles.exact_overview(values, rows, cols, codes=codes, stage=stage, exact=precision == "f4",
                                        **common)
        return map_parts.overview_part(ctx.result, name, stage, choice=choice.as_dict(), scope=scope,
                                       overview_id=common["overview_id"])
    return ctx.traced.memo(("canvas-overview", name, stage, precision), build)


def overview_part(ctx: Context, name: str, stage: str) -> dict:
    """The shown map's overview: every head's tile of one attention and stage, and the page's choices."""
    n = RecordName.parse(name)
    ov = map_overview(ctx, MapChoice(n.kind, n.layer, stage))
    return {**ov, "choices": choices_of(ctx)}


def stack_part(ctx: Context, shown: MapChoice) -> dict:
    """A short input's maps, sent at once so that the page switches between them without a rerun: every kind, layer
    and stage as float32 if they fit STACK_BYTES, else as uint8, else every layer of the shown kind and stage (float32
    or uint8). Empty for long inputs and lazy traces (their neighbours come in the near stack)."""
    every = all_choices(ctx)
    if ctx.traced.lazy or any(ctx.traced.trace.overview_pool(c.name) > 1 for c in every):
        return tiles.stack_payload([])
    cells = {c: _cells(ctx, c.name) for c in every}
    same = [c for c in every if c.kind == shown.kind and c.stage == shown.stage]
    for chosen, precision in ((every, "f4"), (every, "u1"), (same, "f4"), (same, "u1")):
        if sum(cells[c] for c in chosen) * (4 if precision == "f4" else 1) <= STACK_BYTES:
            key = ("canvas-stack", precision, None if chosen is every else (shown.kind, shown.stage))
            return ctx.traced.memo(key, lambda chosen=chosen, precision=precision: tiles.stack_payload(
                [map_overview(ctx, c, precision) for c in chosen]))
    return tiles.stack_payload([])


CHEAP_CELLS = 1 << 18  # a lazy trace computes another stage's overview when a head has at most this many cells


def neighbours(ctx: Context, shown: MapChoice) -> list[MapChoice]:
    """The maps a user goes to next from ``shown``: the layers beside it (two each way: the next step is held before
    its own neighbours come), its other stages, the other kinds at its layer. Another stage of a long lazy trace
    costs a pass over the attention (over 1 s at 1,024 tokens here): weights only there."""
    every = set(all_choices(ctx))
    out = [MapChoice(shown.kind, shown.layer + d, shown.stage) for d in (1, -1, 2, -2)]
    out += [MapChoice(shown.kind, shown.layer, s) for s in stages_of(ctx) if s != shown.stage]
    out += [MapChoice(k, shown.layer, shown.stage) for k in story_order(ctx.info.kinds()) if k != shown.kind]

    def cheap(c: MapChoice) -> bool:
        shape = ctx.traced.trace.shape(c.name)
        return not ctx.traced.lazy or c.stage == "weights" or shape.tq * shape.tk <= CHEAP_CELLS
    return [c for c in out if c in every and cheap(c)]


def near_part(ctx: Context, shown: MapChoice, stack: dict, *, defer: bool) -> dict:
    """The shown map's neighbours not in the stack, up to NEAR_BYTES; deferred (the page asks once the map is drawn)
    when ``defer`` and they are more than NEAR_NOW_BYTES or need a pass over the attention."""
    have = {json.dumps(o["choice"], sort_keys=True) for o in stack.get("overviews", [])}
    todo = [c for c in neighbours(ctx, shown) if json.dumps(c.as_dict(), sort_keys=True) not in have]
    if not todo:
        return tiles.stack_payload([], slot="near")
    per_map = {c: overview_bytes(ctx, c.name) for c in todo}
    ready = all(ctx.traced.has(("canvas-overview", c.name, c.stage, precision_of(ctx, c.name))) for c in todo)
    if defer and not ready and (sum(per_map.values()) > NEAR_NOW_BYTES or ctx.traced.lazy):
        return tiles.deferred_stack("near")
    chosen, total = [], 0
    for c in todo:
        if total + per_map[c] <= NEAR_BYTES:
            chosen.append(c)
            total += per_map[c]
    return tiles.stack_payload([map_overview(ctx, c) for c in chosen], slot="near")


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


def _choice_from_page() -> None:
    """The page drew another map (a layer, kind or stage picked on it): the page's selectors follow."""
    choice = validate.choice((st.session_state.get(MAP_KEY) or {}).get("choice"))
    if choice is None:
        return
    for name, kind in (("kind", str), ("layer", int), ("stage", str)):
        if isinstance(choice.get(name), kind) and not isinstance(choice.get(name), bool):
            state.set_value(name, choice[name])


def _query_from_page(tq: int, tk: int, n_heads: int) -> None:
    query = page_state(tq, tk, n_heads)["query"]
    if query is not None:
        st.session_state["map_query"] = query


def canvas_map(ctx: Context, stage: str) -> dict:
    """Draw the map of the selected attention and head; returns the page's state (view, head, query, selection),
    checked by ui.validate."""
    sel = ctx.sel
    name, head = sel.name, max(sel.head, 0)
    shown = MapChoice(sel.kind, sel.layer, stage)
    started = time.perf_counter()
    with st.spinner("Pooling every head's map…" if stage == "weights" else
                    f"Computing the {viz.STAGE_NAMES.get(stage, stage)} of every head, a block of rows at a time…"):
        overview = overview_part(ctx, name, stage)
    shape = ctx.traced.trace.shape(name)
    seen = page_state(shape.tq, shape.tk, ctx.info.n_heads)
    view = seen["view"]
    goto = st.session_state.pop("map_goto", None)
    # a new overview (another layer, stage or input) goes to the page alone; its detail and neighbours follow when
    # the page asks (Streamlit draws the map only once the run ends: they would delay it)
    new = st.session_state.get("map_overview_sent") != overview["id"]
    st.session_state["map_overview_sent"] = overview["id"]
    exact = "values" in overview
    stack = stack_part(ctx, shown)
    detail = None if exact else (  # exact cells need no detail
        lambda: detail_part(ctx, name, head, stage, view, overview["id"], defer=new))
    bounds = (shape.tq, shape.tk, ctx.info.n_heads)
    attention_canvas({"overview": overview, "head": None, "detail": detail,
                      "stacks": {"stack": stack, "near": lambda: near_part(ctx, shown, stack, defer=new)}},
                     key=MAP_KEY, on_head_change=partial(_head_from_page, *bounds),
                     on_query_change=partial(_query_from_page, *bounds), on_detail_request_change=_noop,
                     on_choice_change=_choice_from_page, goto=goto, head=head)
    pool = overview["pool"]
    how = "exact" if pool == 1 else f"max over {pool} × {pool} blocks"
    computed = ("computed on demand from the saved q and k by attention(), bitwise what the call computed"
                if ctx.traced.lazy and getattr(ctx.traced.trace, "exact", False) else
                "computed on demand by attention() from the q and k the call kept; the model's own forward ran the "
                "fast path, which agrees to float rounding (~1e-7)" if ctx.traced.lazy else "captured")
    side = int(tiles.DETAIL_MAX_CELLS ** 0.5)
    hover = ("hover any cell for both tokens and its value" if shape.tq * shape.tk <= tiles.DETAIL_MAX_CELLS else
             f"hover any cell for both tokens and its value (exact once at most {side:,} × {side:,} cells are in "
             "view; over that, the overview's, to 1/255)")
    zoom = "" if exact else ("; zoom in (wheel, drag a box, + / −, arrow keys) for exact cells with token labels")
    rows = (" Decoder rows read their token and, after the arrow, say what the model predicts there."
            if RecordName.parse(name).query_stack == "decoder" and ctx.result.output_tokens else "")
    if shape.n_kv_heads < shape.n_heads:
        group = shape.n_heads // shape.n_kv_heads
        rows += (f" Grouped-query attention: heads {group} at a time share a key/value head (head h reads key/value "
                 f"head h // {group}).")
    st.caption(f"{shape.tq:,} × {shape.tk:,} tokens, queries down, keys across; the whole map is {how}{zoom}; "
               f"{hover}; click a row for its query strip; layers, kinds, stages and heads switch on the map itself."
               f"{rows} Hatched grey cells are masked (the legend and the hover say why). Every value is the number "
               f"the model used in this call ({computed}). Drawn in {time.perf_counter() - started:.2f} s on the "
               "server.")
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


__all__ = ["MapChoice", "canvas_map", "find_in_text", "knockout_from_map", "map_overview", "query_strip",
           "selected_cells", "stack_part"]
