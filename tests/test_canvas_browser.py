"""The attention canvas component: its wrapper through AppTest, then the page in headless Chromium.

The browser tests start `streamlit run tests/canvas_demo_app.py` (synthetic attention whose values the test
recomputes here) and check what the page draws (pixels read back from the canvas), reports (the component state the
demo prints) and says (the tooltip), and how long it takes on the page's own clock. Screenshots go to artifacts/.
"""

import contextlib
import json
import os

import numpy as np
import pytest

from tests.canvas_synthetic import Synthetic, tokens
from tests.e2e_support import ARTIFACTS, ROOT, chromium, chromium_available, streamlit_server
from viz import tiles, wire

DEMO = "tests/canvas_demo_app.py"
TIMEOUT = 120_000  # ms: a cold start on a loaded 2-core machine
HEAD_CHANGE_MS = 30.0  # target at T <= 256 (every head's exact tile held in the page)
VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
           "#fde725"]  # plotly.colors.sequential.Viridis
GREY, WHITE = (0x8C, 0x8C, 0x8C), (0xFF, 0xFF, 0xFF)


def viridis(q: int) -> tuple[int, int, int]:
    """Plotly's Viridis stops interpolated linearly to 256 entries (what the page's LUT should hold)."""
    rgb = [tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) for h in VIRIDIS]
    t = q / 255 * (len(rgb) - 1)
    a = min(len(rgb) - 2, int(t))
    f = t - a
    return tuple(int(np.floor(rgb[a][k] + (rgb[a + 1][k] - rgb[a][k]) * f + 0.5)) for k in range(3))


def page_q(v: float, lo: float = 0.0, hi: float = 1.0) -> int:
    """The colour index the page computes from a float32 detail value (in double precision, Math.round)."""
    return int(min(255, max(0, np.floor((float(v) - lo) * (255 / (hi - lo)) + 0.5))))


def shown(toks: list[str]) -> list[str]:
    return wire.labels_from_blob(wire.labels_blob(toks))


# ---- the wrapper, without a browser

def test_wrapper_mounts_each_part_as_its_own_element():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / DEMO), default_timeout=120)
    at.query_params.update({"T": "1024", "H": "3"})
    at.run()
    assert not at.exception
    raw = {e.proto.id.rsplit("-", 1)[-1]: e.proto.bytes for e in at.get("bidi_component")}
    parts = {name: wire.unpack(data) for name, data in raw.items()}
    assert set(parts) == {"map", "map.head", "map.detail", "map.sync"}
    ov = parts["map"]
    assert ov["part"] == "overview" and ov["key"] == "map" and ov["tiles"].shape == (3, 512, 512) and ov["pool"] == 2
    assert parts["map.head"]["tile"]["pool"] == 1 and parts["map.head"]["head"] == 0  # T = 1024: exact, 1024 x 1024
    assert parts["map.detail"]["tile"]["pool"] == 2 and parts["map.detail"]["overview"] == ov["id"]
    assert parts["map.sync"]["seen"] == {}  # nothing reported yet
    state = json.loads(at.code[0].value)["state"]
    assert state == {"view": None, "head": None, "query": None, "selection": None, "choice": None}
    at.run()  # a rerun builds the same overview bytes: Streamlit's message cache then sends a reference only
    again = {e.proto.id.rsplit("-", 1)[-1]: e.proto.bytes for e in at.get("bidi_component")}
    assert again["map"] == raw["map"] and again["map.head"] == raw["map.head"]


# ---- the page

