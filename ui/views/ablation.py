"""Ablation what-if: the same input again with heads zeroed or mean-replaced (passed in the call), what changed,
and which heads matter most on this input."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

import viz
from model import ABLATION_MODES, RecordName
from model.analysis import effect_of, rank_heads
from model.analysis.ablation import hidden_effect_of
from model.call import intervened_outputs
from model.jobs import Estimate
from viz.analysis import hidden_effects

from .. import jobs, state
from ..models import model_stem
from ..page_types import Context
from ..text import md
from ..tracing import trace
from .common import chart, four_decimals, open_cell, table_downloads
from .record_map import record_map

MODE_HELP = {"zero": "the head passes nothing on (its context is 0)",
             "mean": "the head passes the same vector at every position: its context averaged over this input's "
                     "positions (in a causal model this mixes later positions into earlier ones)"}


def _label(option: str) -> str:
    name, head = option.rsplit("|", 1)
    n = RecordName.parse(name)
    return f"{n.kind} · layer {n.layer} · head {head}"


HIDDEN_TEXT = ("This model has no output head (it predicts no tokens), so an ablation's effect is measured on its "
               "final hidden states: per position, the size of the change relative to the original vector, "
               "|h_after − h_before| / |h_before| (0 = unchanged), and the cosine between the two (1 = the same "
               "direction).")


def ablation(ctx: Context) -> None:
    result = ctx.result
    hidden = result.logits is None
    if hidden and result.final_hidden is None:
        st.info("This call kept neither the model's predictions nor its final hidden states: there is nothing to "
                "measure an ablation on.")
        return
    if hidden:
        st.caption(HIDDEN_TEXT)
    options = [f"{n}|{h}" for n in ctx.info.record_names for h in range(ctx.info.n_heads)]
    chosen = [o for o in st.session_state.get("abl_heads", []) if o in options]
    if chosen != st.session_state.get("abl_heads"):
        st.session_state["abl_heads"] = chosen
    c1, c2 = st.columns([3, 1])
    with c1:
        heads = st.multiselect("Heads to ablate (any layers and kinds)", options, default=chosen, key="abl_heads",
                               format_func=_label, placeholder="pick one or several heads")
    with c2:
        mode = state.radio("Ablation mode", ABLATION_MODES, key="abl_mode", default="zero", horizontal=True,
                           help=MODE_HELP["mean"])
    st.caption(f"{mode}: {MODE_HELP[mode]}. The model runs again with the intervention passed in that call (the "
               "shared model is never changed).")
    if heads:
        _what_changed(ctx, heads, mode)
    st.divider()
    _which_heads_matter(ctx, mode)


def _what_changed(ctx: Context, heads: list[str], mode: str) -> None:
    spec: dict[str, dict[int, str]] = {}
    for option in heads:
        name, head = option.rsplit("|", 1)
        spec.setdefault(name, {})[int(head)] = mode
    inputs, pick, result = ctx.inputs, ctx.pick, ctx.result
    with st.spinner("Running the ablated model…"):
        ablated, _ = trace(pick.path, pick.device, inputs.source, inputs.target, inputs.max_new, spec)
        after = ctx.traced.memo(("ablated_outputs", tuple(sorted(heads)), mode),
                                lambda: intervened_outputs(pick.pipe, result, [{"ablations": spec}])[0])
    if result.logits is None:
        _hidden_changed(ctx, heads, mode, hidden_effect_of(result.final_hidden, after))
    else:
        _predictions_changed(ctx, heads, mode, ablated, effect_of(result.logits, after))
    _maps(ctx, ablated)


def _hidden_changed(ctx: Context, heads: list[str], mode: str, eff) -> None:
    """The effect on a model without an output head: its final hidden states before and after."""
    stack = ctx.info.output_stack
    tokens = ctx.tokens(stack)[: len(eff.change)]
    chart(hidden_effects(tokens, eff.change, eff.cosine,
                             title=f"the final hidden state at each position after ablating {len(heads)} head(s)"),
          "abl_effects")
    table = pd.DataFrame({"position": np.arange(len(tokens)), "token": tokens, "relative change": eff.change,
                          "cosine": eff.cosine, "|h| before": eff.norm_before, "|h| after": eff.norm_after})
    st.dataframe(table, hide_index=True, column_config=four_decimals(table))
    most = eff.changed_most
    st.caption(f"Mean relative change {eff.change.mean():.4f}, mean cosine {eff.cosine.mean():.4f}; the most changed "
               f"position is {most}·{md(tokens[most]) if tokens else ''}. Both runs read the same input, so positions "
               "line up.")
    stem = f"{model_stem(ctx.pick.base)}_ablation"
    table_downloads(table, "the effects", stem, "dl_abl",
                    {"ablated": heads, "mode": mode, "measured_on": "final hidden states"})


def _predictions_changed(ctx: Context, heads: list[str], mode: str, ablated, eff) -> None:
    """The effect on the model's predictions: the original token's probability and logit, and the KL."""
    result = ctx.result
    stack = ctx.info.output_stack
    before_text, after_text = result.output_text, ablated.result.output_text
    st.markdown(f"**Output before:** {md(before_text) or '(empty)'}  \n**Output after ablating {len(heads)} "
                f"head(s):** {md(after_text) or '(empty)'}" + ("  (unchanged)" if before_text == after_text else ""))
    tokens = [ctx.pipe.token_label(int(i)) for i in eff.token_ids]
    chart(viz.position_effects(tokens, eff.p_before, eff.p_after, eff.kl,
                               title="the original prediction at each position: before and after (same input)"),
          "abl_effects")
    table = pd.DataFrame({"position": np.arange(len(tokens)), "reads": ctx.tokens(stack)[: len(tokens)],
                          "original prediction": tokens, "p before": eff.p_before, "p after": eff.p_after,
                          "logit before": eff.logit_before, "logit after": eff.logit_after,
                          "logit difference": eff.logit_after - eff.logit_before, "KL": eff.kl,
                          "prediction after": [ctx.pipe.token_label(int(i)) for i in eff.argmax_after]})
    st.dataframe(table.round(4), hide_index=True)
    st.caption(f"Mean KL(before ‖ after) {eff.kl.mean():.4f} nats; {int(eff.changed.sum())} of {len(tokens)} "
               "predictions change. Both runs read the same (original) input, so positions line up.")
    stem = f"{model_stem(ctx.pick.base)}_ablation"
    table_downloads(table, "the effects", stem, "dl_abl", {"ablated": heads, "mode": mode})


def _maps(ctx: Context, ablated) -> None:
    """The ablated run's own trace, next to the original, for the selected attention and head."""
    sel = ctx.sel
    h = max(sel.head, 0)
    a, b = st.columns(2)
    for col, traced, what in ((a, ctx.traced, "original"), (b, ablated, "ablated run")):
        with col:
            record_map(f"abl_map_{what.split()[0]}", traced, sel.name, h, title=f"{what}: {sel.kind} layer {sel.layer}",
                       on_head=lambda x: state.set_value("head", x))
    st.caption("The ablated run's trace is inspectable like any other: the maps above are its records (a head that "
               "was ablated still computes its weights; what it passes on is replaced).")


