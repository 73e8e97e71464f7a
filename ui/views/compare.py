"""Comparison: two inputs on one model, or one input on two checkpoints (e.g. a snapshot and the final model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import viz
from model import CaptureBudgetError, CheckpointError, RecordName, TokenizerError, allowed_matrix
from model.analysis import align_tokens, head_js_distances, restrict

from .. import state
from ..models import model_choices, model_name, model_stem, open_typed_path, pipeline, snapshots
from ..page_types import Context
from ..sidebar import source_chars
from ..text import md, short
from ..tracing import trace
from .common import chart, table_downloads
from .record_map import record_map

MODES = ("another input, same model", "same input, another checkpoint")


def _other_checkpoints(ctx: Context) -> dict[str, str]:
    """label -> path: this model's snapshots and final version, then the other listed models."""
    out = {}
    for step, path in snapshots(ctx.pick.base):
        out[f"{model_name(ctx.pick.base)} at step {step}"] = path
    out[f"{model_name(ctx.pick.base)} (final)"] = ctx.pick.base
    listed = {str(Path(p).resolve()) for p in out.values()}
    for c in model_choices():  # the other models (this one is listed above already, by step; none that cannot open)
        if c.reason is None and str(Path(c.path).resolve()) not in listed:
            out.setdefault(c.label, c.path)
    this = (f"{model_name(ctx.pick.base)} at step {ctx.pick.step}" if ctx.pick.step is not None
            else f"{model_name(ctx.pick.base)} (final)")
    out.pop(this, None)  # not the checkpoint A already is
    return out


def compare(ctx: Context) -> None:
    mode = state.radio("Compare with", MODES, key="cmp_mode", default=MODES[0], horizontal=True)
    inputs, pick = ctx.inputs, ctx.pick
    if mode == MODES[0]:
        other = st.text_area("Input B", key="cmp_source", max_chars=source_chars(), height=70,
                             placeholder="another text for the same model")
        if not other or not other.strip():
            st.info("Type a second input: its attention is compared with this one's, head by head.")
            return
        path_b, label_b, source_b = pick.path, "input B", other
    else:
        options = _other_checkpoints(ctx)
        labels = list(options)
        choice = state.selectbox("Checkpoint B", labels, key="cmp_model", default=labels[0] if labels else None)
        typed = st.text_input("…or a directory or hub id for B", key="cmp_path", max_chars=1024)
        path_b = options.get(choice)
        if typed and typed.strip():
            try:
                path_b = open_typed_path(typed)
            except CheckpointError as e:
                st.error(f"Could not open “{md(short(typed, 120))}”: {md(short(e))}")
                return
        if path_b is None:
            st.info("No other checkpoint to compare with.")
            return
        label_b, source_b = model_name(path_b) if not typed else "B", inputs.source
    forced = None
    if mode == MODES[1] and ctx.result.generated and ctx.result.target is not None:
        forced = tuple(ctx.result.target.ids)  # B reads A's output: both decoders see the same tokens
    try:
        pipe_b = pipeline(path_b, pick.device)
        if forced is not None and not pipe_b.same_vocabulary(ctx.pipe):
            forced = None  # another vocabulary (or another kind of model): B decodes on its own
        with st.spinner("Tracing B…"):
            traced_b, _ = trace(path_b, pick.device, source_b, inputs.target, inputs.max_new, decoder_ids=forced)
    except CheckpointError as e:
        st.error(f"Could not load B: {md(short(e, 500))}")
        return
    except (ValueError, TokenizerError, CaptureBudgetError) as e:  # an input B cannot read, or one too large
        st.error(f"Could not trace this input through B ({md(label_b)}): {md(short(e, 500))}")
        return
    if forced is not None:
        st.caption("B reads A's output on the decoder side (teacher forcing), so both decoders see the same tokens.")
    elif mode == MODES[1] and ctx.result.generated and ctx.pipe.arch == "encoder-decoder":
        st.caption("B has another vocabulary than A (or is another kind of model): B decodes its own output, and the "
                   "maps are compared where the two runs' tokens match.")
    sel = ctx.sel
    if sel.name not in traced_b.names:
        st.warning(f"B has no {sel.name} (another architecture): the heads of attentions both have are compared "
                   "in the table below.")
    else:
        _maps(ctx, traced_b, label_b, max(sel.head, 0))
    _table(ctx, traced_b)


def _axes(result, name: str):
    return result.axes(name)