@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (Playwright's sync API runs one at a time); a page per demo server."""
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium(viewport=(1400, 900)) as page:
        yield page.context


@contextlib.contextmanager
def demo_page(context, query: str, ready: str = "s.detail && s.draws >= 2"):
    """The demo at ``query`` once ``ready`` holds of its canvas stats ``s``; no page error on the way out."""
    with streamlit_server(script=DEMO) as url:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/?{query}")
        page.wait_for_function("() => { const s = window.__attnCanvasStats && window.__attnCanvasStats.map;"
                               f" return s && {ready}; }}", timeout=TIMEOUT)
        yield page
        assert not errors, errors
        page.close()


@pytest.fixture(scope="module")
def small(browser):
    """T = 64, 4 heads, causal: every tile exact."""
    with demo_page(browser, "T=64&H=4&causal=1") as page:
        yield page


@pytest.fixture(scope="module")
def large(browser):
    """T = 4096, 4 heads, the last 96 keys padding: pooled overview (8 x 8), finer head tile (4 x 4)."""
    with demo_page(browser, "T=4096&H=4&pad=96") as page:
        yield page


STATS_JS = """() => { const s = window.__attnCanvasStats.map;
    return JSON.parse(JSON.stringify({draws: s.draws, last: s.last, view: s.view, head: s.head, note: s.note,
        pool: s.pool, detail: s.detail, reportedView: s.reportedView || null, overview: s.overview,
        history: s.history, mapRect: s.mapRect, selection: s.selection || null})); }"""


def stats(page) -> dict:
    return page.evaluate(STATS_JS)


def state(page) -> dict:
    """The component state as Python saw it in the last run (the demo prints it)."""
    return json.loads(page.locator('[data-testid="stCode"]').first.inner_text())


def wait_state(page, check, timeout=30_000) -> dict:
    """Poll the state the demo prints until ``check`` holds (Python has seen what the page reported)."""
    for _ in range(timeout // 100):
        try:
            s = state(page)["state"]
        except (ValueError, KeyError):  # the code block is being replaced by the next run
            s = None
        if s is not None and check(s):
            return s
        page.wait_for_timeout(100)
    raise AssertionError(f"state never matched: {state(page)}")


def pixel(page, r: int, c: int) -> tuple[int, int, int]:
    """The colour the canvas holds at the device pixel of cell (r, c)'s centre."""
    rgba = page.locator("canvas.attn-map").evaluate(
        "(cv, [r, c]) => { const p = window.__attnCanvasStats.map.devicePixel(r, c);"
        " return Array.from(cv.getContext('2d').getImageData(p.x, p.y, 1, 1).data); }", [r, c])
    assert rgba[3] == 255
    return tuple(rgba[:3])


def close(a, b, tol=2) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def colour_matches(page, r, c, v) -> bool:
    q = page_q(v)
    return any(close(pixel(page, r, c), viridis(k)) for k in (q - 1, q, q + 1) if 0 <= k <= 255)


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"canvas-{name}.png"))


def wait_drawn(page, after: int, timeout=30_000):
    page.wait_for_function("(n) => window.__attnCanvasStats.map.draws > n", arg=after, timeout=timeout)


@pytest.mark.browser
@pytest.mark.slow
def test_canvas_draws_the_tiles_colours(small):
    syn = Synthetic(64, n_heads=4, causal=True)
    s = stats(small)
    assert s["head"] == 0 and s["note"] == "exact" and s["view"] == {"r0": 0, "r1": 64, "c0": 0, "c1": 64}
    w = syn.full[0]
    for r, c in [(0, 0), (5, 4), (40, 39), (63, 0), (63, 63), (30, 10)]:
        assert colour_matches(small, r, c, w[r, c]), (r, c, pixel(small, r, c), w[r, c])
    for r, c in [(0, 1), (10, 50), (62, 63)]:  # above the diagonal: causal, hatched grey
        assert pixel(small, r, c) in (GREY, WHITE)
    shot(small, "64-causal")


@pytest.mark.browser
@pytest.mark.slow
def test_head_change_draws_the_other_heads_tile_within_target(small):
    syn = Synthetic(64, n_heads=4, causal=True)
    times = []
    for h in (2, 1, 3, 0, 2):
        n = stats(small)["draws"]
        small.locator(f"button[data-head='{h}']").click()
        wait_drawn(small, n)
        rec = next(r for r in reversed(stats(small)["history"]) if r["cause"] == "head")
        assert rec["head"] == h
        times.append(rec["ms"])
        cells = [(20, 3), (33, 32), (50, 7), (63, 62)]
        assert all(colour_matches(small, r, c, syn.full[h, r, c]) for r, c in cells)
    assert min(times) <= HEAD_CHANGE_MS, times
    assert wait_state(small, lambda s: s["head"] == 2)["head"] == 2  # reported to Python


