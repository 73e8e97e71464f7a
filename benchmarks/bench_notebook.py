"""The notebook widget (viz.notebook) against CircuitsVis's attention_heads, on the same attention tensors, in the same
JupyterLab and the same headless Chromium.

For T = 32, 1,024 and 8,192 tokens on the Llama-shaped random model of bench_long (4 layers x 8 heads, 8,192
positions), layer 2's self-attention, all 8 heads:

  payload: what reaches the page for the first draw. The widget: its state (the overview of every head as one binary
  buffer, a few numbers, its JavaScript and CSS once); CircuitsVis: the HTML its attention_heads writes (every value of
  every head as JSON text, its 1.3 MB bundle inlined). Per drawn cell: payload / (heads x T x T).
  time to first draw: in JupyterLab, from Shift+Enter on a cell that only displays the prepared object (the trace,
  the overview and CircuitsVis's HTML are made by the cell before) to the first map drawn (the widget's first canvas
  draw; CircuitsVis's first heatmap <canvas>), on the page's clock, capped at CAP_S.

CircuitsVis at 8,192 tokens is not attempted: its HTML's size is measured from its own prop conversion of a sample of
the same tensors (64 query rows of every head) and extrapolated (about 7.5 GB, 14 times the longest string V8, so
Chromium, can hold: no page can carry it). Building it would also take about 17 GB of Python floats (tolist), more
than this machine has free: an attempt under an address-space cap ended in the kernel's OOM killer.

    python -m benchmarks.bench_notebook            # prints a table, writes benchmarks/results/notebook.json
    python -m benchmarks.bench_notebook --quick    # T = 32 and 1,024 only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tests.e2e_support import ROOT, chromium, jupyter_lab, write_notebook

RESULTS = Path(__file__).parent / "results"
SHAPE = "llama-4x8-d512"
NAME = "decoder.2.self_attn"
CAP_S = 300.0
REPEATS = 3  # displays timed per case (the median is reported)
V8_MAX_STRING = (1 << 29) - 24  # characters: Chromium cannot hold a longer string (the page's HTML or its JSON)
TARGETS = {"payload_ratio_at_1024": 10.0}

SETUP = f"""import json, time, torch
import circuitsvis as cv
from IPython.display import HTML
import viz.notebook as nb
from benchmarks.gpt2small import text_of_tokens
from benchmarks.llama_shaped import llama_shaped
from model import load
torch.set_num_threads(2)
pipe = load(llama_shaped({SHAPE!r}), 'cpu')
name = {NAME!r}"""

WIDGET = """T = {T}
res = nb.trace(pipe, text_of_tokens(pipe.tokenizer.hf, T), statistics=False)
w = nb.AttentionWidget(res, attention=name)
state = w.get_state()
shape = res.trace.shape(name)
started = time.perf_counter()
saved = w.save_html({html!r})
print('WIDGET', json.dumps({{'key': w.key, 'T': shape.tq, 'heads': shape.n_heads, 'mode': res.mode,
    'overview_bytes': len(w.overview), 'js_css_bytes': len(state['_esm']) + len(state['_css']),
    'state_json_bytes': len(json.dumps({{k: v for k, v in state.items() if k not in ('_esm', '_css', 'overview')}},
                                       default=str)),
    'html': {{'bytes': saved.nbytes, 'written_s': round(time.perf_counter() - started, 2), 'note': saved.note,
             'exact_heads': list(saved.exact_heads), 'exact_window': saved.exact_window}}}}))"""

CIRCUITSVIS = """rows, cols = range(shape.tq), range(shape.tk)
weights = torch.stack([torch.from_numpy(res.trace.window(name, h, rows, cols).values) for h in range(shape.n_heads)])
html = cv.attention.attention_heads(attention=weights, tokens=list(res.target.tokens)).local_src
del weights
print('CIRCUITSVIS', json.dumps({'html_bytes': len(html.encode('utf-8'))}))"""

# Above 1,024 tokens: what CircuitsVis's HTML would hold, from its own prop conversion of 64 query rows of every head
# (4 runs of 16, spread over the map: early causal rows are mostly zeros, which write shorter), per value.
CIRCUITSVIS_SIZE = """from circuitsvis.utils.convert_props import convert_props
import numpy as np
starts = [int(shape.tq * f) for f in (0.1, 0.35, 0.6, 0.85)]
sample = torch.from_numpy(np.stack([np.concatenate([res.trace.window(name, h, range(a, a + 16), range(shape.tk)).values
                                                    for a in starts]) for h in range(shape.n_heads)]))
tokens = list(res.target.tokens)
per_value = (len(convert_props({'attention': sample, 'tokens': tokens})) - len(convert_props({'tokens': tokens}))) \
    / sample.numel()
