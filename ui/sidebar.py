"""The inspector's sidebar: which model (shipped, a snapshot of it, the models directory, or a typed path), the
device, and the input the model kind takes."""

from __future__ import annotations

import streamlit as st

from model import CheckpointError, RecordName, available_devices, hub
from model.safe.paths import MAX_PATH_CHARS

from . import boot, state, validate
from .hub import cache_table, download_panel
from .models import (
    FINAL,
    downloads_here,
    example_for,
    model_choices,
    model_name,
    open_typed_path,
    path_policy,
    pipeline,
    snapshots,
    story_for,
)
from .page_types import MAX_SOURCE_CHARS, MAX_TARGET_CHARS, TARGET_MODES, Inputs, ModelPick
from .text import md, short
from .tracing import MAX_GENERATED
from .views.registry import MAP, TRAINING

MAX_TOKENS = 32_768  # the longest input the app traces
CHARS_PER_TOKEN = 8  # the text box holds this many characters per token the model reads (English BPE: ~4.5)
MAX_UPLOAD_MB = 4  # a .txt upload larger than this is refused
DEFAULT_SOURCE = "Saturday, November 21, 2026"
TYPED = "↳ typed directory"  # the picker's option while a typed directory (or hub id) is open


def apply_story(path: str | None, first_visit: bool = False) -> None:
    """Callback of the model picker: that model's example input and the view that tells its story. On a first
    visit, only what the visitor has not set yet."""
    if path is None:
        return

    def put(key, value):
        if not (first_visit and key in st.session_state):
            state.set_value(key, value)

    example = example_for(path)
    if example:
        put("source", example)
    try:
        meta = pipeline(path, st.session_state.get("device", "auto")).meta
    except Exception:  # the sidebar reports a broken model itself
        return
    story = story_for(meta)
    if story is not None:
        n = RecordName.parse(story.attention)
        put("kind", n.kind)
        put("layer", n.layer)
        put("head", story.head)
        put("view", MAP.name)


def typed_model(labels: list[str]) -> tuple:
    """(the directory the model box opens or None, why it does not or None); the picker follows the box: a typed
    directory overrides it (its first option names it) instead of showing the listed model it no longer opens."""
    typed_now = str(st.session_state.get("model_path") or "").strip()
    typed_base, typed_error = None, None
    if typed_now:
        try:
            typed_base = open_typed_path(typed_now)
        except CheckpointError as e:
            typed_error = e
    if typed_base is not None:
        if st.session_state.get("model") in labels:
            st.session_state["_listed_model"] = st.session_state["model"]
        state.set_value("model", TYPED)
    elif st.session_state.get("model") == TYPED:
        state.set_value("model", st.session_state.get("_listed_model") or (labels[0] if labels else None))
    return typed_base, typed_error


def model_box() -> str:
    """The text box for a local directory or hub id; what it holds."""
    policy = path_policy()
    return st.text_input("…or a local directory or hub id", key="model_path", max_chars=MAX_PATH_CHARS,
                         placeholder="/path/to/model or org/name",
                         help="This project's checkpoints or a Hugging Face directory (config.json, "
                              "model.safetensors, tokenizer.json), or a hub id (gpt2, org/name, "
                              "org/name@revision) opened from the Hugging Face cache"
                              + (" (or downloaded, when it is not there)." if downloads_here() else
                                 "; nothing is downloaded.") + " Overrides the picker when filled in."
                              + (" Only directories under the allowed roots open here." if policy.restricted
                                 else ""))