@pytest.mark.browser
@pytest.mark.slow
def test_hover_gives_the_exact_value_and_both_tokens(small):
    syn = Synthetic(64, n_heads=4, causal=True)
    toks = shown(tokens(64))
    s = stats(small)
    head = s["head"]
    for r, c in [(12, 7), (40, 38)]:
        p = small.evaluate("([r, c]) => window.__attnCanvasStats.map.cellToClient(r, c)", [r, c])
        small.mouse.move(p["x"], p["y"])
        tip = small.locator(".attn-tip div").first.inner_text()
        assert tip == f"query {r}·{toks[r]} → key {c}·{toks[c]}: {float(syn.full[head, r, c]):.4f}"
    p = small.evaluate("() => window.__attnCanvasStats.map.cellToClient(3, 9)")
    small.mouse.move(p["x"], p["y"])
    assert small.locator(".attn-tip div").first.inner_text() == f"query 3·{toks[3]} → key 9·{toks[9]}: masked: causal"
    shot(small, "64-hover")
    small.mouse.move(5, 5)


@pytest.mark.browser
@pytest.mark.slow
def test_click_reports_the_query_and_selection_mode_a_rectangle(small):
    p = small.evaluate("() => window.__attnCanvasStats.map.cellToClient(17, 4)")
    small.mouse.click(p["x"], p["y"])
    assert wait_state(small, lambda s: s["query"] == 17)["query"] == 17
    small.locator("button[data-mode='rect']").click()
    a = small.evaluate("() => window.__attnCanvasStats.map.cellToClient(20, 3)")
    b = small.evaluate("() => window.__attnCanvasStats.map.cellToClient(25, 9)")
    small.mouse.move(a["x"], a["y"])
    small.mouse.down()
    small.mouse.move((a["x"] + b["x"]) / 2, (a["y"] + b["y"]) / 2, steps=3)
    small.mouse.move(b["x"], b["y"], steps=3)
    small.mouse.up()
    want = {"kind": "rect", "r0": 20, "r1": 26, "c0": 3, "c1": 10}
    assert wait_state(small, lambda s: s["selection"] == want)["selection"] == want
    shot(small, "64-selection")
    small.locator("button[data-mode='column']").click()
    p = small.evaluate("() => window.__attnCanvasStats.map.cellToClient(30, 11)")
    small.mouse.click(p["x"], p["y"])
    wait_state(small, lambda s: s["selection"] == {"kind": "column", "col": 11})
    small.locator("button[data-mode='cells']").click()
    for r, c in [(40, 2), (41, 5)]:
        p = small.evaluate("([r, c]) => window.__attnCanvasStats.map.cellToClient(r, c)", [r, c])
        small.mouse.click(p["x"], p["y"])
    wait_state(small, lambda s: s["selection"] == {"kind": "cells", "cells": [[40, 2], [41, 5]]})
    small.locator("button[data-act='clear']").click()
    wait_state(small, lambda s: s["selection"] is None)
    small.locator("button[data-mode='view']").click()


