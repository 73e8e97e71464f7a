"""A map view as one self-contained HTML file: it opens offline in a browser (no CDN, no server, nothing fetched:
its Content-Security-Policy allows no connection), holds the overview of every head of one attention and stage, and
exact cells up to a budget; hover, zoom, head switching, find in text and the PNG button work as in the app.

The file embeds the canvas's JavaScript and CSS (viz.canvas, host "static") and the parts viz.wire packs, each
zlib-deflated and base64-encoded (the page inflates them with the browser's DecompressionStream). Exact cells, at
most ``EXACT_CELLS`` (float32, before compression): whole heads, the chosen one first, then the others in order, as
long as they fit; when even the chosen head does not (T above 1,024 for a square map), the cells of the saved view
of the chosen head, cut to the budget around its centre. Over other cells the hover gives the overview's value (to
1/255 of the range) and says where the file's exact cells are.
"""

from __future__ import annotations

import base64
import html
import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from . import canvas, map_parts, tiles, wire

EXACT_CELLS = 1 << 20  # exact cells one file holds: 4 MiB of float32 before compression (a 1,024 x 1,024 head)
PAGE_CSS = """body { margin: 16px 20px; font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
  color: #31333f; background: #ffffff; }
.attn-file-head h1 { font-size: 18px; margin: 0 0 4px; }
.attn-file-head p { font-size: 13px; margin: 2px 0; opacity: 0.8; max-width: 70em; }
#attn-root { margin-top: 10px; max-width: 1200px; }"""
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
       "connect-src 'none'")


@dataclass(frozen=True)
class Standalone:
    """One written file: its text, which exact cells it holds, and what its hover says over the others."""

    html: str
    exact_heads: tuple[int, ...]  # heads whose every cell is exact in the file
    exact_window: dict | None  # {head, r0, r1, c0, c1} (end exclusive) when only a window of one head is exact
    note: str  # the hover's words over cells without exact values

    @property
    def nbytes(self) -> int:
        return len(self.html.encode("utf-8"))


def exact_plan(n_heads: int, tq: int, tk: int, head: int, view: Mapping | None, budget: int = EXACT_CELLS
               ) -> tuple[list[int], dict | None]:
    """(heads held whole, or a window of ``head`` when that head alone is over ``budget`` cells)."""
    cells = tq * tk
    if cells <= budget:
        order = [head, *(h for h in range(n_heads) if h != head)]
        return sorted(order[:max(1, budget // cells)]), None
    v = view or {"r0": 0, "r1": tq, "c0": 0, "c1": tk}
    r0, r1 = max(0, int(v["r0"])), min(tq, int(v["r1"]))
    c0, c1 = max(0, int(v["c0"])), min(tk, int(v["c1"]))
    side = math.isqrt(budget)
    rows = max(1, min(r1 - r0, side))
    cols = max(1, min(c1 - c0, budget // rows))

    def centred(a: int, b: int, span: int, n: int) -> tuple[int, int]:
        start = min(max(0, (a + b - span) // 2), n - span)
        return start, start + span
    r0, r1 = centred(r0, r1, rows, tq)
    c0, c1 = centred(c0, c1, cols, tk)
    return [], {"head": int(head), "r0": r0, "r1": r1, "c0": c0, "c1": c1}


def _coverage(heads: list[int], window: dict | None, n_heads: int, budget: int) -> str:
    if window is not None:
        return (f"this file holds exact values for queries {window['r0']:,}–{window['r1'] - 1:,} × keys "
                f"{window['c0']:,}–{window['c1'] - 1:,} of head {window['head']} only (its budget: {budget:,} exact "
                "cells)")
    if len(heads) == n_heads:
        return "every cell of every head is exact in this file"
    return (f"this file holds exact values for head{'s' if len(heads) > 1 else ''} "
            f"{', '.join(map(str, heads))} of {n_heads} only (its budget: {budget:,} exact cells)")


def _entry(part: Mapping, key: str) -> dict:
    data = zlib.compress(wire.pack({**part, "key": key}), 6)
    return {"data": base64.b64encode(data).decode("ascii"), "deflate": True}


def standalone_html(result, name: str, stage: str = "weights", head: int = 0, view: Mapping | None = None, *,
                    caption: str = "", exact_cells: int = EXACT_CELLS) -> Standalone:
    """One attention (``name``) and stage of a traced call (model.api.RunResult) as a self-contained HTML file,
    opened at ``head`` and ``view`` ({r0, r1, c0, c1}, end exclusive; None: the whole map)."""
    trace = result.trace
    shape = trace.shape(name)
    head = int(min(max(0, head), shape.n_heads - 1))
    overview = map_parts.overview_part(result, name, stage, head)
    heads, window = exact_plan(shape.n_heads, shape.tq, shape.tk, head, view, exact_cells)
    key = "file"
    parts = [_entry(overview, key)]
    whole = {"r0": 0, "r1": shape.tq, "c0": 0, "c1": shape.tk, "pool": 1}
    for h in heads:
        parts.append(_entry(tiles.trace_detail(trace, name, h, whole, stage, overview_id=overview["id"]), key))
    if window is not None:
        cut = {**{k: window[k] for k in ("r0", "r1", "c0", "c1")}, "pool": 1}
        parts.append(_entry(tiles.trace_detail(trace, name, head, cut, stage, overview_id=overview["id"]), key))
    note = _coverage(heads, window, shape.n_heads, exact_cells)
    spec = {"key": key, "head": head, "parts": parts, "note": note + "; elsewhere the overview's values",
            "view": None if view is None else {k: int(view[k]) for k in ("r0", "r1", "c0", "c1")}}
    title = map_parts.map_title(name, stage)
    saved = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    js = canvas.renderer_js("static")
    if "</script" in js.lower():
        raise ValueError("the canvas JavaScript holds '</script': it cannot be inlined")
    data = json.dumps(spec, separators=(",", ":")).replace("<", "\\u003c")  # no "</script>" inside
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{PAGE_CSS}</style>
<style>{canvas.renderer_css()}</style>
</head>
<body>
<header class="attn-file-head">
<h1>{html.escape(title)}</h1>
<p>{html.escape(caption) + " · " if caption else ""}{shape.tq:,} queries × {shape.tk:,} keys, {shape.n_heads} heads;
{html.escape(note)}. Saved {saved} by Attention, inspected; it opens offline (nothing is fetched).</p>
</header>
<div id="attn-root"></div>
<script type="application/json" id="attn-file">{data}</script>
<script type="module">
{js}
</script>
</body>
</html>
"""
    return Standalone(html=page, exact_heads=tuple(heads), exact_window=window, note=note)


__all__ = ["EXACT_CELLS", "Standalone", "exact_plan", "standalone_html"]
