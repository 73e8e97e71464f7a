"""Head statistics: a sortable table of every head and a layers x heads strip of one statistic (click to open)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

import viz
from model.analysis import STAT_DEFINITIONS
from model.analysis.heads import head_table
from model.core.rowstats import HUMAN_NAMES, SHARES

from .. import state
from ..page_types import Context
from .common import chart, open_cell, table_downloads

RANGES = dict.fromkeys(SHARES, (0, 1))
# what a reader looks at first, per architecture (the rest follow in STAT_DEFINITIONS order)
RELEVANT = {"decoder-only": ("induction", "prev_token", "entropy_norm", "first_share", "max_weight", "distance"),
            "encoder-only": ("entropy_norm", "first_share", "sep_share", "max_weight", "self_share", "distance"),
            "encoder-decoder": ("entropy_norm", "max_weight", "first_share", "sep_share", "self_share", "distance")}
ID_COLUMNS = ("attention", "kind", "layer", "head")


def statistics_table(ctx: Context):
    """Every head's statistics for this call, from the trace's row statistics (a lazy trace's first pass: no record
    is computed), once per call."""
    return ctx.traced.memo("head_table", lambda: head_table(ctx.traced.trace))


def with_values(table) -> list[str]:
    """The statistics that have a value for some head of this call (an induction score needs a repeated token)."""
    return [s for s in STAT_DEFINITIONS if s in table and table[s].notna().any()]


def ordered_stats(stats: list[str], arch: str) -> list[str]:
    """The statistics with values, the ones that fit the model first: induction and previous-token scores for a
    decoder-only model, entropy otherwise."""
    first = [s for s in RELEVANT.get(arch, ()) if s in stats]
    return first + [s for s in stats if s not in first]


def statistics(ctx: Context) -> None:
    with st.spinner("Computing every head's statistics…"):
        table = statistics_table(ctx)
    stats = ordered_stats(with_values(table), ctx.pipe.arch)
    stat = state.selectbox("Statistic on the strip", stats, key="stat", default=stats[0],
                           format_func=lambda s: HUMAN_NAMES.get(s, s),
                           help="The definition of the one shown is under the strip; every column's is in its header.")
    sel = ctx.sel
    mine = table[table["kind"] == sel.kind]
    lo, hi = RANGES.get(stat, (None, None))
    human = HUMAN_NAMES.get(stat, stat)
    fig = viz.head_strip(mine, stat, title=f"{sel.kind} attention: {human} per head (click a cell to open it)",
                         zmin=lo, zmax=hi, hover_columns=[s for s in stats if s != stat][:5],
                         definition=STAT_DEFINITIONS[stat], value_title=human, names=HUMAN_NAMES)
    strip_cells = [tuple(c) for c in fig.layout.meta["cells"]]
    chart(fig, "stat_strip", on_select=partial(open_cell, "stat_strip", strip_cells, sel.kind),
          selection_mode="points", theme=None)
    rest = [c for c in table.columns if c not in ID_COLUMNS and c not in stats]
    shown = table[[c for c in ID_COLUMNS if c in table] + [stat] + [s for s in stats if s != stat] + rest]
    config = {s: st.column_config.NumberColumn(HUMAN_NAMES.get(s, s), help=STAT_DEFINITIONS[s], format="%.4f")
              for s in stats}
    config["sink_key"] = st.column_config.NumberColumn("sink key", help="the key position that receives the most "
                                                                        "weight from this head (its attention sink)")
    st.dataframe(shown, hide_index=True, height=360, column_config=config)
    st.caption("Hover a column header for its definition; sort by clicking it. Masked keys never count; query rows "
               "with no allowed key are left out. Induction scores need a decoder self-attention and an input in which "
               "a token repeats.")
    stem = f"{Path(ctx.pick.base).name}_head_statistics"
    table_downloads(table, "the statistics", stem, "dl_stats",
                    {"definitions": STAT_DEFINITIONS, "names": HUMAN_NAMES, "source": ctx.inputs.source})