@pytest.mark.browser
@pytest.mark.slow
def test_wheel_zoom_reports_the_view_and_the_detail_is_drawn(large):
    syn = Synthetic(4096, n_heads=4, pad=96)
    assert stats(large)["note"].startswith("max over")
    p = large.evaluate("() => window.__attnCanvasStats.map.cellToClient(2000, 1000)")
    large.mouse.move(p["x"], p["y"])
    large.mouse.wheel(0, 100)  # zoom out at the whole map: no change, but Chromium's first wheel event is slow
    large.wait_for_timeout(400)
    n = stats(large)["draws"]
    for _ in range(4):  # zoom in around cell (2000, 1000) to a few hundred cells
        large.mouse.wheel(0, -300)
        large.wait_for_timeout(30)
    large.wait_for_function("(n) => window.__attnCanvasStats.map.history.filter(r => r.cause === 'wheel'"
                            " && r.n > n).length >= 4", arg=n)
    s = stats(large)
    v = s["view"]
    assert v["r1"] - v["r0"] < 600 and v["r0"] <= 2000 < v["r1"] and v["c0"] <= 1000 < v["c1"]
    wheel = [r for r in s["history"] if r["cause"] == "wheel" and r["n"] > n]
    assert max(r["ms"] for r in wheel) <= 200, wheel  # each step redrawn in-page from held tiles
    # the view goes to Python (debounced), Python sends an exact detail tile for it, the page draws it
    want = large.wait_for_function(
        "() => { const s = window.__attnCanvasStats.map; const d = s.detail, r = s.reportedView;"
        " return r && d && d.view && d.view.r0 === r.r0 && d.view.c0 === r.c0 && d.view.r1 === r.r1"
        " && d.view.c1 === r.c1 && d.pool === 1 ? d.view : false; }", timeout=30_000).json_value()
    reported = wait_state(large, lambda st: st["view"] == want)["view"]
    assert reported == want
    s = stats(large)
    assert s["note"] == "exact"
    for r, c in [(2000, 1000), (want["r0"] + 3, want["c0"] + 5), (want["r1"] - 2, want["c1"] - 3)]:
        assert colour_matches(large, r, c, syn.values(s["head"], r, r + 1, c, c + 1)[0, 0])
    shot(large, "4096-zoomed")
    # tokens on the axes now: the hover names them and gives the exact value
    toks = shown(tokens(4096))
    p = large.evaluate("() => window.__attnCanvasStats.map.cellToClient(2001, 1003)")
    large.mouse.move(p["x"], p["y"])
    value = float(syn.values(s["head"], 2001, 2002, 1003, 1004)[0, 0])
    assert large.locator(".attn-tip div").first.inner_text() == \
        f"query 2001·{toks[2001]} → key 1003·{toks[1003]}: {value:.4f}"
    large.mouse.move(5, 5)


@pytest.mark.browser
@pytest.mark.slow
def test_arrow_keys_pan(large):
    large.locator("canvas.attn-map").focus()
    before = stats(large)["view"]
    span_c = before["c1"] - before["c0"]
    span_r = before["r1"] - before["r0"]
    large.keyboard.press("ArrowRight")
    after = stats(large)["view"]
    assert after["c0"] == pytest.approx(before["c0"] + span_c / 8) and after["r0"] == pytest.approx(before["r0"])
    large.keyboard.press("ArrowDown")
    large.keyboard.press("ArrowDown")
    after = stats(large)["view"]
    assert after["r0"] == pytest.approx(before["r0"] + span_r / 4)
    large.wait_for_function("() => window.__attnCanvasStats.map.history.filter(r => r.cause === 'pan').length >= 3")
    pans = [r for r in stats(large)["history"] if r["cause"] == "pan"]
    assert max(r["ms"] for r in pans[-3:]) <= 200, pans
    want = {"r0": int(np.floor(after["r0"])), "r1": int(np.ceil(after["r1"] - 1e-9)),
            "c0": int(np.floor(after["c0"])), "c1": int(np.ceil(after["c1"] - 1e-9))}
    assert wait_state(large, lambda s: s["view"] == want)["view"] == want
    large.keyboard.press("0")  # the whole map again
    assert stats(large)["view"] == {"r0": 0, "r1": 4096, "c0": 0, "c1": 4096}


