"""Attention, inspected, in a Jupyter notebook: ``show(...)`` draws the app's attention canvas as a widget
(anywidget), and ``trace(...)`` returns the traced call behind it, for code.

The model is any of: a path (whatever ``model.load`` opens), a pipeline from ``model.load``, a transformers
``PreTrainedModel`` the notebook already holds with its fast tokenizer, as ``(model, tokenizer)`` (traced through
this app's attention for that call only: model.hf.adopt puts it back exactly as it was), or a finished
``RunResult`` (already traced).

The widget's state is small: the overview of every head of one attention and stage (uint8 tiles, as one binary
buffer: a head change is drawn in the browser at once) and a few numbers (attention, stage, head, view, query,
selection). What the page asks for as it is used is computed here, from the trace, by the functions the app uses
(viz.map_parts): the exact cells of the view (or block maxima and where they are, for a wide view), a clicked
query's row for the query strip, and a new overview when a picker changes; each goes back as one binary message.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

try:
    import anywidget
    import traitlets as t
except ImportError as e:  # the widget is an optional part: the app does not need it
    raise ImportError(f"viz.notebook needs anywidget ({e}): pip install -r requirements-notebook.txt") from e

from model import CaptureBudget, Pipeline, RunResult, load, run
from model.core.names import RecordName, story_order

from . import canvas, map_parts, tiles, wire
from .heatmap import STAGE_NAMES
from .standalone import EXACT_CELLS, Standalone, standalone_html

# the app's defaults (ui.tracing): a full capture up to 256 MiB, above it a lazy trace (8,192 tokens on a CPU)
NOTEBOOK_BUDGET = CaptureBudget(full_bytes=256 * 2**20, record_bytes=512 * 2**20, cache_bytes=256 * 2**20)


def trace(model, text: str | None = None, target: str | None = None, *, device: str = "auto", mode: str = "auto",
          budget: CaptureBudget = NOTEBOOK_BUDGET, **options) -> RunResult:
    """One traced call (model.call.run) -> its RunResult, whose ``trace`` holds the numbers the widget shows.

    ``model``: a path, a pipeline (``model.load``), ``(PreTrainedModel, tokenizer)`` or a RunResult (returned as
    it is). ``text``: the input (an encoder-decoder's source); ``target``: an encoder-decoder's target to
    teacher-force (None: greedy output). ``options``: those of ``model.run`` (max_new_tokens, capture, ablations,
    knockouts, ...)."""
    if isinstance(model, RunResult):
        if text is not None or target is not None:
            raise ValueError("a RunResult is already traced: give it without a text")
        if model.trace is None:
            raise ValueError("this RunResult holds no trace (it was run with capture=False or mode='none')")
        return model
    if text is None:
        raise ValueError("give the text to trace")
    if isinstance(model, tuple):
        if len(model) != 2:
            raise TypeError("give a transformers model as (model, tokenizer)")
        from model.hf.adopt import adopted, detached  # imports transformers only for this form

        with adopted(*model) as pipe:  # the result reads nothing of the user's model after the call
            return detached(run(pipe, text, target, mode=mode, budget=budget, **options))
    if isinstance(model, (str, os.PathLike)):
        model = load(model, device)
    if not isinstance(model, Pipeline):
        raise TypeError(f"cannot trace a {type(model).__name__}: give a path, a pipeline from model.load, "
                        "(model, tokenizer) or a RunResult")
    return run(model, text, target, mode=mode, budget=budget, **options)


def pick_name(names: list[str], attention: str | None) -> str:
    """A record name, or the last layer of an attention kind ("cross", "encoder self", "decoder masked self"); by
    default the last layer of the kind the app opens first."""
    if attention in names:
        return attention
    kinds = story_order(dict.fromkeys(RecordName.parse(n).kind for n in names))
    kind = attention if attention in kinds else None
    if attention is not None and kind is None:
        raise ValueError(f"no attention {attention!r} here: one of {names} or a kind of {kinds}")
    return [n for n in names if RecordName.parse(n).kind == (kind or kinds[0])][-1]


class AttentionWidget(anywidget.AnyWidget):
    """The attention canvas of one traced call in a notebook (see the module docstring); ``result`` is the call."""

    _esm = canvas.renderer_js("anywidget")
    _css = canvas.renderer_css()
    key = t.Unicode("").tag(sync=True)  # the page's instance name (window.__attnCanvasStats[key])
    overview = t.Bytes(b"").tag(sync=True)  # the overview part, packed (viz.wire.pack): a binary buffer
    choices = t.Dict().tag(sync=True)  # {records: [{name, kind, layer}], stages: {name: [...]}, stage_names}
    name = t.Unicode("").tag(sync=True)  # the attention shown ("decoder.1.cross_attn")
    stage = t.Unicode("weights").tag(sync=True)
    head = t.Int(0).tag(sync=True)
    view = t.Dict(default_value=None, allow_none=True).tag(sync=True)  # cells in view {r0, r1, c0, c1}, end exclusive
    query = t.Int(default_value=None, allow_none=True).tag(sync=True)  # the clicked row
    selection = t.Dict(default_value=None, allow_none=True).tag(sync=True)  # {kind: cells | row | column | rect, ...}

    def __init__(self, result: RunResult, attention: str | None = None, stage: str = "weights", head: int = 0):
        self.result = result
        self.sent = {"overview": 0, "parts": 0, "messages": 0}  # bytes (and messages) sent to the page
        self._part = None
        self._built = None
        self._last_detail = None
        names = list(result.trace)
        records = [{"name": n, "kind": RecordName.parse(n).kind, "layer": RecordName.parse(n).layer} for n in names]
        super().__init__(key=f"nb-{secrets.token_hex(4)}", name=pick_name(names, attention), stage=stage, head=head,
                         choices={"records": records, "stages": {n: map_parts.map_stages(result.trace, n)
                                                                 for n in names}, "stage_names": STAGE_NAMES})
        self._new_overview()
        self.observe(self._on_pick, names=["name", "stage"])
        self.observe(self._on_view, names=["view", "head"])
        self.observe(self._on_query, names=["query"])
        self.on_msg(self._on_msg)

    # ---- what the page may set
    @t.validate("name")
    def _valid_name(self, proposal):
        if proposal["value"] not in self.result.trace:
            raise t.TraitError(f"no attention {proposal['value']!r}: one of {list(self.result.trace)}")
        return proposal["value"]

    @t.validate("stage")
    def _valid_stage(self, proposal):
        name = self.name or next(iter(self.result.trace))
        stages = map_parts.map_stages(self.result.trace, name) if name in self.result.trace else []
        if stages and proposal["value"] not in stages:
            raise t.TraitError(f"no stage {proposal['value']!r} here: one of {stages}")
        return proposal["value"]

    @t.validate("head")
    def _valid_head(self, proposal):
        n = self.result.trace.shape(self.name).n_heads if self.name in self.result.trace else 1 << 30
        if not 0 <= proposal["value"] < n:
            raise t.TraitError(f"head {proposal['value']} is not one of 0..{n - 1}")
        return proposal["value"]

    # ---- answers
    def _send_part(self, part: dict) -> None:
        data = wire.pack({**part, "key": self.key})
        self.sent["parts"] += len(data)
        self.sent["messages"] += 1
        self.send({"type": "part"}, buffers=[data])

    def _answer(self, fn) -> None:
        """Run one answer to the page; an error goes to the page's status line (the kernel keeps going)."""
        try:
            fn()
        except Exception as e:  # shown on the page, as the app shows its errors
            self.send({"type": "error", "message": f"{type(e).__name__}: {e}"})

    def _new_overview(self) -> None:
        if self._part is not None and self._built == (self.name, self.stage):
            return  # the page set attention and stage together: one overview
        self._built = (self.name, self.stage)
        shape = self.result.trace.shape(self.name)
        head = min(self.head, shape.n_heads - 1)
        old = self._part
        self._part = map_parts.overview_part(self.result, self.name, self.stage, head)
        data = wire.pack({**self._part, "key": self.key})
        self.sent["overview"] += len(data)
        self.overview = data
        self.head = head  # the observers below see the new overview
        if old is not None and (old["n_rows"], old["n_cols"]) != (shape.tq, shape.tk):
            self.view = None  # the page shows the whole new map and reports it

    def _send_detail(self) -> None:
        shape = self.result.trace.shape(self.name)
        window = tiles.detail_window(self.view, shape.tq, shape.tk)
        key = (self._part["id"], self.head, json.dumps(window, sort_keys=True))
        if key == self._last_detail:
            return
        self._last_detail = key
        self._send_part(map_parts.detail_part(self.result.trace, self.name, self.head, self.stage, self.view,
                                              self._part["id"]))

    def _send_row(self) -> None:
        if self.query is not None and 0 <= self.query < self.result.trace.shape(self.name).tq:
            self._send_part(map_parts.row_part(self.result.trace, self.name, self.head, self.query, self._part["id"]))

    def _on_pick(self, change) -> None:
        def answer():
            self._new_overview()
            self._send_detail()
            self._send_row()
        self._answer(answer)

    def _on_view(self, change) -> None:
        def answer():
            self._send_detail()
            if change["name"] == "head":
                self._send_row()
        self._answer(answer)

    def _on_query(self, change) -> None:
        self._answer(self._send_row)

    def _on_msg(self, widget, content, buffers) -> None:
        if not isinstance(content, dict) or content.get("type") != "ready":
            return

        def answer():  # a view of the widget opened: the head and view held here, then their detail
            self._send_part({"part": "sync", "overview": self._part["id"], "head": self.head, "view": self.view,
                             "seen": {}, "goto": None})
            self._last_detail = None
            self._send_detail()
            self._send_row()
        self._answer(answer)

    # ---- for the notebook
    def zoom(self, rows: range, cols: range) -> None:
        """Move every open view of the widget to queries ``rows`` x keys ``cols`` (exact cells up to 512 x 512)."""
        goto = {"r0": rows.start, "r1": rows.stop, "c0": cols.start, "c1": cols.stop, "nonce": secrets.token_hex(4)}
        self._send_part({"part": "sync", "overview": self._part["id"], "head": self.head, "view": None, "seen": {},
                         "goto": goto})

    def save_html(self, path: str | os.PathLike, caption: str = "", exact_cells: int = EXACT_CELLS) -> Standalone:
        """The map as shown (attention, stage, head, view) as one self-contained HTML file (viz.standalone) at
        ``path``; returns what it holds (its size in ``nbytes``, its exact cells in ``note``)."""
        out = standalone_html(self.result, self.name, self.stage, self.head, self.view, caption=caption,
                              exact_cells=exact_cells)
        Path(path).write_text(out.html, encoding="utf-8")
        return out


def show(model, text: str | None = None, target: str | None = None, *, attention: str | None = None,
         stage: str = "weights", head: int = 0, **options) -> AttentionWidget:
    """The attention canvas of one traced call as a notebook widget: ``trace(model, text, target, **options)``,
    opened at ``attention`` (a name such as "decoder.1.cross_attn", or a kind: "cross", "encoder self",
    "decoder masked self"; default: the last layer of the kind the app opens first), ``stage`` and ``head``."""
    return AttentionWidget(trace(model, text, target, **options), attention, stage, head)


__all__ = ["NOTEBOOK_BUDGET", "AttentionWidget", "pick_name", "show", "trace"]
