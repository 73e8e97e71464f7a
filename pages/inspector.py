"""The attention inspector: every layer, head and stage of one traced call, for self- and cross-attention.

Widgets, caching, layout and messages only; the numbers come from the model's trace, the figures from viz/.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import streamlit as st
import torch

import viz
from model import CaptureBudgetError, CheckpointError, RunResult, Trace, available_devices, load

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = Path(os.environ.get("INSPECTOR_CHECKPOINTS", ROOT / "checkpoints"))  # the shipped checkpoints
# the most one traced call may hold in attention records; above it, one attention is captured at a time
CAPTURE_BUDGET = int(float(os.environ.get("INSPECTOR_MAX_CAPTURE_MB", "256")) * 2**20)
MAX_GENERATED = 128  # default cap on generated tokens (a model that never emits [EOS] stops here)
DEFAULT_MODEL = "dates"
DEFAULT_SOURCE = "Saturday, November 21, 2026"
EXAMPLES = {"dates": DEFAULT_SOURCE, "numbers": "seven thousand four hundred and twelve",
            "reverse": "red fox owl blue cat"}  # the source a shipped model opens on
TARGET_MODES = ("generate greedily", "type a target (teacher forcing)")
VIEWS = ("Attention map", "Head grid", "Model overview", "Step by step", "One query", "Decoding", "Table & export")
STAGES = ("weights", "masked", "scaled", "scores")
PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


@dataclass(frozen=True)
class Traced:
    """One call of the model, as shown: the RunResult and its trace and probabilities as NumPy (never mutated)."""

    result: RunResult
    trace: Trace  # NumPy copy of result.trace
    probs: np.ndarray  # (T, V)
    device: str  # the device the call ran on


def shipped_checkpoints() -> list[str]:
    """Subdirectories of checkpoints/ holding a config.json (snapshots excluded), the default first."""
    if not CHECKPOINTS.is_dir():
        return []
    names = sorted(p.name for p in CHECKPOINTS.iterdir()
                   if p.is_dir() and p.name != "snapshots" and (p / "config.json").is_file())
    return sorted(names, key=lambda n: n != DEFAULT_MODEL)


def checkpoint_stamp(path: str) -> float:
    """Newest modification time of the checkpoint's files: a retrained checkpoint is a new cache key."""
    p = Path(path)
    return max((f.stat().st_mtime for f in p.iterdir() if f.is_file()), default=0.0) if p.is_dir() else 0.0


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def load_pipeline(path: str, device: str, stamp: float):
    """One Pipeline per (path, device, file times), shared by every session and never mutated."""
    return load(path, device)


@st.cache_resource(max_entries=64, show_spinner="Decoding…")
def greedy_ids(path: str, device: str, stamp: float, source: str, max_new_tokens: int) -> tuple[int, ...]:
    """Greedy output of one source ([BOS] + tokens), decoded once and reused by every traced view of it."""
    return tuple(load_pipeline(path, device, stamp).greedy(source, max_new_tokens))


@st.cache_resource(max_entries=16, show_spinner="Running the model…")
def run_model(path: str, device: str, stamp: float, source: str, target: str | None,
              generated: tuple[int, ...] | None, only: str | None) -> Traced:
    """Trace one call (every attention, or only the one named ``only``); cached so that changing kind, layer,
    head or view never runs the model again while the whole trace fits the budget."""
    pipe = load_pipeline(path, device, stamp)
    result = pipe.run(source, target, capture=True if only is None else {only},
                      generated_ids=None if generated is None else list(generated))
    return Traced(result=result, trace=result.trace.numpy(), probs=result.probs.numpy(), device=str(pipe.device))