def chosen_base(choice: str | None, typed: str, typed_base, typed_error, by_label: dict, refused: dict) -> str:
    """The model directory to show: the box's, else the picker's, else the last one that opened (a message says
    why); stops the page when there is none."""
    base = None
    if typed and typed.strip():
        if isinstance(typed_error, hub.NotCached) and downloads_here():
            download_panel(typed_error, typed.strip())
        elif typed_error is not None:
            st.error(f"Could not open “{md(short(typed, 120))}”: {md(short(typed_error, 600))}")
        else:
            base = str(typed_base)
    elif choice is not None and choice in refused:
        st.error(f"{md(choice.split(' · ')[0])} cannot be opened: {md(short(refused[choice], 400))}")
    elif choice is not None:
        base = by_label[choice]
    if base is None:
        base = st.session_state.get("good_model")
        if base is None and typed_error is not None:  # a first visit with a box that does not open: the default
            base = next((by_label[c] for c in by_label if c not in refused), None)
        if base is None:
            st.info("No model to show: put a checkpoint in checkpoints/, or type a directory or hub id above.")
            boot.stop()
    return base


def snapshot_pick(base: str) -> tuple[str, int | None]:
    """(the directory to load, the training step or None): a checkpoint saved during training offers its steps."""
    steps = snapshots(base)
    if not steps:
        return base, None
    options = [FINAL] + [f"step {s}" for s, _ in steps]
    picked = state.selectbox("Training step", options, key="snapshot", default=FINAL,
                             help="This checkpoint was saved during training too: see its attention at each step "
                                  f"(the {TRAINING.name} view shows them all).")
    if picked == FINAL:
        return base, None
    step = int(picked.split()[1])
    return dict(steps)[step], step


def model_sidebar() -> ModelPick:
    """Draw the model section; stop the page with a message when no model can be shown."""
    choices = model_choices()
    labels = [c.label for c in choices]
    by_label = {c.label: c.path for c in choices}
    refused = {c.label: c.reason for c in choices if c.reason}  # cached models listed with why they cannot open
    st.header("Model")
    typed_base, typed_error = typed_model(labels)
    options = ([TYPED] if typed_base is not None else []) + labels

    def picked() -> None:
        value = st.session_state.get("model")
        if value != TYPED:
            st.session_state["model_path"] = ""
            if value not in refused:
                apply_story(by_label.get(value))

    choice = state.selectbox("Model", options, key="model", default=options[0] if options else None,
                             disabled=not options, on_change=picked,
                             format_func=lambda o: f"{model_name(typed_base)} (typed)" if o == TYPED else o,
                             help="Shipped checkpoints, then the models directory (INSPECTOR_MODELS), then the "
                                  "Hugging Face cache (HF_HUB_CACHE: id · family · size); a directory or id typed "
                                  "below comes first while it is open.")
    if choice == TYPED:
        choice = None
    cache_table()
    typed = model_box()
    device = state.selectbox("Device", ["auto"] + available_devices(), key="device", default="auto")
    if "_first_visit_done" not in st.session_state and choice in by_label and choice not in refused \
            and not (typed and typed.strip()):
        st.session_state["_first_visit_done"] = True
        apply_story(by_label[choice], first_visit=True)
    base = chosen_base(choice, typed, typed_base, typed_error, by_label, refused)
    path, step = snapshot_pick(base)
    try:
        pipe = pipeline(path, device)
        st.session_state["good_model"] = base
    except CheckpointError as e:
        previous = st.session_state.get("good_model")
        st.error(f"Could not load the model: {md(short(e, 600))}" + (
            f"  \nStill showing {md(model_name(previous))}." if previous and previous != base else ""))
        if previous is None or previous == base:
            boot.stop()
        path, base, step = previous, previous, None
        pipe = pipeline(path, device)
    return ModelPick(path=path, base=base, device=device, pipe=pipe, step=step)


def model_caption(pick: ModelPick, ran_on: str) -> str:
    info = pick.pipe.info
    layers = (f"{info.n_encoder_layers} encoder + {info.n_decoder_layers} decoder layers" if info.has_encoder and
              info.has_decoder else f"{info.n_encoder_layers or info.n_decoder_layers} layers")
    heads = f"{info.n_heads} heads" + (f" ({info.n_kv_heads} key/value heads)" if info.n_kv_heads != info.n_heads
                                       else "")
    params = f"{info.parameters / 1e6:.1f}M" if info.parameters >= 1e6 else f"{info.parameters / 1e3:.0f}k"
    name = model_name(pick.base) + ("" if pick.step is None else f" at step {pick.step}")
    return (f"{md(name)}: {md(info.family)}, {info.arch}, {layers}, {heads}, d_model {info.d_model}, "
            f"d_k {info.d_k}, {params} parameters, {info.dtype} · running on **{md(ran_on)}**")


