"""Head statistics: a sortable table of every head and a layers x heads strip of one statistic (click to open)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

import viz
from model.analysis import STAT_DEFINITIONS
from model.analysis.heads import head_table

from .. import state
from .common import Context, chart, open_cell

RANGES = {"entropy_norm": (0, 1), "max_weight": (0, 1), "first_share": (0, 1), "sep_share": (0, 1),
          "self_share": (0, 1), "prev_token": (0, 1), "induction": (0, 1)}


def statistics_table(ctx: Context):
    """Every head's statistics for this call, from the trace's row statistics (a lazy trace's first pass: no record
    is computed), once per call."""
    return ctx.traced.memo("head_table", lambda: head_table(ctx.traced.trace))


def statistics(ctx: Context) -> None:
    with st.spinner("Computing every head's statistics…"):
        table = statistics_table(ctx)
    stats = [s for s in STAT_DEFINITIONS if table[s].notna().any()]
    stat = state.selectbox("Statistic on the strip", stats, key="stat",
                           default="entropy_norm" if "entropy_norm" in stats else stats[0],
                           format_func=lambda s: f"{s}: {STAT_DEFINITIONS[s]}")
    sel = ctx.sel
    mine = table[table["kind"] == sel.kind]
    lo, hi = RANGES.get(stat, (None, None))
    fig = viz.head_strip(mine, stat, title=f"{sel.kind} attention: {stat} per head (click a cell to open it)",
                         zmin=lo, zmax=hi, hover_columns=[s for s in stats if s != stat][:5],
                         definition=STAT_DEFINITIONS[stat])
    strip_cells = [tuple(c) for c in fig.layout.meta["cells"]]
    chart(fig, "stat_strip", on_select=partial(open_cell, "stat_strip", strip_cells, sel.kind),
          selection_mode="points", theme=None)
    st.dataframe(table.round(4), hide_index=True, height=360,
                 column_config={s: st.column_config.NumberColumn(s, help=STAT_DEFINITIONS[s]) for s in stats})
    st.caption("Masked keys never count; query rows with no allowed key are left out. Sort by a column header. "
               "Induction scores need a decoder self-attention and an input in which a token repeats.")
    stem = f"{Path(ctx.pick.base).name}_head_statistics"
    a, b = st.columns(2)
    a.download_button("CSV of the statistics", viz.to_csv_bytes(table), f"{stem}.csv", "text/csv", key="dl_stats")
    b.download_button("JSON of the statistics", viz.to_json_bytes(table, {"definitions": STAT_DEFINITIONS,
                                                                          "source": ctx.inputs.source}),
                      f"{stem}.json", "application/json", key="dl_stats_json")
