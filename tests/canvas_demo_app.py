"""Demo page for the attention canvas on synthetic data (browser tests and benchmarks/bench_canvas.py).

    streamlit run tests/canvas_demo_app.py   # then ?T=4096&H=12&L=2&stage=weights&causal=0&pad=0&produces=0&Tk=
"""

import json
import time

import streamlit as st

from tests.canvas_synthetic import STAGES, Synthetic, tokens
from ui.components import attention_canvas
from viz import tiles

st.set_page_config(page_title="attention canvas demo", layout="wide")
qp = st.query_params
T = int(qp.get("T", 64))
Tk = int(qp.get("Tk", 0) or T)
H = int(qp.get("H", 4))
L = int(qp.get("L", 2))
stage = qp.get("stage", "weights")
causal = qp.get("causal", "0") == "1"
pad = int(qp.get("pad", 0))
produces = qp.get("produces", "0") == "1"


@st.cache_resource(max_entries=4)
def synthetic(layer: int) -> Synthetic:
    return Synthetic(T, Tk, H, layer, causal=causal, pad=pad, stage=stage)


@st.cache_resource(max_entries=4)
def overview(layer: int) -> dict:
    syn = synthetic(layer)
    pool = tiles.pool_factor(T, Tk, tiles.HELD_SIDE)
    held = [syn.overview_tile(h, pool) for h in range(H)]
    lo, hi, cmap = syn.range
    same = Tk == T
    return tiles.overview_payload(
        [t for t, _ in held], pool, T, Tk, tokens(T), None if same else tokens(Tk, shift=3),
        reasons=held[0][1], produces=tokens(T)[1:] + ["[EOS]"] if produces else None, lo=lo, hi=hi, colormap=cmap,
        value_name=STAGES[stage], title=f"synthetic {'self' if same else 'cross'}-attention · layer {layer}")


@st.cache_resource(max_entries=64)
def head_tile(layer: int, head: int) -> dict | None:
    pool = tiles.pool_factor(T, Tk, tiles.HEAD_SIDE)
    if pool == overview(layer)["pool"]:
        return None
    tile, codes = synthetic(layer).overview_tile(head, pool)
    return tiles.head_payload(tile, pool, head, overview(layer)["id"], reasons=codes)


@st.cache_resource(max_entries=64)
def detail(layer: int, head: int, view_json: str) -> dict:
    view = json.loads(view_json)
    window = tiles.detail_window(view, T, Tk)
    values, argmax, codes = synthetic(layer).pooled(head, window)
    return tiles.detail_payload(values, window["r0"], window["c0"], window["pool"], head=head,
                                overview_id=overview(layer)["id"], argmax=argmax if window["pool"] > 1 else None,
                                reason_codes=codes, view=view or window)


layer = st.radio("layer", list(range(L)), horizontal=True, key="layer")
state = dict(st.session_state.get("map") or {})
head = state.get("head") if isinstance(state.get("head"), int) else 0
t = time.perf_counter()
payload = {"overview": overview(layer), "head": head_tile(layer, head),
           "detail": detail(layer, head, json.dumps(state.get("view"), sort_keys=True))}
built_ms = (time.perf_counter() - t) * 1e3
result = attention_canvas(payload, key="map")
st.code(json.dumps({"state": {k: result.get(k) for k in ("view", "head", "query", "selection")},
                    "layer": layer, "built_ms": round(built_ms, 1)}), language="json")
