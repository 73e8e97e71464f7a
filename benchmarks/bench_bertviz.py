"""BertViz's head_view and model_view against this app, on the same attention tensors, in the same Chromium.

BertViz (pip bertviz, a benchmark-only dependency: requirements-bench.txt) puts every layer x head x T x T value
into one HTML page as JSON text and draws it with d3. That page loads require.js 2.3.6, d3 5.7.0 and jQuery 2.0.0
from a CDN this machine cannot reach: the same libraries come from npm into benchmarks/.cache/bertviz-js (jQuery
2.1.0, the closest release on npm) and Playwright serves them in place of the CDN; the page itself comes from a
local HTTP server.

For T = 32, 128, 512 on the GPT-2-small-shaped model (12 x 12 heads, random weights):
  BertViz head_view and model_view: HTML bytes per attention value (page bytes / (L x H x T x T)) and the time from
  navigation to the first drawn line (capped at 120 s; a failure is recorded as such);
  this app: the bytes it ships per value for one layer's map on the canvas (every head: exact float32 cells, or
  uint8 above 4 MiB) and for every layer at once (a short input's stack), the 144-head overview's bytes per
  thumbnail cell, the head view's bytes per line drawn, and in the browser the time from a new input to the drawn
  map and to the drawn head view. BertViz's head switch against the map's, in one Chromium run:
  benchmarks/bench_switch.py.

    python -m benchmarks.bench_bertviz     # prints a table, writes benchmarks/results/bertviz.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import plotly.io as pio
import torch

from benchmarks.bench_browser import ARM_JS
from tests.e2e_support import chromium, streamlit_server, wait_idle

RESULTS = Path(__file__).parent / "results"
JS_CACHE = Path(__file__).parent / ".cache" / "bertviz-js"
CAP_S = 120.0
CDN = {"require.min.js": ("requirejs", "require.js"), "d3.min.js": ("d3", "dist/d3.min.js"),
       "jquery.min.js": ("jquery", "dist/jquery.min.js")}
NPM = ["requirejs@2.3.6", "d3@5.7.0", "jquery@2.1.0"]


def js_files() -> dict[str, bytes]:
    """The libraries BertViz's page asks the CDN for, from npm."""
    if not (JS_CACHE / "node_modules" / "d3").is_dir():
        JS_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(JS_CACHE), *NPM], check=True,
                       capture_output=True)
    return {name: (JS_CACHE / "node_modules" / pkg / rel).read_bytes() for name, (pkg, rel) in CDN.items()}


def attentions(T: int):
    """Every layer's captured weights for a T-token input, as BertViz wants them: a tuple of (1, H, T, T)."""
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import gpt2_small, text_of_tokens
    from model import load

    path = gpt2_small()
    text = text_of_tokens(Tokenizer.from_file(str(path / "tokenizer.json")), T)
    pipe = load(path, "cpu")
    res = pipe.run(text, mode="lazy")
    weights = tuple(res.trace[n].weights.clone() for n in pipe.info.record_names)
    return weights, list(res.target.tokens), text, res


@contextlib.contextmanager
def served(html: str):
    """The page from a local HTTP server, as a notebook's browser gets it over the network (Playwright's
    route.fulfill pushes a body through its driver as one JSON message: a 1 GB page never arrived)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "index.html").write_text(html, encoding="utf-8")
        handler = functools.partial(QuietHandler, directory=tmp)
        with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
            finally:
                server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def bertviz_page(page, html: str, files: dict[str, bytes]) -> dict:
    """Load BertViz's HTML (libraries routed to local copies) and time navigation -> first drawn line."""
    def route(r):
        url = r.request.url
        if "cdnjs" in url:  # the CDN's require.js, d3 and jQuery, from the local npm copies
            key = "require.min.js" if "require" in url else ("d3.min.js" if "/d3/" in url else "jquery.min.js")
            return r.fulfill(status=200, content_type="application/javascript", body=files[key])
        return r.abort()

    page.route("https://**/*", route)
    started = time.perf_counter()
    try:
        with served(html) as address:
            page.goto(address, wait_until="commit", timeout=CAP_S * 1000)
            left = CAP_S - (time.perf_counter() - started)
            page.wait_for_function("() => document.querySelectorAll('svg line').length > 0",
                                   timeout=max(1.0, left) * 1000, polling="raf")
            ms = page.evaluate("() => performance.now()")
        return {"rendered_ms": round(ms, 1), "ok": True}
    except Exception as e:  # a timeout, or the page crashing under the data: a failure, recorded as such
        return {"rendered_ms": None, "ok": False, "failure": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}",
                "after_s": round(time.perf_counter() - started, 1)}
    finally:
        page.unroute("https://**/*")


