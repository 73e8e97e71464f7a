"""The app's maps on the canvas, in headless Chromium against `streamlit run app.py`, on the page's own clock:
a GPT-2-small-shaped model (12 x 12 heads, random weights) at T = 512 and 1,024, and a Llama-shaped one at 4,096.

- first map: from the Ctrl+Enter that commits a new text to the first canvas frame of its overview;
- head change: a click on the map's head buttons -> the held tile drawn (target <= 150 ms at any T);
- layer change: a click on the Layer selector's option -> a new overview through a Streamlit rerun -> drawn
  (target <= 150 ms);
- zoom and pan steps redrawn in the page (target <= 200 ms), and the time to the server's exact detail;
- the server's peak memory over the whole session (target <= 1.5 GB for the GPT-2-small-shaped session).

    python -m benchmarks.bench_app_canvas     # prints a table, writes benchmarks/results/app_canvas.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.bench_browser import peak_rss_mib
from benchmarks.bench_canvas import head_changes, stats, summary, zoom_and_pan
from tests.e2e_support import chromium, streamlit_server, wait_idle

RESULTS = Path(__file__).parent / "results"
TARGETS = {"first_map_1024_ms": 2000.0, "head_ms": 150.0, "layer_ms": 150.0, "step_ms": 200.0,
           "server_peak_MiB": 1536.0}
ARM_KEY_JS = """() => { window.__keyAt = null; document.addEventListener('keydown', e => {
    if (e.key === 'Enter' && e.ctrlKey && window.__keyAt === null) window.__keyAt = e.timeStamp; },
    {capture: true}); }"""
ARM_CLICK_JS = """() => { window.__clickAt = null; document.addEventListener('pointerup', e => {
    if (e.target.closest('[role=option]') && window.__clickAt === null) window.__clickAt = e.timeStamp; },
    {capture: true}); }"""
HAS_CANVAS_JS = "() => !!(window.__attnCanvasStats && window.__attnCanvasStats.map && " \
                "window.__attnCanvasStats.map.draws > 0)"


def new_overview(page, before: str | None, timeout: float = 600_000) -> dict:
    page.wait_for_function("(b) => { const s = window.__attnCanvasStats && window.__attnCanvasStats.map;"
                           " return s && s.overview && s.overview !== b; }", arg=before, timeout=timeout)
    return stats(page)


def first_map(page, text: str) -> float:
    before = page.evaluate("() => window.__attnCanvasStats && window.__attnCanvasStats.map ? "
                           "window.__attnCanvasStats.map.overview : null")
    box = page.get_by_role("textbox", name="Text", exact=True)
    page.evaluate("""(t) => { const ta = document.querySelector('textarea');
        const set = Object.getOwnPropertyDescriptor(window.HTMLTextAreaElement.prototype, 'value').set;
        set.call(ta, t); ta.dispatchEvent(new Event('input', {bubbles: true})); }""", text)
    page.evaluate(ARM_KEY_JS)
    box.press("Control+Enter")
    s = new_overview(page, before)
    rec = [r for r in s["history"] if r["overview"] == s["overview"]][0]
    return rec["at"] - page.evaluate("() => window.__keyAt")


def layer_change(page, n_layers: int, repeats: int) -> list[float]:
    out = []
    for i in range(repeats):
        before = stats(page)
        option = open_layer_option(page, str((i + 1) % n_layers))  # never the current one
        page.evaluate(ARM_CLICK_JS)
        option.click()
        s = new_overview(page, before["overview"], 120_000)
        clicked = page.evaluate("() => window.__clickAt")
        # the first frame of the new overview after the click (an overview seen before may be in the history too)
        rec = [r for r in s["history"] if r["overview"] == s["overview"] and r["at"] >= clicked][0]
        out.append(rec["at"] - clicked)
        wait_idle_canvas(page)
    return out


def open_layer_option(page, label: str):
    """The Layer selector's option ``label``, its list opened (a click during a rerun's end can leave it closed)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Layer").first
    option = page.get_by_role("option", name=label, exact=True)
    for _ in range(5):
        wait_idle_canvas(page)
        box.click()
        try:
            option.wait_for(state="visible", timeout=5_000)
            return option
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: open it again
            page.keyboard.press("Escape")
    page.screenshot(path="/tmp/bench_app_canvas_layer.png")
    raise RuntimeError(f"the Layer selector's option {label!r} never showed (/tmp/bench_app_canvas_layer.png)")


def wait_idle_canvas(page) -> None:
    page.wait_for_function("""() => { const s = document.querySelector('[data-testid="stStatusWidget"]');
        return !(s && /Running|Stop/.test(s.innerText)); }""", timeout=300_000)
    page.wait_for_timeout(300)


def session(model_dir: Path, lengths: list[int], tok, n_layers: int, repeats: int) -> dict:
    from benchmarks.gpt2small import text_of_tokens

    rows = []
    with tempfile.TemporaryDirectory() as empty, streamlit_server(
            env={"INSPECTOR_CHECKPOINTS": empty, "INSPECTOR_MODELS": str(model_dir.parent),
                 "INSPECTOR_MAX_SOURCE_CHARS": "400000"}, timeout=300) as url, chromium((1400, 1000)) as page:
        page.goto(f"{url}/?model={model_dir.name}")  # the models directory lists every benchmark model
        wait_idle(page, 300_000)
        for T in lengths:
            firsts = [first_map(page, text_of_tokens(tok, T, shift=r + 1)) for r in range(repeats)]
            wait_idle_canvas(page)
            heads = head_changes(page, repeats)
            layers = layer_change(page, n_layers, repeats)
            steps = zoom_and_pan(page, T, 4)
            rows.append({"T": T, "first_map": summary(firsts), "head_change": summary(heads),
                         "layer_change": summary(layers), "zoom_step": summary(steps["wheel"]),
                         "pan_step": summary(steps["pan"]), "to_detail": summary(steps["to_detail"])})
            print(json.dumps(rows[-1]), flush=True)
        peak = peak_rss_mib(url.pid)
    return {"rows": rows, "server_peak_MiB": peak}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-llama", action="store_true")
    args = ap.parse_args()
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import gpt2_small
    from benchmarks.llama_shaped import llama_shaped

    g = gpt2_small()
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor(),
              "targets": TARGETS,
              "gpt2_small": session(g, [512, 1024], Tokenizer.from_file(str(g / "tokenizer.json")), 12,
                                    args.repeats)}
    if not args.skip_llama:
        p = llama_shaped("llama-4x8-d512")
        result["llama_4x8"] = session(p, [4096], Tokenizer.from_file(str(p / "tokenizer.json")), 4, args.repeats)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "app_canvas.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'app_canvas.json'}")


if __name__ == "__main__":
    main()
