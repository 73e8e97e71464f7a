"""Links that reopen a view, and saved sessions for inputs too long for a link.

The page's query parameters hold the model, the input text (up to LINK_TEXT_MAX characters), the attention kind,
layer, head, stage and view: ``?model=induction&kind=decoder-masked-self&layer=1&head=2&stage=weights&view=head-grid``.
A session's first run reads them (``read_link`` before the sidebar, ``apply_selection`` before the selectors, once
the model is known); every run writes the current selection back (``write_link``), so changing a selector changes
the link. Anything a link or a session file says is checked: an unknown view, layer 99, head -5, a text longer than
the text box takes, control characters, a lone surrogate (not Unicode text) or a path outside the allowed roots end
in a message and a safe default.

A model is named by its directory name when it is listed (shipped, or in the models directory), by its hub id
(``org/name``, ``org/name@revision``) when it comes from the Hugging Face cache; a typed directory goes into a link
only when the server is not public (``INSPECTOR_PUBLIC``), and it is opened again through the same
path policy as the sidebar's box. Session files are JSON (never pickle), no larger than the longest inputs the sidebar
takes need (``session_limit``), with a fixed schema; anything else in them is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from model import CheckpointError, hub
from model.safe.paths import MAX_PATH_CHARS

from . import state, validate
from .launch import launch
from .models import downloads_here, model_choices, model_stem, open_typed_path, path_policy, pipeline
from .page_types import MAX_TARGET_CHARS, TARGET_MODES
from .sidebar import source_chars
from .text import md, short, slug
from .views.registry import View, find, named

LINK_TEXT_MAX = 1500  # longer inputs go into a saved session instead
SESSION_MIN_BYTES = 256 * 1024  # a session file may always be this large (and larger when the inputs may be)
SESSION_FORMAT = "attention-inspector session"
SESSION_VERSION = 1
PARAMS = ("model", "text", "kind", "layer", "head", "stage", "view")
SELECTION = ("kind", "layer", "head", "stage", "view")
READ = "_link_read"  # this session has read its link
PENDING = "_link_pending"  # selection values from a link or a session file, checked once the model is known
NOTES = "_link_notes"  # what was wrong with them, shown once


class LinkError(ValueError):
    """A value a link or a session file gives that this app cannot use (the message says which and why)."""


# reading ----------------------------------------------------------------------------------------------------------

def _clean(value, what: str, limit: int) -> str:
    """Text from a link or a session file (ui.validate.text: not too long, valid Unicode, no control characters)."""
    try:
        return validate.text(value, what, limit)
    except validate.ValidationError as e:
        raise LinkError(str(e)) from None


def _model_label(name: str) -> str | None:
    """The model picker's label for a listed model named ``name`` (its label, link name or directory name), else
    None."""
    choices = model_choices()
    for key in (lambda c: c.label, lambda c: c.link_name, lambda c: Path(c.path).name):
        for c in choices:
            if key(c) == name:
                return c.label
    return None


def _open_model(name: str) -> None:
    """Select the model a link or session names: a listed one by name; else a hub id the cache holds (on a public
    server too: the cache's models are listed); else (not in public mode) a directory through the sidebar's path
    policy. A hub id the cache lacks goes into the model box, which says how to get it (a link never downloads).
    LinkError when none of these."""
    name = _clean(name, "model", MAX_PATH_CHARS).strip()
    label = _model_label(name)
    if label is not None:
        state.set_value("model", label)
        st.session_state["model_path"] = ""
        return
    policy = path_policy()
    if policy.public and not hub.looks_like_hub_id(name):
        raise LinkError(f"this server lists no model called “{short(name, 80)}”")
    try:
        pipeline(open_typed_path(name), st.session_state.get("device", "auto"))  # loaded once, kept in the cache
    except hub.NotCached as e:
        if policy.public:
            raise LinkError(f"this server lists no model called “{short(name, 80)}”") from None
        if not downloads_here():
            raise LinkError(short(e, 400)) from None
        st.session_state["model_path"] = name  # the sidebar's box offers the download (a link never starts one)
        return
    except CheckpointError as e:
        if policy.public:
            raise LinkError(f"this server lists no model called “{short(name, 80)}”") from None
        raise LinkError(f"the model “{short(name, 80)}” cannot be opened: {short(e, 300)}") from None
    st.session_state["model_path"] = name


def _keep_note(note: str) -> None:
    st.session_state.setdefault(NOTES, []).append(note)


def read_link() -> None:
    """On a session's first run, before the sidebar: the link's model and text into the session, its selection
    kept for ``apply_selection``; a message for each value that cannot be used."""
    if st.session_state.get(READ):
        return
    st.session_state[READ] = True
    params = st.query_params.to_dict()
    started = launch()  # `streamlit run app.py -- MODEL --text TEXT`: the default link of every session
    if started.problem:
        _keep_note(started.problem)
    if started.model and "model" not in params:
        params["model"] = started.model
    if started.text is not None and "text" not in params:
        params["text"] = started.text
    if "model" in params:
        try:
            _open_model(params["model"])
        except LinkError as e:
            _keep_note(f"{e}: showing the default model instead")
    if "text" in params:
        try:  # the text box's own limit (a link is written only for texts up to LINK_TEXT_MAX)
            st.session_state["source"] = _clean(params["text"], "text", source_chars())
        except LinkError as e:
            _keep_note(f"{e}: the text was not used")
    pending = {k: params[k] for k in SELECTION if k in params}
    if pending:
        st.session_state[PENDING] = pending


def _as_int(value, what: str) -> int:
    if isinstance(value, bool):
        raise LinkError(f"{what} {short(value, 40)!r} is not a number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d{1,6}", text):
        raise LinkError(f"{what} “{short(text, 40)}” is not a number")
    return int(text)


def apply_selection(kinds: Sequence[str], layers_of: Callable[[str], Sequence[int]], n_heads: int,
                    stages: Sequence[str], views: Sequence[View]) -> None:
    """Before the selectors are drawn: the pending selection (from a link or a session file) checked against this
    model's kinds, layers, heads, stages and views; what fits is selected, the rest noted."""
    pending = st.session_state.pop(PENDING, None)
    if not pending:
        return
    notes = []

    def attempt(name, fn):
        if name in pending:
            try:
                fn(pending[name])
            except LinkError as e:
                notes.append(str(e))

    def set_kind(v):
        k = {slug(x): x for x in kinds}.get(slug(v)) if isinstance(v, str) else None
        if k is None:
            raise LinkError(f"attention kind “{short(v, 40)}” is not one of this model's ({', '.join(kinds)})")
        state.set_value("kind", k)

    attempt("kind", set_kind)
    kind = st.session_state.get("kind") if st.session_state.get("kind") in kinds else kinds[0]
    layers = list(layers_of(kind))

    def set_layer(v):
        n = _as_int(v, "layer")
        if n not in layers:
            raise LinkError(f"layer {n} does not exist in its {kind} attention (layers {layers[0]}-{layers[-1]})")
        state.set_value("layer", n)

    def set_head(v):
        if isinstance(v, str) and v.strip().lower() in ("all", "all-heads", "-1"):
            state.set_value("head", -1)
            return
        n = _as_int(v, "head")
        if not 0 <= n < n_heads:
            raise LinkError(f"head {n} does not exist (heads 0-{n_heads - 1}, or “all”)")
        state.set_value("head", n)

    def set_stage(v):
        s = {slug(x): x for x in stages}.get(slug(v)) if isinstance(v, str) else None
        if s is None:
            raise LinkError(f"stage “{short(v, 40)}” is not one of {', '.join(stages)}")
        state.set_value("stage", s)

    def set_view(v):
        view = find(v, views) if isinstance(v, str) else None  # a link's slug, or a saved session's name
        if view is None:
            raise LinkError(f"view “{short(v, 40)}” is not offered for this model")
        state.set_value("view", view.name)

    for key, fn in (("layer", set_layer), ("head", set_head), ("stage", set_stage), ("view", set_view)):
        attempt(key, fn)
    for n in notes:
        _keep_note(f"{n}: showing the default instead")


def show_notes() -> None:
    """The messages about a link's or a session file's values, once."""
    notes = st.session_state.pop(NOTES, None)
    if notes:
        st.warning("This link or session could not be followed exactly:  \n"
                   + "  \n".join(f"- {md(short(n, 300))}" for n in notes))


# writing ----------------------------------------------------------------------------------------------------------

def model_param(base: str) -> str | None:
    """How a link names the model at ``base``: its name when listed (a cached model's hub id); a snapshot of the
    cache by its hub id; its path when typed (never on a public server); None when it cannot be named."""
    for c in model_choices():
        if str(Path(c.path).resolve()) == str(Path(base).resolve()):
            return c.link_name
    ref = hub.snapshot_ref(base)
    if ref is not None:
        return ref.name
    return None if path_policy().public else str(base)


def link_params(base: str, source: str, sel) -> dict[str, str]:
    """The query parameters of a view (``sel``: kind, layer, head, stage, view) on the model at ``base``."""
    out = {}
    name = model_param(base)
    if name is not None:
        out["model"] = name
    if source and len(source) <= LINK_TEXT_MAX:
        out["text"] = source
    out.update({"kind": slug(sel.kind), "layer": str(sel.layer), "head": "all" if sel.head < 0 else str(sel.head),
                "stage": sel.stage, "view": named(sel.view).slug})
    return out


def write_link(params: dict[str, str]) -> None:
    """Make the page's query parameters say ``params`` (the app's own keys only; one browser update, and none when
    nothing changed)."""
    current = st.query_params.to_dict()
    if {k: current[k] for k in PARAMS if k in current} == params:
        return
    merged = {k: v for k, v in current.items() if k not in PARAMS}
    merged.update(params)
    st.query_params.from_dict(merged)


def link_url(params: dict[str, str]) -> str:
    """The full address of a view (the page's own address, else a relative one)."""
    try:
        base = st.context.url or ""
    except Exception:  # no browser behind this session (tests)
        base = ""
    return f"{base}?{urlencode(params)}"


# saved sessions ---------------------------------------------------------------------------------------------------

SESSION_INPUTS = {"source": str, "target": (str, type(None)), "target_mode": (str, type(None)), "max_new": int,
                  "gen_new": int}


def session_bytes(base: str, inputs: dict, sel) -> bytes:
    """A saved session: the model's name, the inputs and the selection, as JSON."""
    doc = {"format": SESSION_FORMAT, "version": SESSION_VERSION, "model": model_param(base),
           "inputs": {k: inputs.get(k) for k in SESSION_INPUTS},
           "selection": {"kind": sel.kind, "layer": sel.layer, "head": sel.head, "stage": sel.stage,
                         "view": sel.view}}
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


def session_limit(max_source: int, max_target: int) -> int:
    """The largest session file read: room for the longest inputs (4 UTF-8 bytes a character) and the rest."""
    return max(SESSION_MIN_BYTES, 4 * (max_source + max_target) + 16 * 1024)


def parse_session(data: bytes, max_source: int, max_target: int, target_modes: Sequence[str]) -> dict:
    """A session file -> {"model", "inputs", "selection"}, checked strictly; LinkError naming what is wrong."""
    limit = session_limit(max_source, max_target)
    if len(data) > limit:
        raise LinkError(f"the file is {len(data):,} bytes (at most {limit:,})")
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise LinkError("the file nests too deeply to be a saved session") from None
    except (UnicodeDecodeError, ValueError):
        raise LinkError("the file is not JSON text") from None
    if not isinstance(doc, dict) or doc.get("format") != SESSION_FORMAT:
        raise LinkError("the file is not a saved session of this app")
    if doc.get("version") != SESSION_VERSION:
        raise LinkError(f"the file's version {short(doc.get('version'), 20)!r} is not {SESSION_VERSION}")
    extra = set(doc) - {"format", "version", "model", "inputs", "selection"}
    if extra:
        raise LinkError(f"the file has fields a saved session does not have: {', '.join(sorted(extra))[:200]}")
    model = doc.get("model")
    if model is not None:
        model = _clean(model, "model", MAX_PATH_CHARS)
    inputs = doc.get("inputs")
    if not isinstance(inputs, dict) or set(inputs) != set(SESSION_INPUTS):
        raise LinkError(f"“inputs” must hold exactly {', '.join(SESSION_INPUTS)}")
    for key, kind in SESSION_INPUTS.items():
        if not isinstance(inputs[key], kind) or isinstance(inputs[key], bool):
            raise LinkError(f"inputs.{key} has the wrong type")
    inputs["source"] = _clean(inputs["source"], "source text", max_source)
    if inputs["target"] is not None:
        inputs["target"] = _clean(inputs["target"], "target text", max_target)
    if inputs["target_mode"] is not None and inputs["target_mode"] not in target_modes:
        raise LinkError("inputs.target_mode is not one of the sidebar's choices")
    for key in ("max_new", "gen_new"):
        if not 0 <= inputs[key] <= 100_000:
            raise LinkError(f"inputs.{key} is out of range")
    selection = doc.get("selection")
    if not isinstance(selection, dict) or set(selection) - set(SELECTION):
        raise LinkError(f"“selection” may hold only {', '.join(SELECTION)}")
    for key, value in selection.items():
        ok = isinstance(value, int) and not isinstance(value, bool) if key in ("layer", "head") else \
            isinstance(value, str) and len(value) <= 64
        if not ok:
            raise LinkError(f"selection.{key} has the wrong type")
        if isinstance(value, str):
            _clean(value, f"selection's {key}", 64)  # shown in messages: valid Unicode, no control characters
    return {"model": model, "inputs": inputs, "selection": selection}


def open_session(data: bytes, max_source: int, max_target: int, target_modes: Sequence[str]) -> None:
    """Put a session file's model, inputs and selection into this session (a message when it cannot be used)."""
    try:
        doc = parse_session(data, max_source, max_target, target_modes)
    except LinkError as e:
        _keep_note(f"the saved session was not opened: {e}")
        return
    if doc["model"] is not None:
        try:
            _open_model(doc["model"])
        except LinkError as e:
            _keep_note(f"{e}: showing the default model instead")
    inputs = doc["inputs"]
    st.session_state["source"] = inputs["source"]
    if inputs["target_mode"] is not None:
        state.set_value("target_mode", inputs["target_mode"])
    if inputs["target"] is not None:
        st.session_state["target"] = inputs["target"]
    for key in ("max_new", "gen_new"):
        if inputs[key]:
            st.session_state[key] = inputs[key]  # the sidebar bounds it to the model's length
    selection = dict(doc["selection"])
    if "head" in selection and selection["head"] < 0:
        selection["head"] = "all"
    st.session_state[PENDING] = selection


# the page's parts ---------------------------------------------------------------------------------------------------

SESSION_KEY = "session_file"


def session_uploader() -> None:
    """In the sidebar: open a saved session (a file uploader; the file is read in its callback, before the widgets
    of the next run are drawn)."""
    def opened() -> None:
        f = st.session_state.get(SESSION_KEY)
        if f is None:
            return
        limit = session_limit(source_chars(), MAX_TARGET_CHARS)  # the text box's limit: the session's text fits it
        if getattr(f, "size", 0) > limit:
            _keep_note(f"the saved session was not opened: the file is {f.size:,} bytes (at most {limit:,})")
            return
        open_session(f.getvalue(), source_chars(), MAX_TARGET_CHARS, TARGET_MODES)

    with st.expander("Open a saved session"):
        st.file_uploader("Saved session (JSON)", type=["json"], key=SESSION_KEY, on_change=opened, max_upload_size=1,
                         help="A file from “Copy link” → “Save session”: the model, the inputs and the view.")


def share(base: str, arch: str, source: str, target: str | None, sel) -> None:
    """Write the view into the page's address, and offer it: the link to copy and a saved session to download."""
    params = link_params(base, source, sel)
    write_link(params)
    missing = []
    if "model" not in params:
        missing.append("the model (a typed directory is not named in links on this public server)")
    if "text" not in params and source:
        missing.append(f"the text ({len(source):,} characters: a link holds at most {LINK_TEXT_MAX:,})")
    if target is not None:
        missing.append("the typed target")
    with st.popover("Copy link", icon=":material/link:", help="A link that reopens this view, or a saved session"):
        st.code(link_url(params), language=None, wrap_lines=True)
        st.caption("Opening this link shows this model, text, attention, layer, head, stage and view."
                   + (f" Not in it: {'; '.join(missing)}. Save the session for those." if missing else ""))
        inputs = {"source": source, "target": target,
                  "target_mode": st.session_state.get("target_mode") if arch == "encoder-decoder" else None,
                  "max_new": int(st.session_state.get("max_new") or 0),
                  "gen_new": int(st.session_state.get("gen_new") or 0)}
        st.download_button("Save session (JSON)", session_bytes(base, inputs, sel),
                           file_name=f"{model_stem(base)}-session.json", mime="application/json",
                           key="save_session", help="Model name, inputs and selection; open it with “Open a saved "
                                                    "session” in the sidebar.", on_click="ignore")
