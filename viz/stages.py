"""Step by step: one layer and head as the math runs, every panel from a field of the AttentionRecord."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from .heatmap import attention_heatmap, matrix_heatmap, token_labels

KIND_LABELS = {  # UI name -> (stack, trace kind)
    "cross": ("decoder", "cross_attn"),
    "encoder self": ("encoder", "self_attn"),
    "decoder masked self": ("decoder", "self_attn"),
}


def record_tokens(name: str, src_tokens: Sequence[str], tgt_tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """(query tokens, key tokens) of one trace name: encoder self = source x source, decoder self = target x
    target, cross = target (queries) x source (keys)."""
    stack, _, kind = name.split(".")
    q = src_tokens if stack == "encoder" else tgt_tokens
    k = tgt_tokens if (stack == "decoder" and kind == "self_attn") else src_tokens
    return list(q), list(k)


def shape_text(a) -> str:
    """'(7 x 16)' for a 2-D array."""
    return "(" + " x ".join(str(int(s)) for s in np.shape(a)) + ")"


@dataclass(frozen=True)
class Panel:
    """One step of the computation: its formula (LaTeX), what it means, its shape and its figure."""

    key: str
    latex: str
    caption: str
    shape: str
    figure: go.Figure


def head_masks(rec, Tq: int, Tk: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(padding 'may attend' (Tq, Tk) or None, causal 'may attend' (Tq, Tk) or None) of batch item 0."""
    pad = None if rec.padding_mask is None else np.broadcast_to(np.asarray(rec.padding_mask)[0, 0], (Tq, Tk))
    cau = None if rec.causal_mask is None else np.broadcast_to(np.asarray(rec.causal_mask)[0, 0], (Tq, Tk))
    return pad, cau


