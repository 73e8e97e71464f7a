"""Logit lens: what the model would predict if it stopped after each block (the residual stream through its own final
norm and output head), depth by depth, at every position."""

from __future__ import annotations

import dataclasses

import numpy as np
import streamlit as st

import viz
from model.analysis import PatchingError, logit_lens, rerun, token_id
from model.jobs import Estimate
from viz import why as vwhy

from .. import jobs, state
from ..models import model_stem
from ..page_types import Context
from ..text import md, short
from .common import chart, table_downloads

WINDOWS = (16, 24, 32, 48, 64)  # positions shown at once (the top token must stay legible in its cell)
CONFIRM_FLOPS = 1e11  # a lens costlier than this is a job, started by a click (GPT-2 small from about 130 tokens)
CPU_FLOPS = 2e10  # about what one core of this project's machine does per second in these products


def lens_view(ctx: Context) -> None:
    pipe, result, inputs = ctx.pipe, ctx.result, ctx.inputs
    if result.logits is None or not ctx.info.has_head:
        st.info("This model has no output head: the logit lens reads the residual stream through it.")
        return
    stack = ctx.info.output_stack
    T, V = result.logits.shape
    depths = (ctx.info.n_decoder_layers if stack == "decoder" else ctx.info.n_encoder_layers) + 1
    flops = 2.0 * ctx.info.d_model * V * depths * T
    typed = st.text_input("Follow another token (optional)", key="lens_token", max_chars=200,
                          placeholder="a token of the vocabulary, e.g. a word the model should predict",
                          help="Empty: the colour is the probability of the token the model finally predicts at each "
                               "position.")
    token = None
    if typed:
        try:
            token = token_id(pipe, typed)
        except PatchingError as e:
            st.warning(f"{md(short(e))}: the colour follows the model's final prediction instead.")

    def hidden_states():
        # the call again with its hidden states; the lens's last row is this call's own logits (held once)
        return ctx.traced.memo(("why", "hidden"), lambda: dataclasses.replace(rerun(
            pipe, result, inputs.source, inputs.target if pipe.arch == "encoder-decoder" else None,
            capture=False, hidden_states=True), logits=result.logits))

    key = ("why", "lens", token)
    try:
        if ctx.traced.has(key) or flops <= CONFIRM_FLOPS:  # small: at once, as any view
            with st.spinner("Running the model with its residual streams kept…"):
                hidden = hidden_states()
                lens = ctx.traced.memo(key, lambda: logit_lens(pipe, hidden, tokens=token))
        else:  # a long input: a job (its cost first, then progress and a Stop button)
            def work(job):
                hidden = hidden_states()
                job.step(1)
                return hidden, logit_lens(pipe, hidden, tokens=token,
                                          progress=lambda done, part: job.step(1 + done, (hidden, part)))
            head_seconds = 2.0 * ctx.info.d_model * V * T / CPU_FLOPS
            outcome = jobs.run_as_job(
                key, "The logit lens", work,
                Estimate(depths, (ctx.traced.seconds + (depths - 1) * head_seconds) / depths,
                         f"steps (a run keeping the residual streams, then the {V:,}-token output head at each "
                         "depth)"), start="Compute the logit lens", button_key="lens_run")
            shown = jobs.shown_value(outcome, lambda value: (value[0], ctx.traced.memo(key, lambda: value[1])))
            if shown is None:
                return
            hidden, lens = shown
    except NotImplementedError as e:  # a family whose final norm and head the app does not know
        st.info(md(short(e)))
        return
    start, stop = _window(T)
    labels = vwhy.position_labels(ctx.tokens(stack))
    label = _labeller(pipe)
    top = lens.top_ids[:, start:stop, :5]
    top_tokens = np.vectorize(label, otypes=[object])(top) if top.size else np.zeros(top.shape, dtype=object)
    top_tokens[~np.isfinite(lens.token_log_probs[:, start:stop])] = ""  # depths a stopped job did not reach
    tracked = [label(int(i)) for i in lens.token_ids[start:stop]]
    value_name = "p(final prediction)" if token is None else f"p({label(token)})"
    chart(vwhy.lens_heatmap(np.exp(lens.token_log_probs[:, start:stop]), top_tokens,
                            np.exp(lens.top_log_probs[:, start:stop, :5]), lens.depth_labels, labels[start:stop],
                            tracked, value_name=value_name,
                            title=f"logit lens of the {stack}: the colour is {viz.esc(value_name)}, the text the most "
                                  "likely token at that depth"), "lens_map")
    chars = vwhy.lens_chars(stop - start)
    kept = "every log-probability kept" if lens.log_probs is not None else \
        f"the top {lens.top_ids.shape[2]} tokens and the followed one kept per cell (other rows on demand)"
    st.caption(
        f"Depth 0 is the embeddings, depth i the residual stream after block i − 1 read through the model's own final "
        f"norm and output head ({md(ctx.info.family)}); the last row is the model's output itself, its logits. "
        + ("Each cell shows its most likely token" + (f" (cut to {chars} characters)" if chars else "")
           if chars else "Cells are too narrow for text: the hover names the top 5")
        + f". Lens of {lens.n_depths} depths x {T} positions in {lens.seconds:.2f} s (plus "
        f"{hidden.seconds:.2f} s for the run with hidden states; {kept}). PNG: the camera icon.")
    table = vwhy.lens_table(lens, ctx.tokens(stack), label)
    stem = f"{model_stem(ctx.pick.base)}_logit_lens"
    meta = {"stack": stack, "followed": "final prediction" if token is None else label(token),
            "depths": lens.depth_labels, "source": inputs.source}
    table_downloads(table, "the lens", stem, "dl_lens", meta)


def _window(T: int) -> tuple[int, int]:
    """The positions shown: all of them up to the smallest window, else a window the user moves."""
    if T <= WINDOWS[0]:
        return 0, T
    a, b = st.columns([1, 3])
    with a:
        size = state.selectbox("Positions shown", [w for w in WINDOWS if w < T] + [T], key="lens_width",
                               default=min(24, T), format_func=lambda w: f"{w}" if w < T else f"all {T}",
                               help="More positions make narrower cells: the top token is cut to fit, or left to "
                                    "the hover")
    if size >= T:
        return 0, T
    with b:
        first = state.select_slider("First position shown", list(range(0, T - size + 1)), key="lens_start",
                                    default=max(0, T - size))
    return int(first), int(first) + int(size)


def _labeller(pipe):
    cache: dict[int, str] = {}

    def label(i) -> str:
        i = int(i)
        if i not in cache:
            cache[i] = pipe.token_label(i)
        return cache[i]
    return label
