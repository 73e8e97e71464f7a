"""The selection as a table; CSV (spreadsheet-safe) and JSON (exact) of it and, within a budget, of the trace."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import viz
from model import RecordName, settings
from viz import standalone

from .. import state
from ..models import model_name, model_stem
from ..page_types import Context
from .canvas import page_state
from .common import FIGURE_FORMATS, table_downloads

TABLE_ROWS_SHOWN = 20_000  # the on-page table; the downloads hold every row


def export_budget() -> int:
    """INSPECTOR_MAX_EXPORT_MB (default 64): the largest CSV the app builds for one download."""
    try:
        return settings.megabytes("INSPECTOR_MAX_EXPORT_MB")
    except ValueError:
        return 64 * 2**20


def record_rows(ctx: Context, name: str) -> int:
    n = RecordName.parse(name)
    q = len(ctx.tokens(n.query_stack))
    k = len(ctx.tokens(n.key_stack))
    return ctx.info.n_heads * q * k


def export(ctx: Context) -> None:
    sel = ctx.sel
    h = None if sel.head < 0 else sel.head
    src, tgt = ctx.tokens("encoder") or None, ctx.tokens("decoder") or None
    budget = export_budget()
    rows = record_rows(ctx, sel.name) // (1 if h is None else ctx.info.n_heads)
    stem = f"{model_stem(ctx.pick.base)}_{sel.name}" + ("" if h is None else f"_head{h}")
    figures(ctx, stem)
    if viz.estimated_csv_bytes(rows) > budget or not ctx.traced.record_fits(sel.name):
        st.warning(f"This selection has {rows:,} rows (about {viz.estimated_csv_bytes(rows) / 2**20:,.0f} MB of "
                   f"CSV), over the export budget of {budget / 2**20:.0f} MB (INSPECTOR_MAX_EXPORT_MB) or the record "
                   "budget: below is the window the map shows (or its top-left corner), every stage.")
        export_window(ctx, max(sel.head, 0), stem)
        return
    df = viz.selection_table(ctx.traced.trace if not ctx.traced.lazy else {sel.name: ctx.rec}, sel.name, h, src, tgt)
    st.dataframe(df.head(TABLE_ROWS_SHOWN), hide_index=True, height=360)
    if len(df) > TABLE_ROWS_SHOWN:
        st.caption(f"Showing the first {TABLE_ROWS_SHOWN:,} of {len(df):,} rows; the downloads hold all of them.")
    meta = {"model": model_name(ctx.pick.base), "step": ctx.pick.step, "source": ctx.inputs.source,
            "attention": sel.name, "head": h, "source_tokens": src, "target_tokens": tgt,
            "output": ctx.result.output_text}
    a, b, c = st.columns(3)
    table_downloads(df, "this selection", stem, "dl_csv", meta, json_key="dl_json", columns=(a, c))
    total_rows = sum(record_rows(ctx, n) for n in ctx.traced.names)
    if viz.estimated_csv_bytes(total_rows) <= budget:
        # built once when asked, kept with the traced call (and counted in its budget), then an ordinary download:
        # a deferred one's file was not held for its session, and other sessions' clean-ups deleted it
        key = ("whole_trace_csv",)
        if ctx.traced.has(key) or b.button("Prepare the whole trace as CSV", key="prep_trace"):
            def whole_trace() -> bytes:  # one record at a time for a lazy trace
                frames = [viz.selection_table({n: ctx.traced.record(n)}, n, None, src, tgt)
                          for n in ctx.traced.names]
                return viz.to_csv_bytes(pd.concat(frames, ignore_index=True))

            with st.spinner("Building the whole trace's CSV…"):
                data = ctx.traced.memo(key, whole_trace)
            b.download_button(f"CSV of the whole trace ({len(data) / 2**20:,.1f} MB)", data,
                              f"{model_stem(ctx.pick.base)}_trace.csv", "text/csv", key="dl_trace", on_click="ignore")
    else:
        b.caption(f"The whole trace has {total_rows:,} rows (~{viz.estimated_csv_bytes(total_rows) / 2**20:,.0f} "
                  f"MB of CSV), over the {budget / 2**20:.0f} MB export budget: export one attention at a time.")
    st.caption("In the CSV, text cells that start with = + - @ carry a leading apostrophe so that spreadsheets do not "
               "run them; the JSON keeps the exact text.")


def export_window(ctx: Context, head: int, stem: str) -> None:
    """The map's current view (at most 512 x 512 cells) of one head as a table and its downloads."""
    sel = ctx.sel
    shape = ctx.traced.trace.shape(sel.name)
    view = page_state(shape.tq, shape.tk, ctx.info.n_heads)["view"] or {}  # checked: the browser's report
    r0, c0 = int(view.get("r0", 0)), int(view.get("c0", 0))
    rows = range(max(0, r0), min(shape.tq, max(r0 + 1, int(view.get("r1", 512))), max(0, r0) + 512))
    cols = range(max(0, c0), min(shape.tk, max(c0 + 1, int(view.get("c1", 512))), max(0, c0) + 512))
    n = RecordName.parse(sel.name)
    df = ctx.traced.recent(("window_table", sel.name, head, rows.start, rows.stop, cols.start, cols.stop),
                           lambda: viz.window_table(ctx.traced.trace, sel.name, head, rows, cols,
                                                    ctx.tokens(n.query_stack), ctx.tokens(n.key_stack)), 4)
    st.dataframe(df.head(TABLE_ROWS_SHOWN), hide_index=True, height=320)
    stem = f"{stem}_head{head}_q{rows.start}-{rows.stop - 1}_k{cols.start}-{cols.stop - 1}"
    meta = {"model": model_name(ctx.pick.base), "attention": sel.name, "head": head,
            "queries": [rows.start, rows.stop - 1], "keys": [cols.start, cols.stop - 1]}
    table_downloads(df, "this window", stem, "dl_win_csv", meta, json_key="dl_win_json")