def stage_panels(rec, head: int, q_tokens: Sequence[str], k_tokens: Sequence[str]) -> list[Panel]:
    """Every stage of one head of one (NumPy) record, in the order the model computes them."""
    h = head
    qi, ki = np.asarray(rec.query_input)[0], np.asarray(rec.key_input)[0]
    q, k, v = (np.asarray(a)[0, h] for a in (rec.q, rec.k, rec.v))
    Tq, Tk = q.shape[0], k.shape[0]
    d_k, H = q.shape[1], np.asarray(rec.q).shape[1]
    pad, cau = head_masks(rec, Tq, Tk)
    yl, xl = token_labels(q_tokens)[:Tq], token_labels(k_tokens)[:Tk]
    scores, scaled = np.asarray(rec.scores)[0, h], np.asarray(rec.scaled)[0, h]
    masked, weights = np.asarray(rec.masked)[0, h], np.asarray(rec.weights)[0, h]
    context, concat, output = np.asarray(rec.context)[0, h], np.asarray(rec.concat)[0], np.asarray(rec.output)[0]
    same_input = qi.shape == ki.shape and np.array_equal(qi, ki)
    panels = [
        Panel("X", r"X" if same_input else r"X_{\text{query}},\; X_{\text{key}}",
              "The input rows: one vector per token (the residual stream entering this attention)."
              + ("" if same_input else " Queries come from the decoder, keys and values from the encoder output."),
              shape_text(qi), matrix_heatmap(qi, yl, value_name="x", title=f"X (queries) {shape_text(qi)}")),
    ]
    if not same_input:
        panels.append(Panel("X_kv", r"X_{\text{key}} = \text{encoder output}", "What W_k and W_v are applied to.",
                            shape_text(ki), matrix_heatmap(ki, xl, value_name="x", title=f"X (keys) {shape_text(ki)}")))
    panels += [
        Panel("Q", rf"Q_{{{h}}} = X W_q^{{({h})}}", f"Queries of head {h}.", shape_text(q),
              matrix_heatmap(q, yl, value_name="q", title=f"Q {shape_text(q)}")),
        Panel("K", rf"K_{{{h}}} = X W_k^{{({h})}}", f"Keys of head {h}.", shape_text(k),
              matrix_heatmap(k, xl, value_name="k", title=f"K {shape_text(k)}")),
        Panel("V", rf"V_{{{h}}} = X W_v^{{({h})}}", f"Values of head {h}.", shape_text(v),
              matrix_heatmap(v, xl, value_name="v", title=f"V {shape_text(v)}")),
        Panel("scores", r"\text{scores} = Q K^\top", "How well each query matches each key.", shape_text(scores),
              attention_heatmap(scores, q_tokens, k_tokens, stage="scores", title=f"scores {shape_text(scores)}")),
        Panel("scaled", rf"\text{{scaled}} = \frac{{Q K^\top}}{{\sqrt{{d_k}}}},\quad \sqrt{{d_k}} = \sqrt{{{d_k}}}",
              "Dividing by sqrt(d_k) keeps the softmax from saturating.", shape_text(scaled),
              attention_heatmap(scaled, q_tokens, k_tokens, stage="scaled", title=f"scaled {shape_text(scaled)}")),
    ]
    if pad is not None:
        raw = np.asarray(rec.padding_mask)[0, 0]
        panels.append(Panel("padding_mask", r"\text{padding mask}_{ij} = [\,\text{key } j \ne \texttt{[PAD]}\,]",
                            "1 = may attend; [PAD] keys are forbidden (a single traced sentence has none).",
                            shape_text(raw), attention_heatmap(pad.astype(np.float32), q_tokens, k_tokens,
                                                               stage="mask", value_name="may attend",
                                                               title=f"padding mask {shape_text(raw)}, broadcast")))
    if cau is not None:
        raw = np.asarray(rec.causal_mask)[0, 0]
        panels.append(Panel("causal_mask", r"\text{causal mask}_{ij} = [\,j \le i\,]",
                            "1 = may attend; a decoder position cannot look at later positions.", shape_text(raw),
                            attention_heatmap(cau.astype(np.float32), q_tokens, k_tokens, stage="mask",
                                              value_name="may attend", title=f"causal mask {shape_text(raw)}")))
    panels += [
        Panel("masked", r"\text{masked}_{ij} = \begin{cases}\text{scaled}_{ij} & \text{mask}_{ij}\\ -\infty &"
                        r" \text{otherwise}\end{cases}",
              "Forbidden cells become −∞ (hatched grey), so the softmax gives them weight exactly 0.",
              shape_text(masked),
              attention_heatmap(masked, q_tokens, k_tokens, stage="masked", padding_ok=pad, causal_ok=cau,
                                value_name="masked score", title=f"masked scores {shape_text(masked)}")),
        Panel("weights", r"A = \operatorname{softmax}_j(\text{masked})", "Each row sums to 1.", shape_text(weights),
              attention_heatmap(weights, q_tokens, k_tokens, stage="weights", padding_ok=pad, causal_ok=cau,
                                value_name="weight", title=f"weights {shape_text(weights)}")),
        Panel("context", rf"\text{{head}}_{{{h}}} = A V_{{{h}}}", "Each query's weighted mix of the value rows.",
              shape_text(context), matrix_heatmap(context, yl, value_name="context",
                                                  title=f"context {shape_text(context)}")),
        Panel("concat", r"\text{Concat}(\text{head}_0, \dots, \text{head}_{" + str(H - 1) + r"})",
              f"All {H} heads side by side; head {h} is columns {h * d_k}..{(h + 1) * d_k - 1}.",
              shape_text(concat),
              matrix_heatmap(concat, yl, value_name="concat", title=f"concat {shape_text(concat)}")),
        Panel("output", r"\text{output} = \text{Concat}(\dots)\, W_o", "Mixes the heads back into d_model; this "
              "is added to the residual stream.", shape_text(output),
              matrix_heatmap(output, yl, value_name="output", title=f"output {shape_text(output)}")),
    ]
    concat_fig = next(p.figure for p in panels if p.key == "concat")
    concat_fig.add_shape(type="rect", x0=h * d_k - 0.5, x1=(h + 1) * d_k - 0.5, y0=-0.5, y1=Tq - 0.5,
                         line={"color": "black", "width": 2})
    return panels
