"""The attention map on a <canvas> (Streamlit components v2): this wrapper mounts the parts viz.tiles builds; the
JavaScript and CSS live in viz/canvas/ (``viz.canvas.renderer_js``), shared with other hosts.

Each part is its own element, so a rerun re-sends only the part that changed (Streamlit's message cache replaces
an unchanged element by its hash): the overview once per attention, the head tile once per head, each stack (the
maps the page may switch to without a rerun) once per what it holds, the detail per view, and a few bytes that echo
the state Python saw (a fresh page takes its head and view from them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import streamlit as st

from viz import canvas, wire

from .. import validate

# what the page reports (component state); "choice": the map picked on the page ({group name: value}, the names of
# the overview's choice groups)
STATE_KEYS = ("view", "head", "query", "selection", "detail_request", "choice")

_mount = st.components.v2.component(
    "attention_canvas",
    js=canvas.renderer_js("streamlit"),
    css=canvas.renderer_css(),
)


def _noop() -> None:
    """State keys only exist with a callback; the ones the caller did not ask for get this one."""


def attention_canvas(payload: Mapping, *, key: str, on_view_change: Callable | None = None,
                     on_head_change: Callable | None = None, on_query_change: Callable | None = None,
                     on_selection_change: Callable | None = None, on_detail_request_change: Callable | None = None,
                     on_choice_change: Callable | None = None, goto: Mapping | None = None, head: int | None = None):
    """Draw ``payload`` ({"overview": viz.tiles.overview_payload(...), "head": head_payload(...) or None,
    "stacks": {slot: tiles.stack_payload(...), a function returning one, or None}, "detail": detail_payload(...),
    a function returning one, or None}) and return the page's state: ``view`` ({r0, r1, c0, c1}, cells, end
    exclusive), ``head``, ``query`` (the clicked row), ``selection`` and ``choice`` (the map picked on the page;
    None until the page reports them). Stacks and a detail given as functions are computed after the overview is
    mounted; a deferred detail or stack (``tiles.deferred_detail``, ``tiles.deferred_stack``) makes the page ask
    for it (``detail_request``: {overview, head, view}, a rerun), so that a new overview is drawn without waiting
    for them. ``goto`` ({r0, r1, c0, c1, nonce}): move the view there once (a new nonce moves it again). ``head``: the
    head Python shows (the page follows it; default: the detail's or head tile's), sent apart from the overview so
    that another head never sends the overview again."""
    overview = payload["overview"]
    checked = validate.canvas_state(st.session_state.get(key), overview["n_rows"], overview["n_cols"],
                                    overview["n_heads"])  # the page's report is any JSON its script could build
    seen = {k: v for k, v in checked.items() if k in STATE_KEYS and v is not None}
    callbacks = {"on_view_change": on_view_change, "on_head_change": on_head_change,
                 "on_query_change": on_query_change, "on_selection_change": on_selection_change,
                 "on_detail_request_change": on_detail_request_change, "on_choice_change": on_choice_change}
    with st.container(gap=None):
        result = _mount(key=key, data=wire.pack({**overview, "key": key}), default=dict.fromkeys(STATE_KEYS),
                        **{name: cb or _noop for name, cb in callbacks.items()})
        if payload.get("head") is not None:
            _mount(key=f"{key}.head", data=wire.pack({**payload["head"], "key": key}))
        for slot, stack in (payload.get("stacks") or {}).items():
            if callable(stack):
                stack = stack()
            if stack is not None:
                _mount(key=f"{key}.{slot}", data=wire.pack({**stack, "slot": slot, "key": key}))
        detail = payload.get("detail")
        if callable(detail):
            detail = detail()
        if detail is not None:
            _mount(key=f"{key}.detail", data=wire.pack({**detail, "key": key}))
        focus = detail or payload.get("head") or {}
        sync = {"part": "sync", "key": key, "overview": overview["id"], "view": focus.get("view"), "seen": seen,
                "head": focus.get("head") if head is None else head, "goto": dict(goto) if goto else None}
        # tiny: a fresh page adopts Python's head and view from it
        _mount(key=f"{key}.sync", data=wire.pack(sync))
    return result