def figures(ctx: Context, stem: str) -> None:
    """The map as one self-contained HTML file (viz.standalone: this attention and stage, opened at the head and view
    the map shows; prepared when asked, then an ordinary download), and what every chart's camera saves."""
    sel = ctx.sel
    stage = sel.stage if sel.stage != "adjusted" or "adjusted" in ctx.info.stages else "scaled"
    head = max(sel.head, 0)
    shape = ctx.traced.trace.shape(sel.name)
    view = page_state(shape.tq, shape.tk, ctx.info.n_heads)["view"]  # checked and clamped to the map, or None
    a, b = st.columns(2)
    key = ("standalone_html", sel.name, stage, head, json.dumps(view, sort_keys=True))
    if ctx.traced.has_recent(key) or a.button("Prepare this map as one HTML file", key="prep_html",
                                              help="Every head's overview, exact cells up to "
                                                   f"{standalone.EXACT_CELLS:,}; opens offline in any browser"):
        caption = f"{model_name(ctx.pick.base)}: {ctx.inputs.source[:80]}"
        with st.spinner("Writing the file…"):
            out = ctx.traced.recent(key, lambda: standalone.standalone_html(ctx.result, sel.name, stage, head, view,
                                                                            caption=caption), 2)
        a.download_button(f"HTML of this map ({out.nbytes / 2**20:,.1f} MB)", out.html.encode("utf-8"),
                          f"{stem}_{stage}.html", "text/html", key="dl_html", on_click="ignore")
        a.caption(f"One file, nothing fetched when opened: hover, zoom, head buttons, find, PNG; {out.note}.")
    with b:
        state.segmented_control("Every chart's camera saves", list(FIGURE_FORMATS), key="figure_format")
    b.caption("PNG at 2× or SVG (vector, for papers); the attention canvas has its own PNG button (2×, with its axes "
              "and colour bar).")