@pytest.mark.browser
@pytest.mark.slow
def test_pooled_hover_names_the_block_its_maximum_and_where(large):
    syn = Synthetic(4096, n_heads=4, pad=96)
    toks = shown(tokens(4096))
    large.locator("canvas.attn-map").focus()
    large.keyboard.press("0")
    large.wait_for_function("() => { const d = window.__attnCanvasStats.map.detail;"
                            " return d && d.pool === 8 && d.view.r1 - d.view.r0 === 4096; }", timeout=30_000)
    head = stats(large)["head"]
    window = tiles.detail_window(None, 4096, 4096)
    vals, argmax, _ = syn.pooled(head, window)
    for r, c in [(1234, 1200), (3000, 17)]:
        p = large.evaluate("([r, c]) => window.__attnCanvasStats.map.cellToClient(r, c)", [r, c])
        large.mouse.move(p["x"], p["y"])
        hover = json.loads(json.dumps(large.evaluate("() => window.__attnCanvasStats.map.view")))
        assert hover["r1"] - hover["r0"] == 4096
        # the block under the pointer (the pointer's cell can be a neighbour of (r, c) at ~7 cells per pixel)
        cell = large.evaluate("() => { const s = window.__attnCanvasStats.map; return s.hover || null; }")
        rr, cc = (cell["r"], cell["c"]) if cell else (r, c)
        i, j = rr // 8, cc // 8
        ar, ac = i * 8 + int(argmax[i, j]) // 8, j * 8 + int(argmax[i, j]) % 8
        lines = large.locator(".attn-tip div").all_inner_texts()
        assert lines[0] == (f"max over the 8 × 8 block at queries {i * 8}–{i * 8 + 7}, keys {j * 8}–{j * 8 + 7}: "
                            f"{float(vals[i, j]):.4f}")
        assert lines[1] == f"at query {ar}·{toks[ar]} → key {ac}·{toks[ac]} (weights)"
    p = large.evaluate("() => window.__attnCanvasStats.map.cellToClient(100, 4090)")  # the padding keys
    large.mouse.move(p["x"], p["y"])
    assert "masked: padding" in large.locator(".attn-tip div").first.inner_text()
    shot(large, "4096-overview-hover")
    large.mouse.move(5, 5)


@pytest.mark.browser
@pytest.mark.slow
def test_head_change_at_large_t_and_layer_change(large):
    syn = Synthetic(4096, n_heads=4, pad=96)
    n, held = stats(large)["draws"], stats(large)["overview"]
    large.locator("button[data-head='3']").click()
    wait_drawn(large, n)
    rec = next(r for r in reversed(stats(large)["history"]) if r["cause"] == "head")
    # drawn from what the page holds (the same overview: no part came from Python); the time is bench_switch's
    assert rec["head"] == 3 and rec["overview"] == held
    # the held 8 x 8 tile is drawn at once; the pixel of a block shows that block's maximum
    vals, _, _ = syn.pooled(3, {"r0": 0, "r1": 4096, "c0": 0, "c1": 4096, "pool": 8})
    q = tiles.quantize(vals, 0, 1)
    s = stats(large)
    assert s["head"] == 3
    first = s["overview"]
    large.evaluate("() => document.addEventListener('pointerdown', e => { window.__layerClick = e.timeStamp; },"
                   " {capture: true, once: true})")
    large.locator('[data-testid="stRadio"]').first.get_by_text("1", exact=True).click()
    large.wait_for_function("(id) => window.__attnCanvasStats.map.history.some(r => r.cause === 'overview'"
                            " && r.overview !== id)", arg=first, timeout=30_000)
    rec = next(r for r in reversed(stats(large)["history"]) if r["cause"] == "overview")
    assert rec["at"] > large.evaluate("() => window.__layerClick")  # the new layer arrives and is drawn (its time:
    # bench_switch's)
    assert stats(large)["head"] == 3  # the head stays
    syn1 = Synthetic(4096, n_heads=4, layer=1, pad=96)
    v1 = syn1.pooled(3, {"r0": 0, "r1": 4096, "c0": 0, "c1": 4096, "pool": 8})[0]
    assert not np.array_equal(tiles.quantize(v1, 0, 1), q)
    shot(large, "4096-layer1-head3")


@pytest.mark.browser
@pytest.mark.slow
def test_python_can_choose_the_head_and_the_page_follows(small):
    """A head chosen by a Python widget (not the page's buttons) is drawn and reported back as the page's state."""
    syn = Synthetic(64, n_heads=4, causal=True)
    before = stats(small)["head"]
    target = (before + 1) % 4
    small.locator('[data-testid="stRadio"]').nth(1).get_by_text(str(target), exact=True).click()
    small.wait_for_function("(h) => window.__attnCanvasStats.map.head === h", arg=target, timeout=30_000)
    assert wait_state(small, lambda s: s["head"] == target)["head"] == target
    assert small.locator(f"button[data-head='{target}']").get_attribute("aria-pressed") == "true"
    assert colour_matches(small, 40, 20, syn.full[target, 40, 20])
    # and the page's own button still wins afterwards
    other = (target + 1) % 4
    small.locator(f"button[data-head='{other}']").click()
    assert wait_state(small, lambda s: s["head"] == other)["head"] == other
    small.wait_for_function("(h) => { const d = window.__attnCanvasStats.map.detail; return d && d.head === h; }",
                            arg=other, timeout=30_000)