def our_payloads(weights, tokens) -> dict:
    """Bytes this app ships: one layer's map (every head, the canvas's overview: exact float32 cells up to
    ui.views.record_map.EXACT_BYTES, else uint8), every layer's (the page's stack, as the app sends it for a short
    input), the 144-head overview, the head view (all heads of one layer)."""
    import viz
    from model.core.pooling import overview_factor, pool_weights, thumbnails
    from ui.views.record_map import EXACT_BYTES
    from viz import tiles, wire

    T = len(tokens)
    causal = np.triu(np.full((T, T), tiles.REASON_BITS["causal"], np.uint8), 1)
    H = weights[0].shape[1]
    exact = H * T * T * 4 <= EXACT_BYTES
    layer_maps = [tiles.exact_overview(w[0].numpy(), tokens, codes=causal, exact=exact, choice={"layer": i})
                  for i, w in enumerate(weights)]
    map_bytes = len(wire.pack(layer_maps[0]))
    stack_bytes = len(wire.pack(tiles.stack_payload(layer_maps)))
    thumbs = [t for layer in weights for t in thumbnails(pool_weights(layer[0], overview_factor(T, T))[0])]
    cells = [(layer, h) for layer in range(len(weights)) for h in range(weights[0].shape[1])]
    overview = viz.overview_mosaic(thumbs, cells, cols=weights[0].shape[1], title="overview")
    ov_bytes = len(pio.to_json(overview.to_dict(), validate=False))
    lines = viz.select_lines(weights[0][0].numpy(), list(range(weights[0].shape[1])), 0.05, (causal == 0)[None])
    html, _ = viz.head_view_html(tokens, tokens, lines, list(range(weights[0].shape[1])), left_title="q",
                                 right_title="k")
    return {"map_bytes_per_value": round(map_bytes / (H * T ** 2), 3), "map_exact": exact,
            "stack_bytes_per_value": round(stack_bytes / (len(weights) * H * T ** 2), 3),
            "overview_bytes_per_thumbnail_cell": round(ov_bytes / sum(t.size for t in thumbs), 3),
            "overview_bytes_per_attention_value": round(ov_bytes / (len(weights) * weights[0].shape[1] * T ** 2), 4),
            "head_view_bytes": len(html), "head_view_lines": len(lines.lines)}


def our_times(texts: dict[int, str]) -> dict:
    """In the browser: new input -> drawn exact map, and -> drawn head view (all heads of layer 0)."""
    from benchmarks.gpt2small import gpt2_small

    out = {}
    path = gpt2_small()
    with tempfile.TemporaryDirectory() as empty, streamlit_server(
            env={"INSPECTOR_CHECKPOINTS": empty, "INSPECTOR_MODELS": str(path.parent)}) as url, chromium() as page:
        page.goto(url)
        wait_idle(page, 300_000)
        for T, text in texts.items():
            box = page.get_by_role("textbox", name="Text", exact=True)
            box.fill(text)
            page.evaluate(ARM_JS)
            box.press("Control+Enter")
            page.wait_for_function("() => window.__bench.end !== null", timeout=300_000)
            map_ms = page.evaluate("() => window.__bench.end - window.__bench.start")
            wait_idle(page, 300_000)
            started = page.evaluate("() => performance.now()")
            page.get_by_role("radio", name="Head view", exact=True).click()
            frame = page.frame_locator("iframe").first
            frame.locator("line").first.wait_for(state="attached", timeout=300_000)
            hv_ms = page.evaluate("() => performance.now()") - started
            page.get_by_role("radio", name="Attention map", exact=True).click()
            wait_idle(page, 300_000)
            out[T] = {"new_input_to_map_ms": round(map_ms, 1), "head_view_drawn_ms": round(hv_ms, 1)}
    return out


def main(argv=None) -> None:
    from bertviz import head_view, model_view

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512])
    args = ap.parse_args(argv)
    files = js_files()
    rows, texts = [], {}
    for T in args.lengths:
        weights, tokens, text, _ = attentions(T)
        texts[T] = text
        values = len(weights) * weights[0].shape[1] * T ** 2
        row = {"T": T, "attention_values": values, **our_payloads(weights, tokens)}
        for name, fn in (("head_view", head_view), ("model_view", model_view)):
            t = time.perf_counter()
            html = fn(weights, tokens, html_action="return").data
            build_s = time.perf_counter() - t
            with chromium() as page:
                timing = bertviz_page(page, html, files)
            row[name] = {"html_bytes": len(html), "bytes_per_value": round(len(html) / values, 2),
                         "python_build_s": round(build_s, 2), **timing}
            print(f"T = {T}, BertViz {name}: {row[name]}", flush=True)
            del html
        rows.append(row)
        del weights
    times = our_times(texts)
    for row in rows:
        row["app"] = times[row["T"]]
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
              "model": "GPT-2-small-shaped, random weights (12 x 12 heads, d_model 768)", "cap_s": CAP_S,
              "js_from_npm": NPM, "rows": rows}
    print("BertViz vs this app, same tensors, same Chromium (GPT-2-small-shaped, 12 x 12 heads)")
    for r in rows:
        app = r["app"]
        print(f"\nT = {r['T']} ({r['attention_values']:,} attention values)")
        for name in ("head_view", "model_view"):
            b = r[name]
            when = f"{b['rendered_ms'] / 1000:.2f} s" if b["ok"] else f"FAILED ({b['failure']})"
            print(f"  BertViz {name:<10}: {b['html_bytes'] / 2**20:8.1f} MB HTML, {b['bytes_per_value']:6.2f} B/value,"
                  f" drawn after {when}")
        print(f"  app layer map      : {r['map_bytes_per_value']:6.2f} B/value (every head, "
              f"{'float32' if r['map_exact'] else 'uint8'}), every layer {r['stack_bytes_per_value']:.2f} B/value; "
              f"new input -> map {app['new_input_to_map_ms'] / 1000:.2f} s")
        print(f"  app 144-head overview: {r['overview_bytes_per_thumbnail_cell']:.3f} B per thumbnail cell "
              f"({r['overview_bytes_per_attention_value']:.4f} B per attention value)")
        print(f"  app head view      : {r['head_view_bytes'] / 1024:.0f} kB for {r['head_view_lines']:,} lines, drawn "
              f"{app['head_view_drawn_ms'] / 1000:.2f} s after the click")
        hv = r["head_view"]
        if hv["ok"]:
            print(f"  ratios: BertViz head_view / app map time {hv['rendered_ms'] / app['new_input_to_map_ms']:.1f}x,"
                  f" bytes per value {hv['bytes_per_value'] / r['map_bytes_per_value']:.1f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bertviz.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'bertviz.json'}")


if __name__ == "__main__":
    main()