bundle = len(cv.attention.attention_heads(attention=sample[:, :1, :2], tokens=tokens[:2]).local_src)
size = bundle + len(convert_props({'tokens': tokens})) + per_value * shape.n_heads * shape.tq * shape.tk
print('CIRCUITSVIS', json.dumps({'estimated_html_bytes': int(size), 'bytes_per_value_in_sample': round(per_value, 2),
                                 'sampled_values': sample.numel()}))"""


def run_cell(page, index: int) -> float:
    """Select cell ``index`` (command mode) and run it; returns the page's clock when Shift+Enter was pressed."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputPrompt").click()
    t0 = page.evaluate("() => performance.now()")
    page.keyboard.press("Shift+Enter")
    return t0


def printed(page, marker: str, timeout_s: float) -> dict:
    page.wait_for_function("(m) => Array.from(document.querySelectorAll('.jp-OutputArea-output pre'))"
                           ".some((e) => e.innerText.startsWith(m + ' '))", arg=marker, timeout=timeout_s * 1000)
    texts = page.eval_on_selector_all(".jp-OutputArea-output pre", "(es) => es.map((e) => e.innerText)")
    return json.loads(next(t for t in texts if t.startswith(marker + " "))[len(marker) + 1:])


def first_draw(page, t0: float, condition: str, arg=None, drawn_at: str | None = None) -> dict:
    """ms from t0 until ``condition`` holds (checked every animation frame; ``drawn_at``: JavaScript giving the time
    the page itself recorded for that draw), capped at CAP_S."""
    try:
        handle = page.wait_for_function(f"(a) => ({condition}) ? performance.now() : false", arg=arg,
                                        timeout=CAP_S * 1000, polling="raf")
        at = page.evaluate(f"(a) => {drawn_at}", arg) if drawn_at else handle.json_value()
        return {"first_draw_ms": round(at - t0, 1), "ok": True}
    except Exception as e:  # a timeout, or the page crashing: recorded as such
        return {"first_draw_ms": None, "ok": False, "failure": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}


def timed(page, index: int, condition: str, arg=None, mark: str | None = None, drawn_at: str | None = None) -> dict:
    """Run display cell ``index`` (after ``mark``, JavaScript that marks what an earlier run drew) and time it to
    ``condition``."""
    if mark:
        page.evaluate(f"(a) => {{ {mark} }}", arg)
    return first_draw(page, run_cell(page, index), condition, arg, drawn_at)


def repeated(page, index: int, condition: str, arg, mark: str, n: int, drawn_at: str | None = None) -> dict:
    """``timed`` n times (each run of the cell replaces its output: a fresh view); the median and every run."""
    runs = [timed(page, index, condition, arg, mark if i else None, drawn_at) for i in range(n)]
    ms = [r["first_draw_ms"] for r in runs if r["ok"]]
    out = {"first_draw_ms": statistics.median(ms) if ms else None, "runs_ms": [r["first_draw_ms"] for r in runs],
           "ok": len(ms) == n}
    failures = [r["failure"] for r in runs if not r["ok"]]
    return {**out, "failure": failures[0]} if failures else out


def offline_draw(context, path: Path) -> dict:
    """The standalone file opened with every other request refused: ms from navigation to its first draw."""
    page = context.new_page()
    refused: list[str] = []

    def route(r):
        if r.request.url == path.as_uri():
            return r.continue_()
        refused.append(r.request.url)
        return r.abort()
    page.route("**/*", route)
    try:
        page.goto(path.as_uri(), wait_until="commit")
        handle = page.wait_for_function("() => { const s = (window.__attnCanvasStats || {}).file;"
                                        " return s && s.history.length > 0 && s.history[0].at; }",
                                        timeout=CAP_S * 1000, polling="raf")
        return {"offline_first_draw_ms": round(handle.json_value(), 1), "refused_requests": len(refused)}
    finally:
        page.close()


WIDGET_DRAWN = "(window.__attnCanvasStats || {})[a] && !window.__attnCanvasStats[a].old && " \
    "window.__attnCanvasStats[a].history.length > 0"
WIDGET_DRAWN_AT = "window.__attnCanvasStats[a].history[0].at"  # the rAF after its first draw
WIDGET_MARK = "if ((window.__attnCanvasStats || {})[a]) window.__attnCanvasStats[a].old = true;"
CV_DRAWN = "document.querySelector('[id^=\"circuits-vis-\"]:not([data-old]) canvas')"
CV_MARK = "document.querySelectorAll('[id^=\"circuits-vis-\"]').forEach((e) => e.setAttribute('data-old', ''));"