@pytest.mark.browser
@pytest.mark.slow
def test_buttons_drag_pan_and_box_zoom(large):
    large.locator("canvas.attn-map").focus()
    large.keyboard.press("0")
    large.locator("button[data-act='in']").click()
    large.locator("button[data-act='in']").click()
    v = stats(large)["view"]
    span = 4096 / 1.5 ** 2
    assert v["r1"] - v["r0"] == pytest.approx(span) and v["c1"] - v["c0"] == pytest.approx(span)
    large.locator("button[data-act='left']").click()  # an eighth of the view to the left
    assert stats(large)["view"]["c0"] == pytest.approx(v["c0"] - span / 8)
    v = stats(large)["view"]
    m = stats(large)["mapRect"]
    a = large.evaluate("() => window.__attnCanvasStats.map.cellToClient(2000, 2000)")
    large.mouse.move(a["x"], a["y"])
    large.mouse.down()
    large.mouse.move(a["x"] + 60, a["y"] + 30, steps=4)  # drag the map right and down: the view goes left and up
    large.mouse.up()
    after = stats(large)["view"]
    assert after["c0"] == pytest.approx(v["c0"] - 60 / m["w"] * span, abs=span / m["w"])
    assert after["r0"] == pytest.approx(v["r0"] - 30 / m["h"] * span, abs=span / m["h"])
    drags = [r for r in stats(large)["history"] if r["cause"] == "drag"]
    assert drags and max(r["ms"] for r in drags) <= 200
    a = large.evaluate("() => window.__attnCanvasStats.map.cellToClient(1500, 1700)")
    b = large.evaluate("() => window.__attnCanvasStats.map.cellToClient(1600, 1900)")
    large.keyboard.down("Shift")
    large.mouse.move(a["x"], a["y"])
    large.mouse.down()
    large.mouse.move(b["x"], b["y"], steps=5)
    large.mouse.up()
    large.keyboard.up("Shift")
    assert stats(large)["view"] == {"r0": 1500, "r1": 1601, "c0": 1700, "c1": 1901}
    want = {"r0": 1500, "r1": 1601, "c0": 1700, "c1": 1901}
    assert wait_state(large, lambda s: s["view"] == want)["view"] == want
    large.wait_for_function("() => { const d = window.__attnCanvasStats.map.detail;"
                            " return d && d.view.r0 === 1500 && d.view.c1 === 1901 && d.pool === 1; }")
    assert stats(large)["note"] == "exact"
    shot(large, "4096-box-zoomed")
    large.locator("button[data-mode='row']").click()
    p = large.evaluate("() => window.__attnCanvasStats.map.cellToClient(1550, 1800)")
    large.mouse.click(p["x"], p["y"])
    assert wait_state(large, lambda s: s["selection"] == {"kind": "row", "row": 1550})
    large.locator("button[data-mode='view']").click()
    large.keyboard.press("0")


@pytest.mark.browser
@pytest.mark.slow
def test_a_view_too_big_to_read_exactly_says_so_and_zooming_in_reads_it(browser):
    """Over the detail's cell cap (here 512 x 512, tiles.DETAIL_MAX_CELLS in the app) the page draws the overview
    and says the hover's value is the overview's; a view within the cap gets its exact cells."""
    syn = Synthetic(1024, n_heads=3)
    with demo_page(browser, f"T=1024&H=3&maxcells={512 * 512}", ready="s.skipped && s.draws >= 1") as page:
        assert stats(page)["detail"] is None
        p = page.evaluate("() => window.__attnCanvasStats.map.cellToClient(700, 300)")
        page.mouse.move(p["x"], p["y"])
        lines = page.locator(".attn-tip div").all_inner_texts()
        assert lines[0].startswith("query 700·") and " ≈ " in lines[0]  # the head's exact uint8 tile (T = 1024)
        assert lines[1] == "weights, from the uint8 overview; zoom in to at most 512 × 512 cells for exact values"
        page.locator("canvas.attn-map").focus()
        for _ in range(3):  # 1024 -> 512 cells per axis and below
            page.keyboard.press("+")
            page.wait_for_timeout(50)
        page.wait_for_function("() => { const d = window.__attnCanvasStats.map.detail; return d && d.pool === 1; }",
                               timeout=30_000)
        s = stats(page)
        r, c = (s["view"]["r0"] + s["view"]["r1"]) // 2, (s["view"]["c0"] + s["view"]["c1"]) // 2
        p = page.evaluate("([r, c]) => window.__attnCanvasStats.map.cellToClient(r, c)", [r, c])
        page.mouse.move(p["x"], p["y"])
        cell = page.evaluate("() => window.__attnCanvasStats.map.hover")
        value = float(syn.values(s["head"], cell["r"], cell["r"] + 1, cell["c"], cell["c"] + 1)[0, 0])
        lines = page.locator(".attn-tip div").all_inner_texts()
        assert lines[0].endswith(f": {value:.4f}") and lines[1] == "weights · exact cell"
        shot(page, "1024-too-big-then-zoomed")


