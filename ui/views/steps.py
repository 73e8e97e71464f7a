"""Step by step through one head, and one query spelled out (every number a field of the record)."""

from __future__ import annotations

import streamlit as st

import viz

from .. import state
from ..page_types import Context
from .common import chart, four_decimals, table_height


def step_by_step(ctx: Context) -> None:
    sel = ctx.sel
    h = max(sel.head, 0)
    if sel.head < 0:
        st.caption("Showing head 0 (pick a head above).")
    st.markdown(f"**{sel.kind} attention, layer {sel.layer}, head {h}**, as the model computed it: every panel is a "
                "field of the recorded AttentionRecord.")
    _, _, ql, kl = ctx.axes_for(sel.name)
    panels = viz.stage_panels(ctx.rec, h, ql, kl, ctx.info.notes)
    row: list = []

    def flush():
        cols = st.columns(2)
        for col, panel in zip(cols, row, strict=False):
            with col:
                show(panel)
        row.clear()

    def show(panel):
        st.latex(panel.latex)
        st.caption(f"{panel.caption} Shape {panel.shape}.")
        if panel.figure is not None:
            chart(panel.figure, f"step_{panel.key}")

    for panel in panels:
        if panel.wide:  # 64-768 dimensions: the full width keeps the columns readable
            if row:
                flush()
            show(panel)
        else:
            row.append(panel)
            if len(row) == 2:
                flush()
    if row:
        flush()


def one_query(ctx: Context) -> None:
    sel = ctx.sel
    h = max(sel.head, 0)
    q_tokens, k_tokens, ql, kl = ctx.axes_for(sel.name)
    queries = list(range(len(q_tokens)))
    qi = state.selectbox("Query token", queries, key="query", default=min(1, len(queries) - 1),
                         format_func=lambda i: ql[i])
    rec = ctx.rec
    kv = f" (it reads key/value head {rec.kv_head(h)})" if rec.kv_groups > 1 else ""
    scale = "the model's own scale" if ctx.info.family not in ("transformer (this project)",) else \
        f"$1/\\sqrt{{d_k}} = 1/\\sqrt{{{ctx.info.d_k}}}$"
    st.markdown(f"Head {h}{kv}: the query vector $q_i$ meets every key $k_j$; "
                f"$\\text{{score}}_j = q_i \\cdot k_j$, scaled by {scale}, "
                "softmaxed into $\\alpha_j$, and $\\sum_j \\alpha_j v_j$ is the context row.")
    table = viz.query_table(rec, h, qi, k_tokens)
    st.dataframe(table, hide_index=True, height=table_height(len(table)), column_config=four_decimals(table))
    figs = viz.query_figures(rec, h, qi, ql, kl)
    a, b = st.columns(2)
    with a:
        chart(figs["q"], "q_vec")
        chart(figs["qk"], "q_times_k")
        chart(figs["weights"], "q_weights")
    with b:
        chart(figs["k"], "k_mat")
        chart(figs["av"], "alpha_v")
        chart(figs["context"], "ctx_row")
    st.caption("q ⊙ k_j and α_j v_j are elementwise products of captured vectors (display arithmetic); the scores, "
               "scaled scores, weights and the context row are the captured numbers.")
