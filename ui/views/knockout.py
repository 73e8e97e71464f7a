"""Knockout what-if: cells of one head's map (a key column such as an attention sink, a query row, a rectangle or
single cells) removed from its mask in the call, the same input run again, and what changed; the knocked-out run's
maps next to the original's.

``knockout_panel(ctx, name, head, cells)`` is the what-if for cells selected anywhere (the attention map's canvas);
``knockout_view(ctx)`` picks the cells with widgets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from model import RecordName, allowed_matrix, run
from model.analysis import SELECTIONS, knockout_effect, knockout_spec, parse_pairs
from model.core.interventions import DENSE_MAX_CELLS, Cells
from viz import why as vwhy

from .. import state
from ..models import model_stem
from ..page_types import Context
from ..text import md
from ..tracing import intervention_key, trace
from .common import chart, table_downloads
from .record_map import record_map

ACTIVE = "ko_active"  # session key: the selection whose what-if is shown (kept across reruns after the click)


def _heads(ctx: Context, head) -> list[int]:
    if head is None or (isinstance(head, int) and head < 0):
        return list(range(ctx.info.n_heads))
    if isinstance(head, (int, np.integer)):
        return [int(head)]
    return sorted({int(h) for h in head})


def _label(tokens: list[str], i: int) -> str:
    return f"{i}·{tokens[i]}" if 0 <= i < len(tokens) else str(i)


def knockout_view(ctx: Context) -> None:
    """Pick cells of the selected attention and head(s) with widgets, then knock them out."""
    if ctx.result.logits is None:
        st.info("This model has no output head: a knockout's effect is measured on its predictions.")
        return
    sel = ctx.sel
    name = sel.name
    rec = ctx.traced.record(name)
    Tq, Tk = np.asarray(rec.weights).shape[2:]
    q_tokens, k_tokens, q_labels, k_labels = ctx.axes_for(name)
    heads = _heads(ctx, sel.head)
    how = state.radio("Knock out", SELECTIONS, key="ko_how", default="key column", horizontal=True,
                      help="A key column: every query's weight on that key (an attention sink, [BOS]); a query row: "
                           "every key of that query (its context becomes 0); a rectangle; or single cells.")
    try:
        cells = _pick(how, Tq, Tk, q_tokens, k_tokens)
    except ValueError as e:
        st.error(md(str(e)))
        return
    h0 = heads[0]
    which = "every head" if len(heads) > 1 else f"head {h0}"
    n, n_masked, knocked = cells.count(Tq, Tk), 0, None
    if Tq * Tk <= DENSE_MAX_CELLS:  # a small map: the chosen cells hatched on it, and which are masked anyway
        dense = cells.dense_array(Tq, Tk)
        knocked = np.zeros((ctx.info.n_heads, Tq, Tk), dtype=bool)
        knocked[heads] = dense
        n_masked = int((dense & ~allowed_matrix(rec)[h0]).sum())
    record_map("ko_pick", ctx.traced, name, h0, knocked=knocked, on_head=lambda h: state.set_value("head", h),
               title=f"{sel.kind} layer {sel.layer} {which}: the cells to knock out"
                     + (" (hatched)" if knocked is not None else ""))
    st.caption(f"{n:,} cell(s) chosen in {which}" + (f"; {n_masked} of them are masked anyway (knocking them out "
                                                      "changes nothing)" if n_masked else "") + ".")
    key = (name, tuple(heads), cells.digest())  # a hash of the cells, never a copy of them
    if st.button("Knock out", key="ko_run", type="primary", disabled=n == 0):
        st.session_state[ACTIVE] = key
    if n and st.session_state.get(ACTIVE) == key:
        knockout_panel(ctx, name, heads, cells)


def _multiselect(label: str, options: list[int], default: list[int], key: str, fmt) -> list[int]:
    """A multiselect whose stored value is cut to the current options (another input may be shorter)."""
    if key in st.session_state:
        st.session_state[key] = [o for o in st.session_state[key] if o in options]
    return st.multiselect(label, options, default=None if key in st.session_state else default, key=key,
                          format_func=fmt)


def _number(col, label: str, hi: int, default: int, key: str) -> int:
    """A position box whose stored value is clamped to 0..hi (another input may be shorter)."""
    if key in st.session_state:
        st.session_state[key] = int(min(max(int(st.session_state[key]), 0), hi))
    return int(col.number_input(label, 0, hi, None if key in st.session_state else min(default, hi), key=key))


def _pick(how: str, Tq: int, Tk: int, q_tokens: list[str], k_tokens: list[str]) -> Cells:
    """The cells the widgets choose (key columns, query rows, a rectangle or pairs): ValueError for a bad one."""
    if how == "key column":
        keys = _multiselect("Key column(s)", list(range(Tk)), [0], "ko_keys", lambda i: _label(k_tokens, i))
        return Cells.select(Tq, Tk, keys=keys)
    if how == "query row":
        queries = _multiselect("Query row(s)", list(range(Tq)), [Tq - 1], "ko_queries",
                               lambda i: _label(q_tokens, i))
        return Cells.select(Tq, Tk, queries=queries)
    if how == "rectangle":
        a, b, c, d = st.columns(4)
        r0 = _number(a, "first query", Tq - 1, 0, "ko_r0")
        r1 = _number(b, "last query", Tq - 1, Tq - 1, "ko_r1")
        c0 = _number(c, "first key", Tk - 1, 0, "ko_c0")
        c1 = _number(d, "last key", Tk - 1, 0, "ko_c1")
        return Cells.select(Tq, Tk, rows=range(min(r0, r1), max(r0, r1) + 1),
                            cols=range(min(c0, c1), max(c0, c1) + 1))
    text = st.text_input("Cells as query,key pairs", key="ko_pairs", max_chars=4000, placeholder="3,0; 4,0; 4,1",
                         help="(query, key) positions, separated by ';'")
    return Cells.select(Tq, Tk, pairs=parse_pairs(text or ""))


def knockout_panel(ctx: Context, name: str, head, cells) -> None:
    """The what-if of knocking out ``cells`` (Cells, (query, key) pairs or a small bool (Tq, Tk) array) of ``head``
    (an int, -1 = every head, or several) in attention ``name``: the output before and after, per position the
    original prediction's probability and the KL, and, for a call captured in full, the knocked-out run's maps next
    to the original's."""
    result, pick, inputs = ctx.result, ctx.pick, ctx.inputs
    if result.logits is None:
        st.info("This model has no output head: a knockout's effect is measured on its predictions.")
        return
    name = str(RecordName.parse(name))
    cells = Cells.of(cells)
    heads = _heads(ctx, head)
    spec = knockout_spec(name, heads, cells)
    ikey = intervention_key(spec)
    with st.spinner("Running the model with the cells knocked out…"):
        allowed = None if ctx.traced.lazy else {name: allowed_matrix(ctx.traced.record(name))}
        eff = ctx.traced.memo(("why", "knockout", ikey), lambda: knockout_effect(pick.pipe, result, spec,
                                                                                allowed=allowed))
        knocked = None
        if not ctx.traced.lazy:  # a long input's maps are the canvas's: no second trace of it is kept
            # the knocked-out run on the original decoder input: its maps line up cell by cell with the original's
            decoder_ids = None if result.target is None else tuple(result.target.ids)
            knocked, _ = trace(pick.path, pick.device, inputs.source, inputs.target, inputs.max_new,
                               decoder_ids=decoder_ids, knockouts=spec)
        after_text = _output_after(ctx, spec, ikey, eff)
    e = eff.effect
    before_text = result.output_text
    what = f"{len(heads)} head(s) of {name}" if len(heads) > 1 else f"{name} head {heads[0]}"
    st.markdown(f"**Output before:** {md(before_text) or '(empty)'}  \n**Output after knocking out {eff.knocked} "
                f"cell(s) of {md(what)}:** {md(after_text) or '(empty)'}"
                + ("  (unchanged)" if before_text == after_text else ""))
    tokens = [ctx.pipe.token_label(int(i)) for i in e.token_ids]
    chart(vwhy.knockout_effects(tokens, e.p_before, e.p_after, e.kl,
                                title="the original prediction at each position: before and after (same input)"),
          "ko_effects")
    stack = ctx.info.output_stack
    table = pd.DataFrame({"position": np.arange(len(tokens)), "reads": ctx.tokens(stack)[: len(tokens)],
                          "original prediction": tokens, "p before": e.p_before, "p after": e.p_after,
                          "logit before": e.logit_before, "logit after": e.logit_after, "KL": e.kl,
                          "prediction after": [ctx.pipe.token_label(int(i)) for i in e.argmax_after]})
    st.dataframe(table.round(4), hide_index=True)
    notes = []
    if eff.already_masked:
        notes.append(f"{eff.already_masked} of the cells were masked anyway")
    if eff.empty_rows:
        notes.append(f"{eff.empty_rows} query row(s) were left with no key: their weights and context are 0")
    st.caption(f"Mean KL(before ‖ after) {e.kl.mean():.4f} nats; {int(e.changed.sum())} of {len(tokens)} predictions "
               f"change. Each row renormalises over the keys left. " + ("; ".join(notes) + ". " if notes else "")
               + f"Computed in {eff.seconds:.2f} s (one more forward, the knockouts passed in the call; the shared "
               "model is never changed). PNG: the camera icon of each chart.")
    stem = f"{model_stem(pick.base)}_knockout"
    meta = {"attention": name, "heads": heads, "cells": cells.describe(), "source": inputs.source}
    table_downloads(table, "the effects", stem, "dl_ko", meta)
    if knocked is not None:
        _maps(ctx, knocked, name, heads)


