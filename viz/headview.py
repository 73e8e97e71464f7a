"""Head view (lines): tokens in two columns, a line per (query, key) whose opacity is the weight.

A self-contained HTML page (SVG + a little JavaScript, nothing loaded from anywhere) for ``st.components``:
hover a token to isolate its lines, click a head's chip to show or hide it, download a PNG. Only lines above a
threshold are drawn (the count of hidden ones is returned and shown). Token text goes in through ``textContent``
and the data through escaped JSON, so nothing a model or a user typed is ever interpreted as HTML.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .training import HEAD_COLOURS

ROW_PX = 18
MAX_HEIGHT_PX = 900


@dataclass(frozen=True)
class HeadViewLines:
    """The lines to draw: (head, query, key, weight) rows above the threshold, and how many were left out."""

    lines: np.ndarray  # (N, 4) float: head, query, key, weight
    hidden: int  # allowed (query, key, head) pairs under the threshold
    total: int  # allowed pairs in the selected heads


def select_lines(weights: np.ndarray, heads: Sequence[int], threshold: float,
                 allowed: np.ndarray | None = None) -> HeadViewLines:
    """(H, Tq, Tk) weights -> the lines of the chosen heads with weight >= threshold (masked pairs never count)."""
    w = np.asarray(weights, dtype=np.float32)
    ok = np.ones(w.shape, bool) if allowed is None else np.broadcast_to(np.asarray(allowed, bool), w.shape)
    rows, total = [], 0
    for h in heads:
        keep = ok[h] & (w[h] >= threshold) & (w[h] > 0)
        total += int(ok[h].sum())
        qi, kj = np.nonzero(keep)
        rows.append(np.stack([np.full(qi.shape, h), qi, kj, w[h][qi, kj]], axis=1))
    lines = np.concatenate(rows) if rows else np.zeros((0, 4))
    return HeadViewLines(lines=lines, hidden=total - len(lines), total=total)


def _json(data) -> str:
    """JSON safe inside a <script> element."""
    return (json.dumps(data, ensure_ascii=True, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def head_view_html(q_tokens: Sequence[str], k_tokens: Sequence[str], selection: HeadViewLines, heads: Sequence[int],
                   *, left_title: str, right_title: str) -> tuple[str, int]:
    """-> (HTML, height in px). ``q_tokens`` / ``k_tokens`` are plain text (shown with their positions)."""
    n = max(len(q_tokens), len(k_tokens), 1)
    height = 70 + n * ROW_PX
    data = {
        "q": [f"{i}·{t}" for i, t in enumerate(q_tokens)], "k": [f"{i}·{t}" for i, t in enumerate(k_tokens)],
        "lines": [[int(h), int(i), int(j), round(float(w), 4)] for h, i, j, w in selection.lines],
        "heads": [int(h) for h in heads], "colours": {int(h): HEAD_COLOURS[int(h) % len(HEAD_COLOURS)] for h in heads},
        "titles": [left_title, right_title], "row": ROW_PX,
    }
    page = _TEMPLATE.replace("__DATA__", _json(data)).replace("__HEIGHT__", str(height))
    return page, min(height + 50, MAX_HEIGHT_PX)


_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;font:13px 'Source Sans Pro',sans-serif;color:#31333f;background:#fff}
#bar{padding:4px 2px 8px 2px}
.chip{display:inline-block;margin:2px;padding:1px 8px;border-radius:10px;border:2px solid;cursor:pointer;
 user-select:none}
.chip.off{opacity:.3}
button{margin-left:10px;font:inherit;cursor:pointer}
text{font-size:12px;cursor:default}
text.hot{font-weight:bold}
line{stroke-width:2}
</style></head><body><div id="bar"></div><svg id="svg" xmlns="http://www.w3.org/2000/svg" width="100%"
height="__HEIGHT__"></svg><script>
const D = __DATA__;
const NS = "http://www.w3.org/2000/svg", svg = document.getElementById("svg"), bar = document.getElementById("bar");
const W = Math.max(svg.getBoundingClientRect().width || 700, 420), L = W * 0.3, R = W * 0.7, TOP = 36;
const shown = new Set(D.heads);
let focus = null;
function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  svg.appendChild(e); return e;
}
el("text", {x: L, y: 16, "text-anchor": "end", "font-weight": "bold"}, D.titles[0]);
el("text", {x: R, y: 16, "font-weight": "bold"}, D.titles[1]);
const lines = D.lines.map(([h, i, j, w]) => {
  const e = el("line", {x1: L + 6, y1: TOP + i * D.row, x2: R - 6, y2: TOP + j * D.row, stroke: D.colours[h]});
  e.dataset.h = h; e.dataset.i = i; e.dataset.j = j; e.dataset.w = w;
  const t = document.createElementNS(NS, "title");
  t.textContent = "head " + h + ": " + D.q[i] + " \u2192 " + D.k[j] + "  weight " + w.toFixed(4);
  e.appendChild(t); return e;
});
const qText = D.q.map((s, i) => el("text", {x: L, y: TOP + i * D.row + 4, "text-anchor": "end"}, s));
const kText = D.k.map((s, j) => el("text", {x: R, y: TOP + j * D.row + 4}, s));
function draw() {
  for (const e of lines) {
    const on = shown.has(+e.dataset.h);
    const hit = focus === null || (focus[0] === "q" ? +e.dataset.i === focus[1] : +e.dataset.j === focus[1]);
    e.style.display = on ? "" : "none";
    e.setAttribute("stroke-opacity", hit ? e.dataset.w : 0.02);
  }
  qText.forEach((t, i) => t.setAttribute("class", focus && focus[0] === "q" && focus[1] === i ? "hot" : ""));
  kText.forEach((t, j) => t.setAttribute("class", focus && focus[0] === "k" && focus[1] === j ? "hot" : ""));
}
qText.forEach((t, i) => { t.onmouseenter = () => { focus = ["q", i]; draw(); };
                          t.onmouseleave = () => { focus = null; draw(); }; });
kText.forEach((t, j) => { t.onmouseenter = () => { focus = ["k", j]; draw(); };
                          t.onmouseleave = () => { focus = null; draw(); }; });
for (const h of D.heads) {
  const c = document.createElement("span");
  c.className = "chip"; c.textContent = "head " + h; c.style.borderColor = D.colours[h];
  c.onclick = () => { if (shown.has(h)) shown.delete(h); else shown.add(h); c.classList.toggle("off"); draw(); };
  bar.appendChild(c);
}
const png = document.createElement("button");
png.textContent = "Download PNG";
png.onclick = () => {
  const box = svg.getBoundingClientRect(), clone = svg.cloneNode(true);
  clone.setAttribute("width", box.width); clone.setAttribute("height", box.height);
  const style = document.createElementNS(NS, "style");
  style.textContent = "text{font:12px sans-serif}line{stroke-width:2}text.hot{font-weight:bold}";
  clone.insertBefore(style, clone.firstChild);
  const img = new Image(), url = URL.createObjectURL(new Blob([new XMLSerializer().serializeToString(clone)],
                                                              {type: "image/svg+xml"}));
  img.onload = () => {
    const cv = document.createElement("canvas"); cv.width = box.width * 2; cv.height = box.height * 2;
    const ctx = cv.getContext("2d"); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, cv.width, cv.height);
    ctx.scale(2, 2); ctx.drawImage(img, 0, 0); URL.revokeObjectURL(url);
    const a = document.createElement("a"); a.download = "head_view.png"; a.href = cv.toDataURL("image/png"); a.click();
  };
  img.src = url;
};
bar.appendChild(png);
draw();
</script></body></html>"""
