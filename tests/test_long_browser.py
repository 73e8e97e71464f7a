"""The app at length in Chromium: a 2,000-token input on the canvas map (pooled overview, zoom to exact cells,
hover values equal to the trace's, head change from the page, the query strip), on a tiny Llama."""

import json

import numpy as np
import pytest

from model import load, run
from tests.e2e_support import ARTIFACTS, chromium, chromium_available, exception_boxes, streamlit_server
from tests.test_long import long_text, tiny_long

pytestmark = [pytest.mark.browser, pytest.mark.slow]
T = 2000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_long(tmp_path_factory.mktemp("models") / "tiny-llama", "llama")


def stats(page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.__attnCanvasStats.map))")


def fill_text(page, text: str) -> None:
    box = page.get_by_role("textbox", name="Text", exact=True)
    box.fill(text)
    box.press("Control+Enter")


def test_a_long_input_on_the_canvas_map(model_dir):
    if not chromium_available():
        pytest.fail("Chromium is missing: apt-get install -y chromium") if __import__("os").environ.get("CI") else \
            pytest.skip("no Chromium")
    pipe = load(model_dir, "cpu")
    text = long_text(pipe, T)
    from ui.tracing import capture_budget

    ref = run(pipe, text, budget=capture_budget())  # what the app computes: over its budget, lazily (fast first pass)
    assert ref.mode == "lazy"
    with streamlit_server(env={"INSPECTOR_MODELS": str(model_dir.parent)}) as url, chromium((1400, 1100)) as page:
        page.goto(url)
        page.wait_for_selector("text=Attention inspector", timeout=90_000)
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Model").first.click()
        page.get_by_role("option", name="tiny-llama (models directory)").click()
        page.wait_for_timeout(1500)
        fill_text(page, text)
        page.wait_for_function("() => window.__attnCanvasStats && window.__attnCanvasStats.map && "
                               "window.__attnCanvasStats.map.draws > 0 && window.__attnCanvasStats.map.detail",
                               timeout=180_000)
        assert not exception_boxes(page)
        s = stats(page)
        assert s["note"].startswith("max over 4 × 4") and s["pool"] == 4  # 2,000 tokens: pooled to 500 blocks
        # the new overview came alone; the page asked for its detail, which the next run computed
        assert s["detailRequests"] >= 1 and s["detail"]["overview"] == s["overview"]
        name = "decoder.1.self_attn"  # the map opens on the last layer
        assert "layer 1" in page.locator(".attn-title").first.inner_text() if page.locator(".attn-title").count() \
            else True
        # head change from the page's own buttons: drawn from the held tiles, reported to Python
        n = s["draws"]
        page.locator("button[data-head='2']").click()
        page.wait_for_function("(n) => window.__attnCanvasStats.map.history.some(r => r.cause === 'head' && "
                               "r.n > n)", arg=n, timeout=30_000)
        drawn = [r for r in stats(page)["history"] if r["cause"] == "head" and r["n"] > n][-1]
        assert drawn["head"] == 2 and drawn["overview"] == s["overview"]  # from the held tiles (its time: bench_switch)
        # Python followed: its next detail is for head 2
        page.wait_for_function("() => { const d = window.__attnCanvasStats.map.detail; return d && d.head === 2; }",
                               timeout=30_000)
        # zoom in around (1500, 1400): the server sends exact cells; the hover gives the trace's own value
        page.locator("canvas.attn-map").scroll_into_view_if_needed()
        p = page.evaluate("() => window.__attnCanvasStats.map.cellToClient(1500, 1400)")
        page.mouse.move(p["x"], p["y"])
        page.mouse.wheel(0, 100)
        page.wait_for_timeout(400)
        for _ in range(5):
            page.mouse.wheel(0, -300)
            page.wait_for_timeout(40)
        page.wait_for_function("() => { const d = window.__attnCanvasStats.map.detail; return d && d.pool === 1; }",
                               timeout=60_000)
        s = stats(page)
        assert s["note"] == "exact" and s["view"]["r1"] - s["view"]["r0"] <= 512
        w = ref.trace.window(name, 2, range(1490, 1520), range(1390, 1420)).values  # rows 1490.., cols 1390..
        for r, c in [(1500, 1400), (1502, 1401)]:
            q = page.evaluate("([r, c]) => window.__attnCanvasStats.map.cellToClient(r, c)", [r, c])
            page.mouse.move(q["x"], q["y"])
            page.wait_for_timeout(150)
            tip = page.locator(".attn-tip div").first.inner_text()
            assert tip.endswith(f": {float(w[r - 1490, c - 1390]):.4f}"), (tip, w[r - 1490, c - 1390])
            assert tip.startswith(f"query {r}·") and f"key {c}·" in tip
        page.screenshot(path=str(ARTIFACTS / "long-2000-zoomed.png"))
        # a click on a row: the query strip below the map is that row of the trace
        q = page.evaluate("() => window.__attnCanvasStats.map.cellToClient(1510, 1405)")
        page.mouse.click(q["x"], q["y"])
        find_strip = """() => { const d = Array.from(document.querySelectorAll('.js-plotly-plot'))
            .find(p => p.layout && p.layout.title && (p.layout.title.text || '').includes('query 1510·'));
            return d && d._fullData && d._fullData[0] ? Array.from(d._fullData[0].y) : null; }"""
        page.wait_for_function(find_strip, timeout=60_000)
        strip = page.evaluate(find_strip)
        assert strip is not None and len(strip) == T
        row = ref.trace.row(name, 2, 1510)
        np.testing.assert_allclose(np.nan_to_num(np.asarray(strip, dtype=np.float32)), row.weights, atol=1e-6)
        assert not exception_boxes(page)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "long-2000-strip.png"), full_page=True)
        json.dumps(s)