def _output_after(ctx: Context, spec: dict, ikey, eff) -> str:
    """The knocked-out model's own output: decoded again under the knockouts when the original was generated, else
    its predictions on the same input."""
    result, inputs, pipe = ctx.result, ctx.inputs, ctx.pipe
    if not result.generated:
        return pipe.detokenize([int(i) for i in eff.effect.argmax_after])
    arch = pipe.arch

    def decode_again() -> str:
        again = run(pipe, inputs.source, inputs.target if arch == "encoder-decoder" else None,
                    max_new_tokens=inputs.max_new if arch == "encoder-decoder" or inputs.max_new > 0 else None,
                    knockouts=spec, capture=False)
        return again.output_text
    return ctx.traced.memo(("why", "knockout output", ikey), decode_again)


def _maps(ctx: Context, knocked, name: str, heads: list[int]) -> None:
    """The original and the knocked-out run side by side, any attention and head (downstream heads change too)."""
    names = ctx.record_names
    a, b = st.columns([3, 1])
    with a:
        show = state.selectbox("Attention to compare", names, key="ko_show", default=name,
                               format_func=lambda n: f"{RecordName.parse(n).kind} · layer {RecordName.parse(n).layer}")
    with b:
        h = state.selectbox("Head", list(range(ctx.info.n_heads)), key="ko_show_head", default=heads[0])
    n = RecordName.parse(show)
    left, right = st.columns(2)
    for col, traced, what in ((left, ctx.traced, "original"), (right, knocked, "knocked out")):
        with col:
            record_map(f"ko_map_{what.split()[0]}", traced, show, h, title=f"{what}: {n.kind} layer {n.layer}",
                       produces=False, on_head=lambda x: state.set_value("ko_show_head", x))
    st.caption("The knocked-out run reads the original input (and output), so both maps line up cell by cell; its "
               "trace is inspectable like any other (pick any attention and head above). Knocked-out cells are "
               "hatched and say “knocked out” in the hover; heads after the knockout see changed inputs.")