def trace_call(path: str, device: str, source: str, target: str | None, max_new_tokens: int,
               selected: str) -> tuple[Traced, list[str]]:
    """Decode (when no target is typed), capture what fits the memory budget, trace; on an accelerator's
    out-of-memory error do it all again on the CPU. Returns the traced call and messages for the user."""
    stamp = checkpoint_stamp(path)
    messages = []

    def attempt(dev: str) -> Traced:
        pipe = load_pipeline(path, dev, stamp)
        generated = None if target is not None else greedy_ids(path, dev, stamp, source, max_new_tokens)
        S = len(pipe.encode_source(source).ids)
        T = len(generated) if generated is not None else len(pipe.encode_target(target).ids)
        full, one = pipe.capture_bytes(S, T), pipe.capture_bytes(S, T, capture={selected})
        only = None
        if full > CAPTURE_BUDGET:
            if one > CAPTURE_BUDGET:
                raise CaptureBudgetError(
                    f"Even one attention of this {S} x {T}-token input would hold {one / 2**20:.0f} MiB, over the "
                    f"{CAPTURE_BUDGET / 2**20:.0f} MiB capture budget (INSPECTOR_MAX_CAPTURE_MB): shorten the text.")
            only = selected
            messages.append(
                f"Tracing every attention of this {S} x {T}-token input would hold {full / 2**20:.0f} MiB, over the "
                f"{CAPTURE_BUDGET / 2**20:.0f} MiB capture budget: only **{selected}** is captured "
                f"({one / 2**20:.0f} MiB). Picking another layer or kind traces that one, on demand.")
        return run_model(path, dev, stamp, source, target, generated, only)

    try:
        return attempt(device), messages
    except torch.OutOfMemoryError:
        if device == "cpu":
            raise
        messages.append(f"Out of memory on device '{device}': this trace was computed on the CPU instead.")
        return attempt("cpu"), messages


def clamp_state(key: str, options: list, fallback=None) -> None:
    """Keep a widget's stored value valid when its options change (e.g. a model with fewer layers)."""
    if key in st.session_state and st.session_state[key] not in options:
        st.session_state[key] = fallback if fallback in options else options[-1]


def open_cell(chart_key: str, cells: list[tuple[int, int]], kind: str | None) -> None:
    """Callback of a thumbnail click: open that layer and head on the attention map."""
    cell = viz.clicked_cell(st.session_state.get(chart_key), cells)
    if cell is None:
        return
    layer, head = cell
    st.session_state["layer"], st.session_state["head"] = layer, head
    if kind is not None:
        st.session_state["kind"] = kind
    st.session_state["view"] = "Attention map"


def use_example() -> None:
    """Callback of the model picker: load that model's example sentence."""
    name = st.session_state.get("model")
    if name in EXAMPLES:
        st.session_state["source"] = EXAMPLES[name]


def chart(fig, key: str, **kwargs) -> None:
    st.plotly_chart(fig, key=key, config=PLOT_CONFIG, **kwargs)


# ---- model ---------------------------------------------------------------------------------------------------------
st.title("Attention inspector")
shipped = shipped_checkpoints()
with st.sidebar:
    st.header("Model")
    choice = st.selectbox("Shipped checkpoint", shipped, key="model", disabled=not shipped, on_change=use_example,
                          help="Subdirectories of checkpoints/ with a config.json.")
    local = st.text_input("…or a local checkpoint directory", key="model_path",
                          placeholder="/path/to/checkpoint", help="Overrides the shipped checkpoint when filled in.")
    devices = ["auto"] + available_devices()
    clamp_state("device", devices, "auto")
    device = st.selectbox("Device", devices, key="device")

wanted = local.strip() if local and local.strip() else (str(CHECKPOINTS / choice) if choice else None)
if wanted is None:
    st.info("No shipped checkpoint found in checkpoints/. Enter a checkpoint directory in the sidebar.")
    st.stop()

pipe = None
try:
    pipe = load_pipeline(wanted, device, checkpoint_stamp(wanted))
    st.session_state["good_model"] = wanted
except CheckpointError as e:
    previous = st.session_state.get("good_model")
    st.error(f"Could not load the checkpoint: {e}" + (f"  \nStill showing {previous}." if previous else ""))
    if previous is None:
        st.stop()
    wanted = previous
except torch.OutOfMemoryError:
    st.warning(f"Out of memory loading the model on '{device}': using the CPU.")
    device = "cpu"
if pipe is None:
    pipe = load_pipeline(wanted, device, checkpoint_stamp(wanted))
cfg = pipe.config

