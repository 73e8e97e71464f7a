"""Needle: a span of the input, and how much each head's later queries put on it (retrieval heads), at any length."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

import viz
from model import RecordName
from model.analysis.needle import needle_table

from ..page_types import Context
from .common import chart, open_cell, table_downloads


def _span(ctx: Context, stack: str) -> range | None:
    tokens = ctx.tokens(stack)
    c1, c2 = st.columns([3, 2])
    with c1:
        text = st.text_input("The needle: a word or phrase of the input", key="needle_text", max_chars=500,
                             placeholder="e.g. a name that appears once, early in the text")
    with c2:
        picked = st.slider("…or token positions", 0, max(0, len(tokens) - 1), key="needle_range",
                           value=(0, min(len(tokens) - 1, 0)))
    if text and text.strip():
        needle = text.strip().lower()
        joined, starts = "", []
        for t in tokens:
            starts.append(len(joined))
            joined += str(t).replace("Ġ", " ").replace("▁", " ").lower()
        at = joined.find(needle)
        if at < 0:
            st.info(f"“{viz.esc(text.strip())}” is not in the tokens of this input.")
            return None
        first = max(i for i, s in enumerate(starts) if s <= at)
        last = max(i for i, s in enumerate(starts) if s < at + len(needle))
        return range(first, last + 1)
    return range(picked[0], picked[1] + 1)


def needle(ctx: Context) -> None:
    info = ctx.info
    stack = "decoder" if info.has_decoder else "encoder"
    st.markdown("**Which heads retrieve a span?** Pick a span of the input: for each head, the weight its queries "
                "after the span put on it (self-attention), against what uniform attention would give.")
    span = _span(ctx, stack)
    if span is None:
        return
    tokens = ctx.tokens(stack)
    st.caption(f"Span: positions {span.start}–{span.stop - 1}: " + " ".join(
        f"{i}·{viz.esc(tokens[i])}" for i in span[:12]) + (" …" if len(span) > 12 else ""))
    names = [n for n in info.record_names if RecordName.parse(n).stack == stack and not RecordName.parse(n).is_cross]
    with st.spinner("Computing every head's weight on the span (only its key columns)…"):
        table, seconds = ctx.traced.memo(("needle", span.start, span.stop),
                                         lambda: needle_table(ctx.traced.trace, span, names))
    if not len(table):
        st.info("No query comes after this span: pick an earlier one.")
        return
    kind = RecordName.parse(names[0]).kind
    fig = viz.head_strip(table, "mean_on_span", title=f"{kind}: mean weight on the span from the later queries "
                                                      "(click a head to open it)", zmin=0,
                         zmax=max(1e-6, float(table["mean_on_span"].max())), hover_columns=["max_on_span",
                                                                                             "over_chance"])
    cells = [tuple(c) for c in fig.layout.meta["cells"]]
    chart(fig, "needle_strip", on_select=partial(open_cell, "needle_strip", cells, kind), selection_mode="points",
          theme=None)
    st.dataframe(table.round(4), hide_index=True, height=300)
    st.caption(f"{len(table)} heads in {seconds:.2f} s. Colour scale 0 to the largest mean "
               f"({table['mean_on_span'].max():.3f}). “over chance”: the weight divided by what uniform attention "
               "over the allowed keys would put on the span (1 = no preference).")
    stem = f"{Path(ctx.pick.base).name}_needle_{span.start}_{span.stop - 1}"
    table_downloads(table, "the table", stem, "dl_needle", {"span": [span.start, span.stop - 1]})