def _maps(ctx: Context, traced_b, label_b: str, h: int) -> None:
    sel = ctx.sel
    rec_a, rec_b = ctx.traced.record(sel.name), traced_b.record(sel.name)
    if h >= rec_b.n_heads:
        st.warning(f"B has {rec_b.n_heads} heads: head {h} is not there.")
        return
    qa, ka = _axes(ctx.result, sel.name)
    qb, kb = _axes(traced_b.result, sel.name)
    a, b = st.columns(2)
    for col, traced, what in ((a, ctx.traced, "A (this)"), (b, traced_b, f"B ({label_b})")):
        with col:
            record_map(f"cmp_{what[0]}", traced, sel.name, h, title=f"{what}: {sel.kind} layer {sel.layer}",
                       on_head=lambda x: state.set_value("head", x))
    rows, cols = align_tokens(qa, qb), align_tokens(ka, kb)
    if rows.size == 0 or cols.size == 0:
        st.info("The two inputs share no tokens in order: there is nothing to align for a difference map.")
        return
    allowed_a, allowed_b = allowed_matrix(rec_a), allowed_matrix(rec_b)
    wa, oka = restrict(np.asarray(rec_a.weights)[0], rows.a, cols.a, allowed_a)
    wb, okb = restrict(np.asarray(rec_b.weights)[0], rows.b, cols.b, allowed_b)
    if rows.identical and cols.identical:
        wa, wb = np.asarray(rec_a.weights, np.float64)[0], np.asarray(rec_b.weights, np.float64)[0]
        how = "The token axes match position by position: the difference is of the captured weights."
    else:
        how = (f"The inputs differ: {rows.size} query and {cols.size} key positions hold the same tokens in order "
               "(matched by longest common blocks); the maps are compared on those cells only, each row "
               "renormalised over the matched keys.")
    reasons = {"masked in A or B": ~(oka[h] & okb[h])}
    q_lab, k_lab = both_positions(qa, rows), both_positions(ka, cols)
    chart(viz.difference_map(wa[h] - wb[h], q_lab, k_lab, reasons=reasons,
                             title=f"A − B, head {h} (red: A attends more; blue: B attends more)"), "cmp_diff")
    st.caption(how + ("" if rows.identical and cols.identical else
                      " Each label names the position in A and in B (“A3 / B2·November”: A's position 3, B's 2)."))


def both_positions(tokens_a, alignment) -> list[str]:
    """Axis labels of a difference map: each matched position in A and in B, and its token ("A3 / B2·November");
    plain "3·November" labels when the two axes are the same positions."""
    if alignment.identical:
        return viz.token_labels(list(tokens_a))
    return [f"A{int(i)} / B{int(j)}{viz.heatmap.SEPARATOR}{viz.esc(tokens_a[int(i)])}"
            for i, j in zip(alignment.a, alignment.b, strict=True)]


def _table(ctx: Context, traced_b) -> None:
    rows = []
    for name in ctx.traced.names:
        if name not in traced_b.names:
            continue
        rec_a, rec_b = ctx.traced.record(name), traced_b.record(name)
        qa, ka = _axes(ctx.result, name)
        qb, kb = _axes(traced_b.result, name)
        ar, ac = align_tokens(qa, qb), align_tokens(ka, kb)
        if ar.size == 0 or ac.size == 0:
            continue
        H = min(rec_a.n_heads, rec_b.n_heads)
        d = head_js_distances(np.asarray(rec_a.weights)[0, :H], np.asarray(rec_b.weights)[0, :H], ar.a, ac.a, ar.b,
                              ac.b, allowed_matrix(rec_a)[:H], allowed_matrix(rec_b)[:H])
        n = RecordName.parse(name)
        for h in range(H):
            rows.append({"attention": name, "stack": n.stack, "layer": n.layer, "kind": n.kind, "head": h,
                         "js_distance": float(d[h]), "aligned_queries": ar.size, "aligned_keys": ac.size})
    if not rows:
        st.info("No attention of A and B can be aligned.")
        return
    table = pd.DataFrame(rows)
    sel = ctx.sel
    part = table[table["kind"] == sel.kind]
    if len(part):
        chart(viz.head_strip(part, "js_distance", title=f"{sel.kind}: Jensen-Shannon distance between A and B per "
                                                        "head", zmin=0, zmax=1), "cmp_strip")
    st.dataframe(table.round(4), hide_index=True, height=300)
    st.caption("Jensen-Shannon distance (base 2, 0 = the same distribution, 1 = disjoint) between A's and B's "
               "weight rows, averaged over the aligned query positions.")
    stem = f"{model_stem(ctx.pick.base)}_comparison"
    table_downloads(table, "the distances", stem, "dl_cmp", {"source": ctx.inputs.source})