# ---- short maps: every cell exact in the page, every layer held

SHORT = "T=8&H=4&L=2&causal=1&exact=1&stack=1&produces=1"  # 8 tokens, decoder rows "i·token → next"


@pytest.fixture(scope="module")
def short(browser):
    with demo_page(browser, SHORT, ready="s.draws >= 1 && s.labels && s.held >= 2") as page:
        yield page


def short_stats(page) -> dict:
    return page.evaluate("""() => { const s = window.__attnCanvasStats.map;
        return JSON.parse(JSON.stringify({labels: s.labels, legend: s.legend, mapRect: s.mapRect, head: s.head,
            choice: s.choice, history: s.history, draws: s.draws, note: s.note})); }""")


def disjoint(rects) -> bool:
    return all(a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"] or
               b["y"] + b["h"] <= a["y"] for i, a in enumerate(rects) for b in rects[i + 1:])


def short_tokens():
    toks = tokens(8)
    return shown(toks), shown(toks[1:] + ["[EOS]"])


@pytest.mark.browser
@pytest.mark.slow
def test_a_short_map_names_every_token_on_both_axes_without_overlap(short):
    toks, produces = short_tokens()
    s = short_stats(short)
    assert [r["text"] for r in s["labels"]["rows"]] == [f"{i}·{toks[i]} → {produces[i]}" for i in range(8)]
    assert [c["text"] for c in s["labels"]["cols"]] == [f"{j}·{toks[j]}" for j in range(8)]
    assert disjoint(s["labels"]["rows"]) and disjoint(s["labels"]["cols"])
    m = s["mapRect"]
    assert m["w"] == pytest.approx(m["h"]) and m["w"] / 8 >= 16  # square cells, each at least 16 px
    assert s["legend"] == ["causal"] and s["note"] == "exact"


@pytest.mark.browser
@pytest.mark.slow
def test_a_short_map_hover_colours_and_hatching(short):
    syn = Synthetic(8, n_heads=4, causal=True)
    toks, produces = short_tokens()
    head = short_stats(short)["head"]
    for r, c in [(5, 2), (7, 7), (3, 0)]:
        p = short.evaluate("([r, c]) => window.__attnCanvasStats.map.cellToClient(r, c)", [r, c])
        short.mouse.move(p["x"], p["y"])
        lines = short.locator(".attn-tip div").all_inner_texts()
        v = float(syn.full[head, r, c])
        assert lines == [f"query {r}·{toks[r]} (→ {produces[r]}) → key {c}·{toks[c]}: {v:.4f}", "weights · exact cell"]
        assert colour_matches(short, r, c, syn.full[head, r, c])
    p = short.evaluate("() => window.__attnCanvasStats.map.cellToClient(2, 6)")
    short.mouse.move(p["x"], p["y"])
    lines = short.locator(".attn-tip div").all_inner_texts()
    assert lines == [f"query 2·{toks[2]} (→ {produces[2]}) → key 6·{toks[6]}: masked: causal", "weights 0.0000"]
    for r, c in [(0, 1), (2, 6), (6, 7)]:
        assert pixel(short, r, c) in (GREY, WHITE)
    short.mouse.move(5, 5)


