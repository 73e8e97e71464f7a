"""Links and saved sessions of the image page.

A link holds the model, a sample's seed, the layer, the head (a number, ``mean`` or ``rollout``) and the query
position: ``?model=shapes&sample=12&layer=2&head=mean&query=0``. An upload cannot go into a link; a saved session
refers to it by name, size and SHA-256 only (the picture itself is never saved) and asks for it again. Every value
read is checked: a message names what could not be used, and the default stands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import streamlit as st

from .. import state, validate
from ..links import LinkError, link_url, model_param
from ..text import md, short
from .calls import ImageCall
from .inputs import SAMPLE_MAX, SOURCES, Picture, image_model_choices
from .page import HOW, ImageSelection

PARAMS = ("model", "sample", "layer", "head", "query")
READ = "_img_link_read"  # the link parameters last read or written
PENDING = "_img_pending"  # selection from a link or session, applied once the traced call is known
NOTES = "_img_notes"
EXPECTED = "_img_expected_upload"  # a saved session's upload: {name, bytes, sha256}
SESSION_FORMAT = "attention-inspector image session"
SESSION_VERSION = 1
SESSION_MAX_BYTES = 16 * 1024
SESSION_KEY = "img_session_file"


def _note(text: str) -> None:
    st.session_state.setdefault(NOTES, []).append(text)


def _number(value, what: str, lo: int, hi: int) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d{1,7}", text):
        raise LinkError(f"{what} “{short(text, 40)}” is not a number")
    n = int(text)
    if not lo <= n <= hi:
        raise LinkError(f"{what} {n} is outside {lo}..{hi}")
    return n


def _model(name) -> str | None:
    """The picker label of the image model a link or session names (by directory name, hub id or label)."""
    if validate.text_problem(name, "model", 200) is not None:  # not a str, too long, control characters, surrogates
        raise LinkError("the model is not a name")
    for c in image_model_choices():
        if name in (c.label, c.link_name, Path(c.path).name):
            return c.label
    raise LinkError(f"this server lists no image model called “{short(name, 80)}”")


def _put_values(values: dict, where: str) -> None:
    """A link's or a session's model and picture into the session; its selection kept for ``apply_selection``."""
    if "model" in values and values["model"] is not None:
        try:
            state.set_value("image_model", _model(values["model"]))
        except LinkError as e:
            _note(f"{where}: {e}; showing the default model")
    if values.get("sample") is not None:
        try:
            st.session_state["image_seed"] = _number(values["sample"], "sample", 0, SAMPLE_MAX)
            state.set_value("image_source", SOURCES[0])
        except LinkError as e:
            _note(f"{where}: {e}; showing sample 0")
    pending = {k: values[k] for k in ("layer", "head", "query") if values.get(k) is not None}
    if pending:
        st.session_state[PENDING] = pending


def read_link() -> None:
    """The link's model, sample and selection, when the page's address holds a link it did not write itself: a
    session's first run, or an arrival by a link (the inspector's “open it on the Image attention page”)."""
    params = {k: v for k, v in st.query_params.to_dict().items() if k in PARAMS}
    first = READ not in st.session_state
    if not first and (st.session_state[READ] == params or not params):  # its own address, or a bare one
        st.session_state[READ] = params
        return
    st.session_state[READ] = params
    _put_values({k: params.get(k) for k in PARAMS}, "the link")


def apply_selection(call: ImageCall) -> None:
    """The pending selection checked against this call (its layers, heads and tokens); what fits is selected."""
    pending = st.session_state.pop(PENDING, None)
    if not pending:
        return
    checks = {
        "layer": ("img_layer", lambda v: _number(v, "layer", 0, len(call.names) - 1)),
        "head": ("img_how", lambda v: v.strip().lower() if isinstance(v, str) and v.strip().lower() in HOW[1:]
                 else _number(v, "head", 0, call.n_heads - 1)),
        "query": ("img_query", lambda v: _number(v, "query", 0, call.n_tokens - 1)),
    }
    for param, (key, check) in checks.items():
        if param in pending:
            try:
                state.set_value(key, check(pending[param]))
            except LinkError as e:
                _note(f"{e}: showing the default instead")


def show_notes() -> None:
    notes = st.session_state.pop(NOTES, None)
    if notes:
        st.warning("This link or session could not be followed exactly:  \n"
                   + "  \n".join(f"- {md(short(n, 300))}" for n in notes))


def link_params(base: str, picture: Picture, sel: ImageSelection) -> dict[str, str]:
    out = {}
    name = model_param(base)
    if name is not None:
        out["model"] = name
    if picture.seed is not None:
        out["sample"] = str(picture.seed)
    out.update({"layer": str(sel.layer), "head": str(sel.how), "query": str(sel.query)})
    return out


def session_bytes(base: str, picture: Picture, sel: ImageSelection) -> bytes:
    """A saved session: the model's name, the picture (a sample's seed, or a reference to an upload) and the
    selection, as JSON."""
    pic = {"sample": picture.seed} if picture.seed is not None else \
        {"upload": {"name": picture.name[:200], "sha256": picture.digest}}
    doc = {"format": SESSION_FORMAT, "version": SESSION_VERSION, "model": model_param(base), "picture": pic,
           "selection": {"layer": sel.layer, "head": sel.how, "query": sel.query}}
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


def parse_session(data: bytes) -> dict:
    """A session file -> its fields, checked strictly (LinkError naming what is wrong)."""
    if len(data) > SESSION_MAX_BYTES:
        raise LinkError(f"the file is {len(data):,} bytes (at most {SESSION_MAX_BYTES:,})")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise LinkError("the file is not JSON text") from None
    if not isinstance(doc, dict) or doc.get("format") != SESSION_FORMAT:
        raise LinkError("the file is not a saved session of the image page")
    if doc.get("version") != SESSION_VERSION or set(doc) != {"format", "version", "model", "picture", "selection"}:
        raise LinkError("the file's version or fields are not those of a saved session")
    pic, sel = doc["picture"], doc["selection"]
    if not isinstance(pic, dict) or len(pic) != 1 or not ({"sample"} >= set(pic) or {"upload"} >= set(pic)):
        raise LinkError("“picture” must hold a sample or an upload")
    if "upload" in pic:
        up = pic["upload"]
        if not (isinstance(up, dict) and set(up) == {"name", "sha256"}
                and validate.text_problem(up["name"], "upload's name", 200) is None  # also: no lone surrogate
                and isinstance(up["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", up["sha256"])):
            raise LinkError("“picture.upload” must hold a name and a SHA-256")
    if not isinstance(sel, dict) or set(sel) - {"layer", "head", "query"}:
        raise LinkError("“selection” may hold only layer, head and query")
    for key, value in sel.items():  # numbers, or "mean" / "rollout": short text at most, valid Unicode
        if isinstance(value, str) and validate.text_problem(value, f"selection's {key}", 40) is not None:
            raise LinkError(f"“selection.{key}” is not a number or a short name")
    return doc


def open_session(data: bytes) -> None:
    try:
        doc = parse_session(data)
    except LinkError as e:
        _note(f"the saved session was not opened: {e}")
        return
    pic = doc["picture"]
    _put_values({"model": doc["model"], "sample": pic.get("sample"), **doc["selection"]}, "the saved session")
    if "upload" in pic:
        state.set_value("image_source", SOURCES[1])
        st.session_state[EXPECTED] = pic["upload"]


def session_uploader() -> None:
    """In the sidebar: open a saved session of this page."""
    def opened() -> None:
        f = st.session_state.get(SESSION_KEY)
        if f is not None:
            open_session(f.getvalue()[: SESSION_MAX_BYTES + 1])

    with st.expander("Open a saved session"):
        st.file_uploader("Saved session (JSON)", type=["json"], key=SESSION_KEY, on_change=opened, max_upload_size=1)


def expected_upload(picture: Picture | None) -> None:
    """A saved session that referred to an upload: say which file it wants, and whether the one given is it."""
    expected = st.session_state.get(EXPECTED)
    if not expected:
        return
    if picture is not None and picture.digest == expected["sha256"]:
        st.success(f"This is the picture the saved session was made with ({md(expected['name'])}).")
        st.session_state.pop(EXPECTED, None)
    elif picture is not None and picture.digest:
        st.warning(f"The saved session was made with another picture ({md(expected['name'])}, SHA-256 "
                   f"{expected['sha256'][:12]}…); this one differs.")
    else:
        st.info(f"The saved session was made with an uploaded picture, which a session does not hold: upload "
                f"**{md(expected['name'])}** (SHA-256 {expected['sha256'][:12]}…) again.")


def share(base: str, picture: Picture, sel: ImageSelection) -> None:
    """Write the view into the page's address; offer the link and a saved session."""
    params = link_params(base, picture, sel)
    current = st.query_params.to_dict()
    if {k: current[k] for k in PARAMS if k in current} != params:
        st.query_params.from_dict({**{k: v for k, v in current.items() if k not in PARAMS}, **params})
    st.session_state[READ] = params  # the page's own address: not a link to read again
    with st.popover("Copy link", icon=":material/link:", help="A link that reopens this view, or a saved session"):
        st.code(link_url(params), language=None, wrap_lines=True)
        if picture.seed is None:
            st.caption("An uploaded picture cannot go into a link: the link opens a sample instead. A saved session "
                       "names the upload (its name and SHA-256, not the picture) and asks for it again.")
        else:
            st.caption("Opening this link shows this model, sample, layer, head and query.")
        name = params.get("model") or "model"
        st.download_button("Save session (JSON)", session_bytes(base, picture, sel),
                           file_name=f"{Path(name).name or 'model'}-image-session.json", mime="application/json",
                           key="img_save_session", on_click="ignore")