# ---- input ---------------------------------------------------------------------------------------------------------
with st.sidebar:
    st.header("Input")
    if "source" not in st.session_state:
        st.session_state["source"] = DEFAULT_SOURCE
    source = st.text_area("Source text", key="source", height=80)
    mode = st.radio("Target", TARGET_MODES, key="target_mode")
    target = None
    longest = cfg.max_len - 1  # [BOS] takes one position
    if mode == TARGET_MODES[1]:
        target = st.text_input("Target text (the decoder reads it, shifted right)", key="target")
    else:
        if st.session_state.get("max_new", 0) > longest or "max_new" not in st.session_state:
            st.session_state["max_new"] = min(longest, MAX_GENERATED)
        st.number_input("Max generated tokens", 1, longest, key="max_new",
                        help="Greedy decoding stops at [EOS] or after this many tokens.")
    max_new = int(st.session_state.get("max_new", min(longest, MAX_GENERATED)))

if not source.strip():
    st.info("Type a source sentence in the sidebar (for the dates model, e.g. “Saturday, November 21, 2026”).")
    st.stop()

header = st.container()  # filled once the call is traced (it needs the selection first)

# ---- selection -----------------------------------------------------------------------------------------------------
kinds = list(viz.KIND_LABELS)
c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
with c1:
    kind = st.radio("Attention", kinds, key="kind", horizontal=True)
stack, kind_name = viz.KIND_LABELS[kind]
n_layers = cfg.n_encoder_layers if stack == "encoder" else cfg.n_decoder_layers
layers = list(range(n_layers))
heads = [-1] + list(range(cfg.n_heads))
clamp_state("layer", layers)
clamp_state("head", heads, 0)
if "layer" not in st.session_state:
    st.session_state["layer"] = layers[-1]
if "head" not in st.session_state:
    st.session_state["head"] = 0
with c2:
    layer = st.selectbox("Layer", layers, key="layer")
with c3:
    head = st.selectbox("Head", heads, key="head", format_func=lambda h: "all heads" if h < 0 else f"head {h}")
with c4:
    stage = st.selectbox("Stage", STAGES, key="stage", help="weights = softmax output (0..1); "
                         "masked / scaled / scores = before the softmax (diverging around 0).")
view = st.segmented_control("View", VIEWS, key="view", default=VIEWS[0], required=True)

selected = f"{stack}.{layer}.{kind_name}"
try:
    traced, messages = trace_call(wanted, device, source, target, max_new, selected)
except CaptureBudgetError as e:
    st.error(str(e))
    st.stop()
result, trace = traced.result, traced.trace
src_tokens, tgt_tokens = result.source.tokens, result.target.tokens
with header:
    for message in messages:
        st.warning(message)
    if result.source.truncated:
        st.warning(f"The source has {result.source.n_text_tokens} tokens but the model reads at most "
                   f"{cfg.max_len - 1} (+ [EOS]): the rest was cut off.")
    if target is not None and result.target.truncated:
        st.warning(f"The target has {result.target.n_text_tokens} tokens but the decoder reads at most "
                   f"{cfg.max_len - 1} (after [BOS]): the rest was cut off.")
    if result.generated and not result.stopped_at_eos:
        st.warning(f"The model did not end its output with [EOS] within {len(tgt_tokens) - 1} tokens: "
                   "the output is cut there (raise “Max generated tokens” in the sidebar).")
    st.markdown(f"**Source** ({len(src_tokens)} tokens) → **{'generated' if result.generated else 'teacher-forced'}"
                f" output:** `{result.output_text}`")
with st.sidebar:
    st.caption(f"{Path(wanted).name}: {cfg.n_encoder_layers} encoder + {cfg.n_decoder_layers} decoder layers, "
               f"{cfg.n_heads} heads, d_model {cfg.d_model}, d_k {cfg.d_k} · running on **{traced.device}**")

name = selected
rec = trace[name]
q_tokens, k_tokens = viz.record_tokens(name, src_tokens, tgt_tokens)
Tq, Tk = len(q_tokens), len(k_tokens)
pad_ok, causal_ok = viz.head_masks(rec, Tq, Tk)
allowed = np.asarray(rec.mask)[0] if rec.mask is not None else None  # (1|H, Tq, Tk) broadcastable


