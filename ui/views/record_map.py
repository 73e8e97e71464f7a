"""One record's map on a canvas of its own, for the views that show a map beside others (Knockout, Ablation, Compare,
Patching): every head of one attention's weights, the head chosen in the view shown first, exact cells for short
inputs."""

from __future__ import annotations

import numpy as np
import streamlit as st

from model import RecordName
from model.core.reasons import record_codes
from viz import tiles

from .. import validate
from ..components import attention_canvas

EXACT_BYTES = 4 * 2**20  # a map's exact float32 cells (every head) ride with its overview up to this size


def record_overview(traced, name: str, head: int, *, title: str, knocked: np.ndarray | None = None,
                    produces: bool = True) -> dict:
    """One record's map, every head (weights), as an overview for a view's own canvas: exact float32 cells up to
    EXACT_BYTES, else uint8 of every cell, pooled above tiles.HELD_SIDE tokens. ``knocked``: (H, Tq, Tk) or (Tq, Tk)
    bool cells drawn as knocked out (cells the mask forbids anyway keep their own reason)."""
    rec = traced.record(name)
    n = RecordName.parse(name)
    res = traced.result
    rows = res.tokens_for(n.query_stack)
    cols = None if n.key_stack == n.query_stack else res.tokens_for(n.key_stack)
    prod = res.output_tokens if produces and n.query_stack == "decoder" and res.output_tokens else None
    prod = prod if prod is not None and len(prod) == len(rows) else None
    values = np.asarray(rec.weights, dtype=np.float32)[0]  # (H, Tq, Tk)
    codes = record_codes(rec)
    if knocked is not None:
        chosen = np.broadcast_to(np.asarray(knocked, dtype=bool), codes.shape) & (codes == 0)
        codes = np.where(chosen, np.uint8(tiles.REASON_BITS["knocked out"]), codes)
    H, Tq, Tk = values.shape
    common = dict(produces=prod, value_name="weights", title=title, heads=[str(h) for h in range(H)], head=head,
                  selectable=False)  # head: the one a fresh page shows first
    pool = tiles.pool_factor(Tq, Tk, tiles.HELD_SIDE)
    if pool == 1:
        return tiles.exact_overview(values, rows, cols, codes=codes, exact=values.size * 4 <= EXACT_BYTES, **common)
    held, pooled = tiles.overview_tiles(values, pool, 0.0, 1.0, codes)
    return tiles.overview_payload(held, pool, Tq, Tk, rows, cols, reasons=pooled, **common)


def record_map(key: str, traced, name: str, head: int, *, title: str, knocked: np.ndarray | None = None,
               produces: bool = True, on_head=None) -> None:
    """``record_overview`` on a canvas of its own (``key``); ``head``: the head Python shows (the page follows it);
    ``on_head(h)``: where a head picked on the page goes (the view's head selector)."""
    ov = record_overview(traced, name, head, title=title, knocked=knocked, produces=produces)

    def from_page() -> None:
        reported = st.session_state.get(key)  # the browser's: checked like every value it sends
        h = validate.number(reported.get("head"), 0, len(ov["heads"]) - 1) if isinstance(reported, dict) else None
        if h is not None and on_head is not None:
            on_head(h)
    attention_canvas({"overview": ov}, key=key, on_head_change=from_page, head=head)


__all__ = ["EXACT_BYTES", "record_map", "record_overview"]
