"""Demo page for the attention canvas on synthetic data (browser tests and benchmarks/bench_canvas.py).

    streamlit run tests/canvas_demo_app.py   # then ?T=4096&H=12&L=2&stage=weights&causal=0&pad=0&produces=0&Tk=

``exact=1`` (materialized maps only): the overview carries every cell as float32 (no detail); ``stack=1``: every
layer goes to the page at once with a "layer" choice group, so that a layer picked on the page is drawn without a
rerun (the layer radio follows through the page's "choice" state).
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
max_cells = int(qp.get("maxcells", 0) or tiles.DETAIL_MAX_CELLS)  # views over this many cells get no detail
exact = qp.get("exact", "0") == "1"
stacked = qp.get("stack", "0") == "1"


# every cached function takes the whole configuration: sessions with other query parameters share the server
CONFIG = (T, Tk, H, stage, causal, pad, produces, max_cells, exact, L)


@st.cache_resource(max_entries=4)
def synthetic(config: tuple, layer: int) -> Synthetic:
    T, Tk, H, stage, causal, pad = config[:6]
    return Synthetic(T, Tk, H, layer, causal=causal, pad=pad, stage=stage)


@st.cache_resource(max_entries=16)
def overview(config: tuple, layer: int) -> dict:
    T, Tk, H, stage, _, _, produces = config[:7]
    syn = synthetic(config, layer)
    same = Tk == T
    if config[8]:  # every cell, exact
        choices = tiles.choice_groups([tiles.choice_group("layer", list(range(config[9])))])
        return tiles.exact_overview(
            syn.full, tokens(T), None if same else tokens(Tk, shift=3), codes=syn.codes if stage != "scores" else None,
            stage=stage, lo=syn.range[0], hi=syn.range[1], colormap=syn.range[2], value_name=STAGES[stage],
            produces=tokens(T)[1:] + ["[EOS]"] if produces else None, choice={"layer": layer}, choices=choices,
            title=f"synthetic {'self' if same else 'cross'}-attention · layer {layer}")
    pool = tiles.pool_factor(T, Tk, tiles.HELD_SIDE)
    held = [syn.overview_tile(h, pool) for h in range(H)]
    lo, hi, cmap = syn.range
    return tiles.overview_payload(
        [t for t, _ in held], pool, T, Tk, tokens(T), None if same else tokens(Tk, shift=3),
        reasons=held[0][1], produces=tokens(T)[1:] + ["[EOS]"] if produces else None, lo=lo, hi=hi, colormap=cmap,
        value_name=STAGES[stage], title=f"synthetic {'self' if same else 'cross'}-attention · layer {layer}")


@st.cache_resource(max_entries=4)
def stack(config: tuple) -> dict:
    return tiles.stack_payload([overview(config, layer) for layer in range(config[9])])


@st.cache_resource(max_entries=64)
def head_tile(config: tuple, layer: int, head: int) -> dict | None:
    T, Tk = config[:2]
    if config[8]:
        return None
    pool = tiles.pool_factor(T, Tk, tiles.HEAD_SIDE)
    if pool == overview(config, layer)["pool"]:
        return None
    tile, codes = synthetic(config, layer).overview_tile(head, pool)
    return tiles.head_payload(tile, pool, head, overview(config, layer)["id"], reasons=codes)


@st.cache_resource(max_entries=64)
def detail(config: tuple, layer: int, head: int, view_json: str) -> dict:
    T, Tk = config[:2]
    view = json.loads(view_json)
    window = tiles.detail_window(view, T, Tk)
    if tiles.detail_too_big(window, config[7]):
        return tiles.skipped_detail(window, head=head, overview_id=overview(config, layer)["id"], max_cells=config[7])
    values, argmax, codes = synthetic(config, layer).pooled(head, window)
    return tiles.detail_payload(values, window["r0"], window["c0"], window["pool"], head=head,
                                overview_id=overview(config, layer)["id"],
                                argmax=argmax if window["pool"] > 1 else None, reason_codes=codes, view=view or window)


# the head has two sources, as in the app: a widget in Python and the page's own head buttons; both write
# head_choice in their callbacks (which run before the script), and the map is drawn for head_choice
def head_from_python() -> None:
    st.session_state.head_choice = st.session_state.python_head


def head_from_page() -> None:
    st.session_state.head_choice = st.session_state.map["head"]


def layer_from_page() -> None:
    st.session_state.layer = st.session_state.map["choice"]["layer"]


layer = st.radio("layer", list(range(L)), horizontal=True, key="layer")
st.radio("head (chosen in Python)", list(range(H)), horizontal=True, key="python_head", on_change=head_from_python)
state = dict(st.session_state.get("map") or {})
head = st.session_state.get("head_choice", 0)
t = time.perf_counter()
payload = {"overview": overview(CONFIG, layer), "head": head_tile(CONFIG, layer, head),
           "detail": None if exact else detail(CONFIG, layer, head, json.dumps(state.get("view"), sort_keys=True)),
           "stacks": {"stack": stack(CONFIG) if stacked else None}}
built_ms = (time.perf_counter() - t) * 1e3
result = attention_canvas(payload, key="map", on_head_change=head_from_page, on_choice_change=layer_from_page,
                          head=head)
st.code(json.dumps({"state": {k: result.get(k) for k in ("view", "head", "query", "selection", "choice")},
                    "layer": layer, "built_ms": round(built_ms, 1)}), language="json")