def head_grid(key: str) -> None:
    if not viz.grid_is_readable(Tq, Tk):
        st.info(f"{Tq} x {Tk} tokens is too long for a readable grid of every head: pick one head.")
        return
    cells = [(layer, h) for h in range(cfg.n_heads)]
    fig = viz.thumbnail_grid(np.asarray(rec.weights)[0], q_tokens, k_tokens, cells=cells, cols=4, allowed=allowed,
                             row_names=[f"{kind} layer {i}" for i in layers],
                             title=f"{kind} attention, layer {layer}: every head (click one to open it)")
    chart(fig, key, on_select=partial(open_cell, key, cells, None), selection_mode="points", theme=None)


# ---- views ---------------------------------------------------------------------------------------------------------
if view == "Attention map":
    if head < 0:
        head_grid("map_grid")
    else:
        values = np.asarray(getattr(rec, stage))[0, head]
        masks_applied = stage in ("masked", "weights")  # scores / scaled are shown before the mask is applied
        fig = viz.attention_heatmap(
            values, q_tokens, k_tokens, stage=stage, padding_ok=pad_ok if masks_applied else None,
            causal_ok=causal_ok if masks_applied else None,
            value_name={"masked": "masked score"}.get(stage, stage.rstrip("s") if stage == "weights" else stage),
            title=f"{kind} attention · layer {layer} · head {head} · {stage} {viz.shape_text(values)}")
        chart(fig, "map")
        st.caption("Rows are queries, columns are keys; hover a cell for both tokens and the value. "
                   "Hatched grey cells are masked (padding or causal): the model gave them weight 0.")

elif view == "Head grid":
    head_grid("grid")

elif view == "Model overview":
    names = [f"{stack}.{i}.{kind_name}" for i in layers]
    if not viz.grid_is_readable(Tq, Tk):
        st.info(f"{Tq} x {Tk} tokens is too long for a readable overview: pick one layer and head.")
    elif not all(n in trace for n in names):
        st.info("This input is traced one attention at a time (capture budget): the overview needs every layer.")
    else:
        weights = np.concatenate([np.asarray(trace[n].weights)[0] for n in names])  # (L * H, Tq, Tk)
        masks = [np.broadcast_to(np.asarray(trace[n].mask)[0], (cfg.n_heads, Tq, Tk))
                 if trace[n].mask is not None else np.ones((cfg.n_heads, Tq, Tk), bool) for n in names]
        cells = [(i, h) for i in layers for h in range(cfg.n_heads)]
        fig = viz.thumbnail_grid(weights, q_tokens, k_tokens, cells=cells, cols=cfg.n_heads,
                                 allowed=np.concatenate(masks), title=f"{kind} attention: layers x heads "
                                 "(click a thumbnail to open it)")
        chart(fig, "overview", on_select=partial(open_cell, "overview", cells, kind), selection_mode="points",
              theme=None)

elif view == "Step by step":
    h = max(head, 0)
    if head < 0:
        st.caption("Showing head 0 (pick a head above).")
    st.markdown(f"**{kind} attention, layer {layer}, head {h}**, as the model computed it: every panel is a "
                "field of the recorded AttentionRecord.")
    panels = viz.stage_panels(rec, h, q_tokens, k_tokens)
    for i in range(0, len(panels), 2):
        cols = st.columns(2)
        for col, panel in zip(cols, panels[i:i + 2], strict=False):
            with col:
                st.latex(panel.latex)
                st.caption(f"{panel.caption} Shape {panel.shape}.")
                chart(panel.figure, f"step_{panel.key}")

