"""Decoding, step by step: each produced token, its probability and alternatives, and the attention behind it."""

from __future__ import annotations

import numpy as np
import streamlit as st

import viz

from .. import state
from ..page_types import Context
from ..text import md
from .common import chart


def decoding(ctx: Context) -> None:
    result = ctx.result
    if result.logits is None:
        st.info("This model has no output head: there are no predictions to follow.")
        return
    tgt = ctx.tokens("decoder")
    labels = viz.token_labels(tgt)
    start = max(result.n_prompt - 1, 0) if ctx.pipe.arch == "decoder-only" else 0
    steps = list(range(start, len(tgt)))
    step = state.select_slider("Decoder position", steps, key="step", default=steps[0],
                            format_func=lambda t: f"{labels[t]}") if len(steps) > 1 else steps[0]
    produced_id = result.output_ids[step]
    produced = result.output_tokens[step]
    p_row = ctx.traced.probs_at(step)
    p = float(p_row[produced_id])
    generated = result.generated and (ctx.pipe.arch != "decoder-only" or step >= result.n_prompt - 1)
    verb = "produced" if generated else "predicts"
    st.markdown(f"At position {step} the decoder has read {step + 1} token{'s' if step else ''} (up to "
                f"**{md(tgt[step])}**) and "
                f"{verb} **{md(produced)}** with probability **{p:.4f}**.")
    info = ctx.info
    a, b = st.columns([1, 2])
    with a:
        alt = viz.top_alternatives(p_row, ctx.pipe.token_label)
        chart(viz.alternatives_figure(alt), "alternatives")
    with b:
        layer = ctx.sel.layer if ctx.sel.stack == "decoder" else info.n_decoder_layers - 1
        if info.has_cross:
            name, what, key_title, keys = f"decoder.{layer}.cross_attn", "cross-attention", "source token (key)", \
                viz.token_labels(ctx.tokens("encoder"))
        else:
            name, what, key_title, keys = f"decoder.{layer}.self_attn", "self-attention", "earlier token (key)", labels
        weights = np.asarray(ctx.traced.record(name).weights)[0]
        chart(viz.cross_row_figure(weights, step, keys, produced, layer, what, key_title), "cross_row")
    st.caption("Rows: each head's attention weights at this position over the keys (layer from the selection "
               "above); the last row is their mean (display arithmetic, not a number the model used).")

