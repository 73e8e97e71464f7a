"""Head view (lines), BertViz's view done properly: readable to 64+ tokens, thresholded, hover to isolate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import viz
from model import allowed_matrix

from .. import state
from ..page_types import Context
from .common import table_downloads

THRESHOLDS = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5]


def head_view(ctx: Context) -> None:
    sel = ctx.sel
    rec = ctx.rec
    q, k, _, _ = ctx.axes_for(sel.name)
    heads = list(range(ctx.info.n_heads)) if sel.head < 0 else [sel.head]
    default = 0.02 if max(len(q), len(k)) <= 24 else (0.05 if max(len(q), len(k)) <= 64 else 0.1)
    threshold = state.select_slider("Draw lines with weight at least", THRESHOLDS, key="hv_threshold", default=default)
    weights = np.asarray(rec.weights)[0]
    lines = viz.select_lines(weights, heads, threshold, allowed_matrix(rec))
    left, right = (("decoder (queries)", "encoder (keys)") if sel.record.is_cross else
                   ("query", "key"))
    produces = ctx.result.output_tokens if sel.stack == "decoder" else None
    q_text = [t + (f" → {produces[i]}" if produces and i < len(produces) else "") for i, t in enumerate(q)]
    page, height = viz.head_view_html(q_text, k, lines, heads, left_title=f"{left}", right_title=f"{right}")
    st.iframe(page, height=height)
    st.caption(f"{sel.kind} attention, layer {sel.layer}, "
               f"{'all heads (colour-coded; click a head to hide it)' if sel.head < 0 else f'head {sel.head}'}. "
               f"{len(lines.lines):,} lines drawn; {lines.hidden:,} of {lines.total:,} allowed pairs are under the "
               "threshold and hidden. A line's opacity is its weight; hover a token to see only its lines.")
    table = pd.DataFrame(lines.lines, columns=["head", "query_pos", "key_pos", "weight"]).astype(
        {"head": int, "query_pos": int, "key_pos": int})
    table.insert(2, "query_token", [q[i] for i in table["query_pos"]])
    table["key_token"] = [k[j] for j in table["key_pos"]]
    stem = f"{Path(ctx.pick.base).name}_{sel.name}_head_view"
    table_downloads(table, "the lines drawn", stem, "dl_hv", {"threshold": threshold})
    st.caption("PNG: the “Download PNG” button above the lines.")
