"""Head patching: which heads carry the difference between this input and a corrupted one. Every head's output in
this (clean) run replaced, alone, by its output on the corrupted input; the change of a metric, on one diverging
scale; a click opens the head in both runs and patches it position by position."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

import viz
from model import RecordName
from model.analysis import (
    PatchingError,
    check_alignment,
    metric_for,
    patch_each_position,
    patch_heads,
    rerun,
    run_corrupt,
)
from model.jobs import Estimate
from viz import why as vwhy

from .. import jobs, state
from ..models import model_stem
from ..page_types import Context
from ..sidebar import source_chars
from ..text import md, short
from ..tracing import trace
from .common import chart, table_downloads
from .record_map import record_map

METRIC_CHOICES = ("log-probability of the clean output", "logit difference: answer − wrong")
PICK = "patch_pick"  # session key: (attention name, head) opened from the grid
CANDIDATES = 10  # answer / wrong tokens offered: the top predictions of both runs at the last metric position


def patching_view(ctx: Context) -> None:
    pipe, result, inputs = ctx.pipe, ctx.result, ctx.inputs
    if result.logits is None:
        st.info("This model has no output head: patching measures its predictions.")
        return
    what = {"encoder-decoder": "source", "decoder-only": "text", "encoder-only": "text"}[pipe.arch]
    other = st.text_area(f"Corrupted {what}", key="patch_source", max_chars=source_chars(), height=70,
                         placeholder=f"the same {what} with a word changed (the same number of tokens)")
    st.caption(_how_aligned(pipe, result))
    if not other or not other.strip():
        st.info(f"Type a corrupted {what} of the same length: each head's output in this run is replaced, one head "
                "at a time, by its output on the corrupted input, and the change of a metric is measured.")
        return
    with st.spinner("Running both inputs with every head's context kept…"):
        clean = ctx.traced.memo(("why", "clean contexts"), lambda: rerun(
            pipe, result, inputs.source, inputs.target if pipe.arch == "encoder-decoder" else None,
            capture=False, keep_contexts=True))
        corrupt = ctx.traced.memo(("why", "corrupt", other), lambda: run_corrupt(pipe, clean, other))
    try:
        check_alignment(clean, corrupt)
    except PatchingError as e:
        st.warning(f"{md(short(e, 400))}. Nothing is patched: two inputs of different lengths have no position-by-"
                   "position correspondence, and this view does not guess one.")
        _token_counts(ctx, clean, corrupt)
        return
    answer, wrong = _metric_choice(ctx, clean, corrupt)
    metric = metric_for(pipe, clean, answer, wrong)
    label = pipe.token_label
    key = ("why", "patch", other, answer, wrong)
    n_heads = len(ctx.info.record_names) * ctx.info.n_heads
    st.caption(f"Metric: {md(metric.describe(label))}. One batched pass per attention, {ctx.info.n_heads} patched "
               "runs each.")
    if ctx.traced.has(key):
        res = ctx.traced.memo(key, lambda: None)
    else:
        outcome = jobs.run_or_job(
            key, f"Patching {n_heads} heads", lambda job: patch_heads(pipe, clean, corrupt, answer, wrong,
                                                                     progress=job.step),
            Estimate(n_heads + 1, clean.seconds, "runs of the model"), flops=jobs.run_flops(pipe, clean, n_heads + 1),
            start=f"Patch all {n_heads} heads", button_key="patch_run")
        res = jobs.shown_value(outcome, lambda value: ctx.traced.memo(key, lambda: value))
        if res is None:
            return
    st.markdown(f"**Metric:** {md(res.metric.describe(label))}: clean {res.clean_value:.4f}, corrupted "
                f"{res.corrupt_value:.4f} (gap {res.gap:+.4f})." + ("" if res.complete else
                                                                    " The heads not patched yet are blank."))
    table = res.table()
    m = res.scale
    for kind in res.effect:
        key_kind = f"patch_grid_{kind.replace(' ', '_')}"
        fig = vwhy.patching_strip(table, kind, m, title=f"{kind}: metric change when the head is patched (click to "
                                                        "open)")
        cells = [tuple(c) for c in fig.layout.meta["cells"]]
        chart(fig, key_kind, on_select=partial(_open, key_kind, cells, kind), selection_mode="points", theme=None)
    st.caption(f"One colour scale for every kind, centred on 0: −{m:.4g} (red: patching the head lowers the metric, "
               f"toward the corrupted run) to +{m:.4g} (blue: it raises it). fraction = effect / gap. {res.n_runs} "
               f"patched runs in {res.seconds:.2f} s (the output head computed at the metric's "
               f"{len(res.metric.positions)} position(s) only). PNG: the camera icon of each chart.")
    stem = f"{model_stem(ctx.pick.base)}_patching"
    meta = {"clean": inputs.source, "corrupted": other, "metric": res.metric.describe(label),
            "clean_value": res.clean_value, "corrupt_value": res.corrupt_value,
            "positions": list(res.metric.positions)}
    table_downloads(table, "the effects", stem, "dl_patch", meta)
    name, head = _picked(table)
    _head_in_both(ctx, clean, corrupt, other, name, head, answer, wrong)


def _how_aligned(pipe, result) -> str:
    if pipe.arch == "encoder-decoder":
        return ("The corrupted run reads this run's output on the decoder side (teacher forcing), so only the sources "
                "must have the same number of tokens; inputs of different lengths are refused, not aligned.")
    if pipe.arch == "decoder-only" and result.generated:
        return ("The corrupted text continues with this run's generated tokens, so both sequences end alike; the "
                "prompts must have the same number of tokens (different lengths are refused, not aligned).")
    return "Both inputs must have the same number of tokens: different lengths are refused, not aligned."


def _token_counts(ctx: Context, clean, corrupt) -> None:
    rows = []
    for what, run in (("this input", clean), ("corrupted", corrupt)):
        enc = run.source if run.source is not None else run.target
        rows.append({"input": what, "tokens": len(enc.ids), "as the model reads it": " ".join(enc.tokens)[:400]})
    st.dataframe(pd.DataFrame(rows), hide_index=True)


def _metric_choice(ctx: Context, clean, corrupt) -> tuple[int | None, int | None]:
    choice = state.radio("Metric", METRIC_CHOICES, key="patch_metric", default=METRIC_CHOICES[0], horizontal=True,
                         help="log-probability: the sum over the positions the model produced (a decoder-only text "
                              "without generated tokens: its last position) of log p(the clean run's prediction). "
                              "Logit difference: at the last position.")
    if choice == METRIC_CHOICES[0]:
        return None, None
    pipe = ctx.pipe
    last = len(clean.logits) - 1
    options = list(dict.fromkeys(clean.logits.row(last).topk(CANDIDATES).indices.tolist()
                                 + corrupt.logits.row(last).topk(CANDIDATES).indices.tolist()))
    fmt = pipe.token_label
    a, b = st.columns(2)
    with a:
        answer = state.selectbox("Answer (the clean run's token)", options, key="patch_answer", default=options[0],
                                 format_func=fmt)
    wrong_default = int(corrupt.logits.argmax[last])
    with b:
        wrong = state.selectbox("Wrong (the corrupted run's token)", options, key="patch_wrong",
                                default=wrong_default if wrong_default != answer else options[-1], format_func=fmt)
    if answer == wrong:
        st.warning("Answer and wrong are the same token: the logit difference is 0 whatever is patched.")
    return int(answer), int(wrong)


def _open(chart_key: str, cells: list, kind: str) -> None:
    cell = viz.clicked_cell(st.session_state.get(chart_key), cells)
    if cell is not None:
        st.session_state[PICK] = (str(RecordName.of_kind(kind, cell[0])), int(cell[1]))


def _picked(table: pd.DataFrame) -> tuple[str, int]:
    """The head opened from the grid, else the one with the largest |effect| (of the heads patched)."""
    pick = st.session_state.get(PICK)
    if pick is not None and ((table["attention"] == pick[0]) & (table["head"] == pick[1])).any():
        return pick
    effect = np.abs(table["effect"].to_numpy())
    row = table.iloc[int(np.nanargmax(effect)) if np.isfinite(effect).any() else 0]
    return str(row["attention"]), int(row["head"])


def _head_in_both(ctx: Context, clean, corrupt, other: str, name: str, head: int, answer, wrong) -> None:
    """One head's maps in both runs side by side, and the head patched one query position at a time."""
    pipe, pick, inputs = ctx.pipe, ctx.pick, ctx.inputs
    n = RecordName.parse(name)
    st.markdown(f"**{n.kind} · layer {n.layer} · head {head}** (click another cell of the grid to open it)")
    decoder_ids = None
    if pipe.arch == "encoder-decoder" or (pipe.arch == "decoder-only" and clean.generated):
        decoder_ids = tuple(corrupt.target.ids)
    traced_b, _ = trace(pick.path, pick.device, other, inputs.target, inputs.max_new, decoder_ids=decoder_ids)
    left, right = st.columns(2)
    both = ((left, ctx.traced, "clean (this input)"), (right, traced_b, "corrupted"))
    if not all(traced.record_fits(name) for _, traced, _ in both):  # a long input: its maps are the canvas's
        both = ()
        st.caption("At this length the two maps are not drawn side by side (each would be a complete record): open "
                   "the head on the Attention map.")
    for col, traced, what in both:
        with col:
            record_map(f"patch_map_{what.split()[0]}", traced, name, head, produces=False,
                       title=f"{what}: {n.kind} layer {n.layer}",
                       on_head=lambda x: st.session_state.__setitem__(PICK, (name, int(x))))
    key = ("why", "patch each position", other, name, head, answer, wrong)
    tq = clean.contexts[name].shape[1]
    if ctx.traced.has(key):
        pp = ctx.traced.memo(key, lambda: None)
    else:  # on request: one more run per query position
        outcome = jobs.run_or_job(
            key, f"Patching head {head} one position at a time",
            lambda job: patch_each_position(pipe, clean, corrupt, name, head, answer, wrong, progress=job.step),
            Estimate(tq + 1, clean.seconds, "runs of the model"), flops=jobs.run_flops(pipe, clean, tq + 1),
            start=f"Patch head {head} at each position", button_key="patch_positions_run")
        pp = jobs.shown_value(outcome, lambda value: ctx.traced.memo(key, lambda: value))
        if pp is None:
            return
    effect = pp.effect[np.isfinite(pp.effect)]  # a stopped job: the positions it finished (the first ones)
    labels = vwhy.position_labels(ctx.tokens(n.query_stack))
    chart(vwhy.position_patching(effect, labels, pp.metric.positions,
                                 title=f"head {head} patched at one query position at a time (outlined: the "
                                       "positions the metric reads)"), "patch_each_position")
    st.caption(f"Each bar: the metric's change when only that query position of the head takes the corrupted "
               f"context (the other positions keep the clean one); {len(effect)} of {len(pp.effect)} positions in "
               f"{pp.seconds:.2f} s.")
    table = pd.DataFrame({"position": np.arange(len(effect)), "token": ctx.tokens(n.query_stack)[: len(effect)],
                          "effect": effect})
    st.download_button("CSV of the per-position effects", viz.to_csv_bytes(table),
                       f"{model_stem(pick.base)}_patching_{name}_h{head}.csv", "text/csv",
                       key="dl_patch_pos", on_click="ignore")
