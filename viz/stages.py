"""Step by step: one layer and head as the math runs, every panel from a field of the AttentionRecord."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from model import forbidden_by_reason

from .heatmap import attention_heatmap, matrix_heatmap

WIDE = 48  # panels with more columns than this get the full width


def shape_text(a) -> str:
    """'(7 x 16)' for a 2-D array."""
    return "(" + " x ".join(str(int(s)) for s in np.shape(a)) + ")"


@dataclass(frozen=True)
class Panel:
    """One step of the computation: its formula (LaTeX), what it means, its shape and its figure (None: the
    model family does not expose this stage, and the caption says so)."""

    key: str
    latex: str
    caption: str
    shape: str
    figure: go.Figure | None

    @property
    def wide(self) -> bool:
        if self.figure is None:
            return False
        x = self.figure.data[0].x if self.figure.data else None
        return x is not None and len(x) > WIDE


def head_reasons(rec, head: int) -> dict[str, np.ndarray]:
    """{why masked: (Tq, Tk) bool} for one head, batch item 0 (empty when nothing is masked)."""
    return forbidden_by_reason(rec, head)


def stage_panels(rec, head: int, q_labels: Sequence[str], k_labels: Sequence[str],
                 notes: Mapping[str, str] | None = None) -> list[Panel]:
    """Every stage of one head of one (NumPy) record, in the order the model computes them.

    ``notes``: the model family's remarks per stage (e.g. {"q": "after RoPE"}), shown in the captions."""
    notes = dict(notes or {})
    h = head
    kv = rec.kv_head(h)
    q, k, v = np.asarray(rec.q)[0, h], np.asarray(rec.k)[0, kv], np.asarray(rec.v)[0, kv]
    Tq, Tk = q.shape[0], k.shape[0]
    d_k, H = q.shape[1], np.asarray(rec.q).shape[1]
    yl, xl = list(q_labels)[:Tq], list(k_labels)[:Tk]
    reasons = head_reasons(rec, h)
    gqa = rec.kv_groups > 1
    kv_note = f" Key/value head {kv} (shared by {rec.kv_groups} query heads: grouped-query attention)." if gqa else ""

    def note(stage: str) -> str:
        return f" ({notes[stage]})" if stage in notes else ""

    panels: list[Panel] = []
    qi = None if rec.query_input is None else np.asarray(rec.query_input)[0]
    ki = None if rec.key_input is None else np.asarray(rec.key_input)[0]
    if qi is None:
        panels.append(Panel("X", r"X", "The input of the projections is not recorded for this model family.",
                            "—", None))
    else:
        same_input = ki is not None and qi.shape == ki.shape and np.array_equal(qi, ki)
        panels.append(Panel(
            "X", r"X" if same_input else r"X_{\text{query}}",
            "The input rows: one vector per token (the residual stream entering this attention)."
            + ("" if same_input else " Queries come from the decoder, keys and values from the encoder output."),
            shape_text(qi), matrix_heatmap(qi, yl, value_name="x", title=f"X (queries) {shape_text(qi)}")))
        if ki is not None and not same_input:
            panels.append(Panel("X_kv", r"X_{\text{key}} = \text{encoder output}", "What W_k and W_v are applied to.",
                                shape_text(ki), matrix_heatmap(ki, xl, value_name="x",
                                                               title=f"X (keys) {shape_text(ki)}")))
    scores, scaled = np.asarray(rec.scores)[0, h], np.asarray(rec.scaled)[0, h]
    masked, weights = np.asarray(rec.masked)[0, h], np.asarray(rec.weights)[0, h]
    panels += [
        Panel("Q", rf"Q_{{{h}}} = X W_q^{{({h})}}", f"Queries of head {h}.{note('q')}", shape_text(q),
              matrix_heatmap(q, yl, value_name="q", title=f"Q {shape_text(q)}")),
        Panel("K", rf"K_{{{kv}}} = X W_k^{{({kv})}}", f"Keys.{note('k')}{kv_note}", shape_text(k),
              matrix_heatmap(k, xl, value_name="k", title=f"K {shape_text(k)}")),
        Panel("V", rf"V_{{{kv}}} = X W_v^{{({kv})}}", f"Values.{kv_note}", shape_text(v),
              matrix_heatmap(v, xl, value_name="v", title=f"V {shape_text(v)}")),
        Panel("scores", r"\text{scores} = Q K^\top", "How well each query matches each key.", shape_text(scores),
              attention_heatmap(scores, yl, xl, stage="scores", title=f"scores {shape_text(scores)}")),
        Panel("scaled", rf"\text{{scaled}} = \frac{{Q K^\top}}{{\sqrt{{d_k}}}},\quad \sqrt{{d_k}} = \sqrt{{{d_k}}}",
              "Dividing by sqrt(d_k) keeps the softmax from saturating." + note("scaled"), shape_text(scaled),
              attention_heatmap(scaled, yl, xl, stage="scaled", title=f"scaled {shape_text(scaled)}")),
    ]
    if rec.adjusted is not None:
        adjusted = np.asarray(rec.adjusted)[0, h]
        panels.append(Panel("adjusted", r"\text{adjusted} = \text{scaled} + \text{bias}\ \text{or softcap}",
                            "This model adjusts the scaled scores before the mask" + note("adjusted") + ".",
                            shape_text(adjusted), attention_heatmap(adjusted, yl, xl, stage="adjusted",
                                                                    title=f"adjusted {shape_text(adjusted)}")))
    if reasons:
        panels.append(Panel(
            "mask", r"\text{mask}_{ij} = [\,\text{query } i \text{ may attend to key } j\,]",
            "White = may attend; hatched grey = forbidden (" + ", ".join(sorted(reasons)) + "; hover a cell for the "
            "reason).", shape_text(masked), attention_heatmap(np.ones(masked.shape, np.float32), yl, xl, stage="mask",
                                                               reasons=reasons, value_name="may attend",
                                                               title=f"mask {shape_text(masked)}")))
    panels += [
        Panel("masked", r"\text{masked}_{ij} = \begin{cases}\text{scaled}_{ij} & \text{mask}_{ij}\\ -\infty &"
                        r" \text{otherwise}\end{cases}",
              "Forbidden cells become −∞ (hatched grey), so the softmax gives them weight exactly 0.",
              shape_text(masked), attention_heatmap(masked, yl, xl, stage="masked", reasons=reasons,
                                                    title=f"masked scores {shape_text(masked)}")),
        Panel("weights", r"A = \operatorname{softmax}_j(\text{masked})", "Each row sums to 1.", shape_text(weights),
              attention_heatmap(weights, yl, xl, stage="weights", reasons=reasons,
                                title=f"weights {shape_text(weights)}")),
    ]
    context = np.asarray(rec.context)[0, h]
    ablated = rec.ablated is not None and bool(np.asarray(rec.ablated).reshape(-1, H)[0, h])
    panels.append(Panel("context", rf"\text{{head}}_{{{h}}} = A V_{{{kv}}}",
                        "Each query's weighted mix of the value rows."
                        + (" This head was ablated in this run: its context was replaced." if ablated else ""),
                        shape_text(context), matrix_heatmap(context, yl, value_name="context",
                                                            title=f"context {shape_text(context)}")))
    if rec.concat is not None:
        concat = np.asarray(rec.concat)[0]
        fig = matrix_heatmap(concat, yl, value_name="concat", title=f"concat {shape_text(concat)}")
        d_v = concat.shape[1] // H
        fig.add_shape(type="rect", x0=h * d_v - 0.5, x1=(h + 1) * d_v - 0.5, y0=-0.5, y1=Tq - 0.5,
                      line={"color": "black", "width": 2})
        panels.append(Panel("concat", r"\text{Concat}(\text{head}_0, \dots, \text{head}_{" + str(H - 1) + r"})",
                            f"All {H} heads side by side; head {h} is columns {h * d_v}..{(h + 1) * d_v - 1} "
                            "(outlined).", shape_text(concat), fig))
    if rec.output is None:
        panels.append(Panel("output", r"\text{output} = \text{Concat}(\dots)\, W_o",
                            "The output projection is not recorded for this model family.", "—", None))
    else:
        output = np.asarray(rec.output)[0]
        panels.append(Panel("output", r"\text{output} = \text{Concat}(\dots)\, W_o",
                            "Mixes the heads back into d_model; this is added to the residual stream"
                            + note("output") + ".", shape_text(output),
                            matrix_heatmap(output, yl, value_name="output", title=f"output {shape_text(output)}")))
    return panels