def case(context, T: int, with_circuitsvis: bool) -> dict:
    """One fresh JupyterLab and kernel: the widget, then (up to 1,024) CircuitsVis, each displayed by a cell of its
    own and timed to its first draw (the widget REPEATS times, CircuitsVis REPEATS times up to 32 tokens, else once:
    its page stays busy for minutes)."""
    with tempfile.TemporaryDirectory(prefix="bench-notebook-") as tmp:
        root = Path(tmp)
        cells = [SETUP, WIDGET.format(T=T, html=str(root / "map.html")), "w",
                 CIRCUITSVIS if with_circuitsvis else CIRCUITSVIS_SIZE, "HTML(html)" if with_circuitsvis else "pass"]
        write_notebook(root / "bench.ipynb", cells)
        with jupyter_lab(root) as url:
            page = context.new_page()
            try:
                page.goto(f"{url}/lab/tree/bench.ipynb?token={url.token}")
                page.wait_for_function("() => /\\| Idle/.test((document.querySelector('#jp-main-statusbar') || {})"
                                       ".innerText || '')", timeout=CAP_S * 1000)
                run_cell(page, 0)
                run_cell(page, 1)
                widget = printed(page, "WIDGET", 1800)
                widget.update(repeated(page, 2, WIDGET_DRAWN, widget["key"], WIDGET_MARK, REPEATS,
                                        WIDGET_DRAWN_AT))
                out = {"T": widget.pop("T"), "heads": widget.pop("heads"), "html": widget.pop("html"), "widget": widget}
                out["html"].update(offline_draw(context, root / "map.html"))
                run_cell(page, 3)
                circuitsvis = printed(page, "CIRCUITSVIS", 1800)
                if with_circuitsvis:
                    circuitsvis.update(repeated(page, 4, CV_DRAWN, None, CV_MARK, REPEATS if T <= 32 else 1))
                else:  # its page could not be: the HTML alone is longer than any string Chromium can hold
                    circuitsvis.update({"ok": False, "first_draw_ms": None, "failure": (
                        f"not drawn: its HTML would be {circuitsvis['estimated_html_bytes'] / 1e9:.1f} GB, over the "
                        f"longest string V8 holds ({V8_MAX_STRING:,} characters); not attempted")})
                out["circuitsvis"] = circuitsvis
                try:  # a page still busy drawing CircuitsVis's map may not answer
                    page.screenshot(path=str(ROOT / "artifacts" / f"bench-notebook-{T}.png"), timeout=60_000)
                except Exception as e:
                    out["screenshot"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                return out
            finally:
                page.close()


def summarise(row: dict) -> dict:
    """Bytes per drawn cell (heads x T x T) on both sides, and the ratio of the payloads."""
    cells = row["heads"] * row["T"] ** 2
    w = row["widget"]
    w["payload_bytes"] = w["overview_bytes"] + w["state_json_bytes"] + w["js_css_bytes"]
    w["bytes_per_cell"] = round(w["payload_bytes"] / cells, 4)
    w["overview_bytes_per_cell"] = round(w["overview_bytes"] / cells, 4)
    c = row["circuitsvis"]
    size = c.get("html_bytes") or c.get("estimated_html_bytes")
    c["bytes_per_cell"] = round(size / cells, 2)
    c["over_v8_max_string"] = size > V8_MAX_STRING
    row["payload_ratio"] = round(size / w["payload_bytes"], 1)
    row["cells"] = cells
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="T = 32 and 1,024 only")
    ap.add_argument("--only", type=int, default=None, help="one T, its row replaced in the results file")
    args = ap.parse_args()
    from benchmarks.llama_shaped import llama_shaped

    llama_shaped(SHAPE)  # built once, before any clock runs
    (ROOT / "artifacts").mkdir(exist_ok=True)
    rows = []
    with chromium(viewport=(1400, 1000)) as page:
        for T in [args.only] if args.only else (32, 1024) if args.quick else (32, 1024, 8192):
            row = case(page.context, T, with_circuitsvis=T <= 1024)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.only and (RESULTS / "notebook.json").is_file():  # the other rows as the last full run left them
        kept = [r for r in json.loads((RESULTS / "notebook.json").read_text())["rows"] if r["T"] != args.only]
        rows = sorted(kept + rows, key=lambda r: r["T"])
    rows = [summarise(r) for r in rows]
    at_1024 = next((r for r in rows if r["T"] == 1024), {})
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
           "cpu_count": os.cpu_count(), "model": f"{SHAPE} ({NAME}, 8 heads), random weights",
           "jupyterlab": _version("jupyterlab"), "anywidget": _version("anywidget"),
           "circuitsvis": _version("circuitsvis"), "chromium": "Debian /usr/bin/chromium, headless", "cap_s": CAP_S,
           "targets": TARGETS, "rows": rows,
           "floors": {"payload_ratio_at_1024": at_1024.get("payload_ratio"),
                      "widget_draws_at_8192": any(r["T"] == 8192 and r["widget"]["ok"] for r in rows) or None,
                      "circuitsvis_draws_at_8192": next((r["circuitsvis"]["ok"] for r in rows if r["T"] == 8192),
                                                        None)}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "notebook.json").write_text(json.dumps(out, indent=1) + "\n")
    for r in rows:
        c = r.get("circuitsvis", {})
        print(f"T={r['T']:>5}  widget {r['widget']['payload_bytes']:>11,} B ({r['widget']['bytes_per_cell']} B/cell), "
              f"first draw {r['widget']['first_draw_ms']} ms  |  CircuitsVis "
              f"{c.get('html_bytes', c.get('estimated_html_bytes', 0)):>14,} B, first draw {c.get('first_draw_ms')} ms"
              f"{'' if c.get('ok') else ' (' + str(c.get('failure')) + ')'}")
    return 0


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