elif view == "One query":
    h = max(head, 0)
    queries = list(range(Tq))
    clamp_state("query", queries)
    qi = st.selectbox("Query token", queries, key="query", format_func=lambda i: viz.token_labels(q_tokens)[i])
    st.markdown(f"Head {h}: the query vector $q_i$ meets every key $k_j$; "
                f"$\\text{{score}}_j = q_i \\cdot k_j$, scaled by $1/\\sqrt{{d_k}} = 1/\\sqrt{{{cfg.d_k}}}$, "
                "softmaxed into $\\alpha_j$, and $\\sum_j \\alpha_j v_j$ is the context row.")
    table = viz.query_table(rec, h, qi, k_tokens)
    st.dataframe(table, hide_index=True)
    figs = viz.query_figures(rec, h, qi, q_tokens, k_tokens)
    a, b = st.columns(2)
    with a:
        chart(figs["q"], "q_vec")
        chart(figs["qk"], "q_times_k")
        chart(figs["weights"], "q_weights")
    with b:
        chart(figs["k"], "k_mat")
        chart(figs["av"], "alpha_v")
        chart(figs["context"], "ctx_row")
    st.caption("q ⊙ k_j and α_j v_j are elementwise products of captured vectors (display arithmetic); the scores, "
               "scaled scores, weights and the context row are the captured numbers.")

elif view == "Decoding":
    T = len(tgt_tokens)
    steps = list(range(T))
    clamp_state("step", steps, 0)
    step = st.select_slider("Decoder step", steps, key="step",
                            format_func=lambda t: f"{t}: after {viz.token_labels(tgt_tokens)[t]}") if T > 1 else 0
    produced_id = result.output_ids[step]
    produced = result.output_tokens[step]
    p = float(traced.probs[step, produced_id])
    verb = "produced" if result.generated else "predicts"
    st.markdown(f"At step {step} the decoder has read `{' '.join(tgt_tokens[:step + 1])}` and {verb} "
                f"**`{produced}`** with probability **{p:.3f}**.")
    cross_layer = min(layer, cfg.n_decoder_layers - 1) if stack == "decoder" else cfg.n_decoder_layers - 1
    a, b = st.columns([1, 2])
    with a:
        alt = viz.top_alternatives(traced.probs, step, pipe.tgt_tokenizer.id_to_token)
        chart(viz.alternatives_figure(alt), "alternatives")
    with b:
        cross_name = f"decoder.{cross_layer}.cross_attn"
        if cross_name in trace:
            cross = np.asarray(trace[cross_name].weights)[0]
            chart(viz.cross_row_figure(cross, step, src_tokens, produced, cross_layer), "cross_row")
        else:
            st.info(f"This input is traced one attention at a time (capture budget): pick cross attention, "
                    f"layer {cross_layer}, to see the row that produced this token.")
    st.caption("Rows: each head's cross-attention weights at this step over the source tokens; the last row is "
               "their mean (display arithmetic, not a number the model used).")

elif view == "Table & export":
    h = None if head < 0 else head
    df = viz.selection_table(trace, name, h, src_tokens, tgt_tokens)
    st.dataframe(df, hide_index=True, height=360)
    stem = f"{Path(wanted).name}_{name}" + ("" if h is None else f"_head{h}")
    meta = {"model": Path(wanted).name, "source": source, "attention": name, "head": h,
            "source_tokens": src_tokens, "target_tokens": tgt_tokens, "output": result.output_text}
    a, b, c = st.columns(3)
    a.download_button("CSV of this selection", viz.to_csv_bytes(df), f"{stem}.csv", "text/csv", key="dl_csv")
    whole = "CSV of the whole trace" if len(trace) > 1 else "CSV of the captured trace"
    b.download_button(whole, lambda: viz.to_csv_bytes(trace.to_dataframe(src_tokens, tgt_tokens)),
                      f"{Path(wanted).name}_trace.csv", "text/csv", key="dl_trace")
    c.download_button("JSON of this selection", viz.to_json_bytes(df, meta), f"{stem}.json", "application/json",
                      key="dl_json")
    st.caption("PNG: use the camera icon in any chart's toolbar.")

with st.expander("How to read this"):
    st.markdown(
        f"Each attention has **queries** (rows) and **keys** (columns). *Encoder self*: source x source. "
        f"*Decoder masked self*: target x target, a position cannot look ahead (causal mask). *Cross*: each "
        f"target position (query) looks at the source tokens (keys); this is where the model aligns its output "
        f"with its input. $d_k = {cfg.d_k}$, scores are divided by $\\sqrt{{d_k}} = {math.sqrt(cfg.d_k):.2f}$.")