@pytest.mark.browser
@pytest.mark.slow
def test_a_short_map_click_picks_the_query_and_selects_cells(short):
    p = short.evaluate("() => window.__attnCanvasStats.map.cellToClient(6, 3)")
    short.mouse.click(p["x"], p["y"])
    assert wait_state(short, lambda s: s["query"] == 6)["query"] == 6
    short.locator("button[data-mode='cells']").click()
    for r, c in [(4, 1), (5, 1)]:
        p = short.evaluate("([r, c]) => window.__attnCanvasStats.map.cellToClient(r, c)", [r, c])
        short.mouse.click(p["x"], p["y"])
    wait_state(short, lambda s: s["selection"] == {"kind": "cells", "cells": [[4, 1], [5, 1]]})
    short.locator("button[data-mode='column']").click()
    p = short.evaluate("() => window.__attnCanvasStats.map.cellToClient(7, 2)")
    short.mouse.click(p["x"], p["y"])
    wait_state(short, lambda s: s["selection"] == {"kind": "column", "col": 2})
    short.locator("button[data-act='clear']").click()
    wait_state(short, lambda s: s["selection"] is None)
    short.locator("button[data-mode='view']").click()


@pytest.mark.browser
@pytest.mark.slow
def test_a_layer_picked_on_the_page_is_drawn_from_the_held_maps_and_python_follows(short):
    layer1 = Synthetic(8, n_heads=4, layer=1, causal=True)
    n = short_stats(short)["draws"]
    short.locator('.attn-choice[data-choice="layer"] button', has_text="1").click()
    wait_drawn(short, n)
    s = short_stats(short)
    rec = next(r for r in s["history"] if r["n"] > n)
    # the first frame after the click is the layer drawn in the page (a rerun's overview would be cause "overview")
    assert rec["cause"] == "layer" and rec["choice"] == {"layer": 1}
    assert all(colour_matches(short, r, c, layer1.full[s["head"], r, c]) for r, c in [(3, 1), (7, 5), (6, 6)])
    assert wait_state(short, lambda st: st["choice"] == {"layer": 1})["choice"] == {"layer": 1}
    short.wait_for_function("() => JSON.parse(document.querySelector('[data-testid=\"stCode\"]').innerText)"
                            ".layer === 1", timeout=30_000)  # the page's layer radio (Python) followed
    short.locator('.attn-choice[data-choice="layer"] button', has_text="0").click()
    wait_state(short, lambda st: st["choice"] == {"layer": 0})


@pytest.mark.browser
@pytest.mark.slow
def test_short_map_screenshot_cells_hatches_and_labels(short):
    """What is on screen, read from a screenshot: every cell's colour at its centre (Viridis of its exact value, or the
    grey and white hatch where masked), and ink in every row's and column's label area."""
    import io

    from PIL import Image

    syn = Synthetic(8, n_heads=4, causal=True)
    short.mouse.move(5, 5)
    s = short_stats(short)
    png = short.locator("canvas.attn-map").screenshot(path=str(ARTIFACTS / "canvas-8-short.png"))
    img = Image.open(io.BytesIO(png)).convert("RGB")
    m, head = s["mapRect"], s["head"]
    cw, ch = m["w"] / 8, m["h"] / 8
    for r in range(8):
        for c in range(8):
            px = img.getpixel((int(m["x"] + (c + 0.5) * cw), int(m["y"] + (r + 0.5) * ch)))
            if c > r:
                assert px in (GREY, WHITE), (r, c, px)
            else:
                q = page_q(syn.full[head, r, c])
                assert any(close(px, viridis(k)) for k in (q - 1, q, q + 1) if 0 <= k <= 255), (r, c, px)
    dark = lambda box: sum(1 for x in range(int(box[0]), int(box[2])) for y in range(int(box[1]), int(box[3]))  # noqa: E731
                           if sum(img.getpixel((x, y))) < 400)
    for rect in s["labels"]["rows"] + s["labels"]["cols"]:
        assert dark((rect["x"], rect["y"], rect["x"] + rect["w"], rect["y"] + rect["h"])) > 5, rect