def _which_heads_matter(ctx: Context, mode: str) -> None:
    hidden = ctx.result.logits is None
    what = ("the mean relative change of the final hidden states, |h_after − h_before| / |h_before|" if hidden else
            "the mean KL between the original and the ablated next-token distributions")
    st.markdown(f"**Which heads matter on this input?** Every head ablated alone (one batched pass per attention); "
                f"ranked by {what}.")
    key = ("ranking", mode)
    n_heads = len(ctx.info.record_names) * ctx.info.n_heads
    if ctx.traced.has(key):
        table, seconds = ctx.traced.memo(key, lambda: None)
    else:
        outcome = jobs.run_or_job(
            key, f"Ablating {n_heads} heads ({mode})", lambda job: rank_heads(ctx.pipe, ctx.result, mode,
                                                                             progress=job.step),
            Estimate(n_heads, ctx.traced.seconds, "runs of the model"),
            flops=jobs.run_flops(ctx.pipe, ctx.result, n_heads), start=f"Rank all {n_heads} heads",
            button_key="rank_heads")
        shown = jobs.shown_value(outcome, lambda value: ctx.traced.memo(key, lambda: value))
        if shown is None or shown[0].empty:  # a stopped job that ranked no head yet
            return
        table, seconds = shown
    value, unit, name = ("mean_change", "", "mean relative change") if hidden else ("mean_kl", " nats", "mean KL")
    hover = ({"max_change": "max relative change", "mean_cosine": "mean cosine", "min_cosine": "lowest cosine"}
             if hidden else {"max_kl": "max KL", "mean_p_drop": "mean drop in p",
                             "changed_predictions": "changed predictions"})
    top = float(table[value].max()) if len(table) else 0.0
    top = top if top > 0 else 1e-6
    st.caption(f"{len(table)} heads in {seconds:.2f} s. One colour scale for every attention kind: {name} from 0 "
               f"to {top:.3g}{unit} (the largest effect of any head), so heads of different kinds compare by colour.")
    for label in dict.fromkeys(table["kind"]):
        name_kind = label.replace(" ", "_")
        part = table[table["kind"] == label]
        fig = viz.head_strip(part, value, title=f"{label}: {name} when ablated alone (scale 0-{top:.3g}{unit}, "
                                                "shared by every kind; click to open)",
                             zmin=0.0, zmax=top, value_title=f"{name}{' (nats)' if unit else ''}",
                             hover_columns=list(hover), names=hover)
        cells = [tuple(c) for c in fig.layout.meta["cells"]]
        chart(fig, f"rank_{name_kind}", on_select=partial(open_cell, f"rank_{name_kind}", cells, label),
              selection_mode="points", theme=None)
    st.dataframe(table.round(5), hide_index=True, height=320)
