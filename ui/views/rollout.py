"""Attention rollout and attention flow over a stack, and an encoder-decoder's source attribution."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import viz
from model import record_name
from model.analysis import flow, flow_matrix_affordable, flow_row_affordable, rollout, source_attribution
from model.analysis.rollout import most_focused_row
from viz.analysis import data_top

from .. import state
from ..page_types import Context
from .common import chart, table_downloads

ATTRIBUTION = "source attribution (through cross-attention)"
COMPOSITION = ("Each layer's attention is averaged with the identity for the residual connection (0.5 I + 0.5 A, "
               "rows renormalised; heads fused by the choice above), and the layers are multiplied bottom to top: "
               "R[i, j] is how much of input token j reaches position i at the top. Flow is the maximum flow from "
               "input j to position i through the same layer graph (exact up to 1e-6).")
ATTRIBUTION_TEXT = ("Composed exactly so: each decoder position starts as itself (D = I, S = 0). Each decoder layer "
                    "mixes the positions with its masked self-attention (0.5 I + 0.5 A), then its cross-attention "
                    "keeps half (the residual) and brings half from the encoder outputs, each traced back to the "
                    "source tokens by the encoder's rollout: S ← 0.5 S + 0.5 C · R_enc, D ← 0.5 D. A row of S says "
                    "which source tokens that output position draws on; the rest of its share (D) stays with the "
                    "decoder's own inputs.")


def _weights(ctx: Context, stack: str, sublayer: str) -> list[np.ndarray]:
    n = ctx.info.n_encoder_layers if stack == "encoder" else ctx.info.n_decoder_layers
    return [np.asarray(ctx.traced.record(record_name(stack, i, sublayer)).weights)[0] for i in range(n)]


def rollout_view(ctx: Context) -> None:
    info = ctx.info
    scopes = []
    if info.has_encoder:
        scopes.append("encoder self-attention")
    if info.has_decoder:
        scopes.append("decoder self-attention")
    if info.has_cross:
        scopes.append(ATTRIBUTION)
    c1, c2, c3 = st.columns([2, 1, 1])
    with c1:
        scope = state.radio("Over", scopes, key="ro_scope",
                            default=ATTRIBUTION if ATTRIBUTION in scopes else scopes[0], horizontal=True)
    fusions = ["mean", "max", "min", "top layer: the selected head"]
    with c2:
        fusion = state.selectbox("Heads", fusions, key="ro_fusion", default="mean",
                              help="How one layer's heads become one matrix: their mean, max or min (rows "
                                   "renormalised), or the selected head at the top layer over the mean below it.")
    methods = ["rollout", "flow"] if scope != ATTRIBUTION else ["rollout"]
    with c3:
        method = state.radio("Method", methods, key="ro_method", default="rollout", horizontal=True)
    how = "mean" if fusion.startswith("top") else fusion
    last = max(ctx.sel.head, 0) if fusion.startswith("top") else None
    if ctx.traced.lazy:
        st.caption("Lazily captured input: this needs every layer's weights of the stack; each record is computed "
                   "once from its saved inputs.")

    if scope == ATTRIBUTION:
        with st.spinner("Composing the attribution…"):
            S, D = ctx.traced.memo(("attribution", how, last), lambda: source_attribution(
                _weights(ctx, "encoder", "self_attn"), _weights(ctx, "decoder", "self_attn"),
                _weights(ctx, "decoder", "cross_attn"), how))
        q_labels, k_labels = ctx.labels("decoder"), ctx.labels("encoder", produces=False)
        chart(viz.matrix_map(S, q_labels, k_labels, title="share of each output position from each source token",
                             value_name="share"), "ro_matrix")
        st.caption(ATTRIBUTION_TEXT)
        _strip(ctx, S, q_labels, k_labels, "share", extra={"from the decoder's own inputs": D.sum(-1)},
               stack="decoder")
        _downloads(ctx, S, q_labels, k_labels, "attribution")
        return

    stack = "encoder" if scope.startswith("encoder") else "decoder"
    layers = _weights(ctx, stack, "self_attn")
    T = layers[0].shape[-1]
    labels = ctx.labels(stack, produces=False)
    if method == "rollout":
        matrix = ctx.traced.memo(("rollout", stack, how, last), lambda: rollout(layers, how, last_layer=last))
        chart(viz.matrix_map(matrix, labels, labels, title=f"rollout over {len(layers)} {stack} layers",
                             value_name="rollout"), "ro_matrix")
        st.caption(COMPOSITION)
        _strip(ctx, matrix, labels, labels, "rollout", stack=stack)
        _downloads(ctx, matrix, labels, labels, "rollout")
        return
    L = len(layers)
    if flow_matrix_affordable(L, T):
        started = time.perf_counter()
        matrix = ctx.traced.memo(("flow", stack, how), lambda: flow(layers, how))
        chart(viz.matrix_map(matrix, labels, labels, title=f"attention flow over {L} {stack} layers",
                             value_name="flow"), "ro_matrix")
        st.caption(COMPOSITION + f" Computed in {time.perf_counter() - started:.2f} s (cached afterwards).")
        _strip(ctx, matrix, labels, labels, "flow", stack=stack)
        _downloads(ctx, matrix, labels, labels, "flow")
    elif flow_row_affordable(L, T):
        st.info(f"The full flow matrix of {T} tokens over {L} layers is too costly to compute here (over ~2 s); "
                "pick one token: its row is computed alone.")
        token = _token_picker(labels)
        row = ctx.traced.memo(("flow_row", stack, how, token), lambda: flow(layers, how, outputs=[token])[0])
        chart(viz.token_strip(row, labels, title=f"flow into {labels[token]}", value_name="flow", highlight=token),
              "ro_strip")
    else:
        st.info(f"Attention flow over {L} layers of {T} tokens is too costly here (it solves one max-flow per token "
                "pair): use rollout, or a shorter input (a row stays under ~2 s up to L·T³ ≈ 3e7).")


def _token_picker(labels: list[str], default: int | None = None) -> int:
    options = list(range(len(labels)))
    default = len(options) - 1 if default is None else default
    return state.selectbox("Token", options, key="ro_token", default=default, format_func=lambda i: labels[i],
                           help="Opens on the row that says most (its largest share on one input token), not a "
                                "special token's.")


def _special(ctx, stack: str) -> list[bool]:
    enc = ctx.result.source if stack == "encoder" else ctx.result.target
    return list(enc.special) if enc is not None and enc.special is not None else []


def _strip(ctx, matrix, q_labels, k_labels, value_name, extra: dict | None = None, stack: str = "encoder") -> None:
    token = _token_picker(q_labels, most_focused_row(matrix, _special(ctx, stack)))
    row = np.asarray(matrix[token], dtype=np.float64)
    chart(viz.token_strip(row, k_labels, title=f"{value_name} of {q_labels[token]} over the input",
                          value_name=value_name), "ro_strip")
    st.caption(f"Bar heights from 0 to {data_top(row) * 1.1:.3g} (this row's largest value is "
               f"{data_top(row):.3g})." + ("  " + "; ".join(f"{k}: {float(v[token]):.3f}"
                                                              for k, v in extra.items()) if extra else ""))


def _downloads(ctx, matrix, q_labels, k_labels, what: str) -> None:
    import html

    df = pd.DataFrame(matrix, index=[html.unescape(s) for s in q_labels], columns=[html.unescape(s) for s in k_labels])
    table_downloads(df.reset_index(names="query"), f"the {what}", f"{Path(ctx.pick.base).name}_{what}", f"dl_{what}",
                    {"source": ctx.inputs.source})