def source_chars() -> int:
    """The text box's character limit: enough for MAX_TOKENS tokens, within the deployment's cap. The same for every
    model (a widget whose limit changes is a new widget to Streamlit: the typed text would be lost on a model
    change); the model's own length cuts a longer text, and the header says where."""
    return min(MAX_SOURCE_CHARS, CHARS_PER_TOKEN * MAX_TOKENS + 1000)


def uploaded_text(data: bytes, max_chars: int) -> str:
    """An uploaded .txt as text: UTF-8 (a byte-order mark dropped, undecodable bytes replaced: never a lone
    surrogate), NUL bytes dropped, cut to the box's limit."""
    text = data.decode("utf-8-sig", errors="replace").replace("\x00", "")
    return text[:max_chars]


def input_sidebar(pipe) -> Inputs | None:
    """Draw the input section for the model's kind; None when there is no text yet."""
    st.header("Input")
    kind = pipe.arch
    if "source" not in st.session_state:
        st.session_state["source"] = DEFAULT_SOURCE
    label = "Source text" if kind == "encoder-decoder" else "Text"
    tokens = min(pipe.info.max_len, MAX_TOKENS)
    max_chars = source_chars()
    uploaded = st.file_uploader("…or a .txt file", type=["txt"], key="source_file", max_upload_size=MAX_UPLOAD_MB,
                                help=f"A long document (UTF-8, at most {MAX_UPLOAD_MB} MB): it replaces the text.")
    if uploaded is not None and st.session_state.get("_source_file_id") != uploaded.file_id:
        st.session_state["_source_file_id"] = uploaded.file_id
        text = uploaded_text(uploaded.getvalue(), max_chars + 1)
        st.session_state["source"] = text[:max_chars]
        if len(text) > max_chars:
            st.warning(f"The file holds more than the text box's {max_chars:,} characters: its first {max_chars:,} "
                       "are the text.")
    problem = validate.text_problem(st.session_state.get("source"), "text", max_chars, controls=True)
    if problem is not None:  # a text no tokenizer can read (a lone surrogate), or over the box's limit
        st.error(f"{md(short(problem))}: the text was cleared.")
        st.session_state["source"] = ""
    source = st.text_area(label, key="source", height=90, max_chars=max_chars,
                          help=f"At most {max_chars:,} characters; the model reads at most {tokens:,} tokens "
                               "(the header says where a longer text is cut).")
    target, max_new = None, 0
    longest = max(1, pipe.info.max_len - 1)
    if kind == "encoder-decoder":
        mode = state.radio("Target", TARGET_MODES, key="target_mode", default=TARGET_MODES[0])
        if mode == TARGET_MODES[1]:
            target = st.text_input("Target text (the decoder reads it, shifted right)", key="target",
                                   max_chars=MAX_TARGET_CHARS)
        else:
            value = st.session_state.get("max_new")
            if not isinstance(value, int) or not 1 <= value <= longest:
                st.session_state["max_new"] = min(longest, MAX_GENERATED)
            st.number_input("Max generated tokens", 1, longest, key="max_new",
                            help="Greedy decoding stops at the end-of-sequence token or after this many tokens.")
            max_new = int(st.session_state["max_new"])
    elif kind == "decoder-only":
        value = st.session_state.get("gen_new")
        if not isinstance(value, int) or not 0 <= value <= longest:
            st.session_state["gen_new"] = 0
        st.number_input("Generate more tokens", 0, longest, key="gen_new",
                        help="0: trace the text as it is. N: first extend it greedily by up to N tokens, then "
                             "trace the whole sequence.")
        max_new = int(st.session_state["gen_new"])
    if not source or not source.strip():
        return None
    return Inputs(source=source, target=target, max_new=max_new)
