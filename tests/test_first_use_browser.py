"""First use in Chromium (issue 22): what only a browser shows. The cold start paints its frame and says what is
loading before the first map; no request leaves this machine; the head grid's titles sit on their panels without
overlapping; links reopen a view; the README's screenshots are made here (UPDATE_SCREENSHOTS=1 rewrites them).

Each test starts its own `streamlit run app.py` where it needs a cold server; the rest share one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from benchmarks.bench_first_use import WATCH_JS
from tests.e2e_support import (
    ARTIFACTS,
    ROOT,
    chromium,
    chromium_available,
    exception_boxes,
    streamlit_server,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 120_000
VIEWPORT = (1400, 900)
SCREENSHOTS = ROOT / "docs" / "images"


@pytest.fixture(scope="module", autouse=True)
def need_chromium():
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    ARTIFACTS.mkdir(exist_ok=True)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"first-use-{name}.png"))


# the cold start ------------------------------------------------------------------------------------------------------

def test_cold_start_paints_the_frame_and_says_what_is_loading_before_the_map():
    with streamlit_server() as url, chromium(VIEWPORT) as page:
        page.add_init_script(WATCH_JS + """
            window.__loadingSeen = null;
            (function look() {
                const main = document.querySelector('[data-testid="stMain"]');
                if (main && /(Loading|Opening) the dates model/.test(main.innerText)) {
                    window.__loadingSeen = Date.now(); return;
                }
                requestAnimationFrame(look);
            })();""")
        asked = time.time()
        page.goto(url)
        try:
            page.wait_for_function("() => window.__firstUse.map !== null", timeout=TIMEOUT)
        finally:
            shot(page, "cold-start")
        w = page.evaluate("() => ({...window.__firstUse, loading: window.__loadingSeen})")
        shot(page, "cold-start")
        assert exception_boxes(page) == []
    # the order, not the time (how long it takes is bench_first_use's, on a machine shared with other work): the
    # frame is painted before the map, and whatever the page says it is loading, it says before the map comes
    assert w["frameText"] == "Attention inspector"
    assert asked * 1000 <= w["frame"] <= w["map"]
    if w["loading"] is not None:
        assert w["frame"] <= w["loading"] <= w["map"]


def test_no_request_leaves_this_machine():
    with streamlit_server() as url, chromium(VIEWPORT) as page:
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        wait_idle(page, TIMEOUT)
        page.wait_for_timeout(1000)  # the favicon is set after the first run
        icon = page.evaluate("() => (document.querySelector(\"link[rel~='icon']\") || {}).href || ''")
    outside = [r for r in requests if not r.startswith((url, "data:", "blob:"))]
    assert outside == []
    assert icon.startswith((url, "data:")), icon


# one server for the rest -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    with streamlit_server() as url:
        yield url


@pytest.fixture()
def page(server):
    with chromium(VIEWPORT) as pg:
        yield pg


def open_link(page, server, **params):
    page.goto(f"{server}/?{urlencode(params)}")
    wait_idle(page, TIMEOUT)
    page.wait_for_timeout(300)


def settle(page):
    page.wait_for_timeout(500)
    page.wait_for_function("""() => {
        const s = document.querySelector('[data-testid="stStatusWidget"]');
        return !(s && /Running|Stop/.test(s.innerText)) &&
            !document.querySelector('[data-testid="stSkeleton"], [data-stale="true"]');
    }""", timeout=TIMEOUT)


def open_by_clicks(page, server, model=None, kind=None, head=None, view=None):
    """Open a view the way a visitor does (not through a link): the model, attention kind, head and view."""
    page.goto(server)
    wait_idle(page, TIMEOUT)
    for label, option in (("Model", model), ("Head", head)):
        if option is None:
            continue
        if label == "Head" and kind is not None:
            group = page.locator('[data-testid="stRadio"]').filter(has_text="Attention").first
            group.get_by_text(kind, exact=True).click()
            settle(page)
            kind = None
        page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
        page.get_by_role("option", name=option, exact=True).click()
        settle(page)
    if view is not None:
        page.get_by_role("radio", name=view, exact=True).click()
        settle(page)


# JavaScript: per panel of the first grid figure on the page, the box of its title and of its drawn plot area
GRID_BOXES_JS = """
() => {
    const div = Array.from(document.querySelectorAll('.js-plotly-plot'))
        .find(d => d.layout && d.layout.meta && d.layout.meta.cells);
    const box = e => { const r = e.getBoundingClientRect(); return {l: r.left, r: r.right, t: r.top, b: r.bottom}; };
    const titles = Array.from(div.querySelectorAll('.annotation')).map(a => box(a.querySelector('.annotation-text')));
    const panels = titles.map((_, i) => {
        const name = i === 0 ? 'xy' : `x${i + 1}y${i + 1}`;
        return box(div.querySelector(`.draglayer .${name} .nsewdrag`));
    });
    return {titles, panels};
}
"""


def test_head_grid_titles_sit_on_their_panels_without_overlapping(page, server):
    open_by_clicks(page, server, kind="decoder masked self", head="all heads", view="Head grid")
    assert exception_boxes(page) == []
    b = page.evaluate(GRID_BOXES_JS)
    titles, panels = b["titles"], b["panels"]
    assert len(titles) == len(panels) == 4
    for i, (t, p) in enumerate(zip(titles, panels, strict=True)):
        centre = (t["l"] + t["r"]) / 2
        assert p["l"] <= centre <= p["r"], f"title {i} is not over its panel"
        assert t["l"] >= p["l"] - 4 and t["r"] <= p["r"] + 4, f"title {i} is wider than its panel"
        assert -2 <= p["t"] - t["b"] <= 24, f"title {i} does not sit on its panel"
    for i in range(len(titles)):
        for j in range(i + 1, len(titles)):
            a, c = titles[i], titles[j]
            assert a["r"] <= c["l"] or c["r"] <= a["l"] or a["b"] <= c["t"] or c["b"] <= a["t"], \
                f"titles {i} and {j} overlap"
    page.locator(".js-plotly-plot").first.screenshot(path=str(ARTIFACTS / "first-use-grid-dates.png"))


def test_head_grid_on_the_induction_model_keeps_square_cells_and_axes(page, server):
    open_by_clicks(page, server, model="induction", head="all heads", view="Head grid")  # layer 1: its story
    b = page.evaluate(GRID_BOXES_JS)
    T = 17  # the induction model's example: 16 words and [BOS]
    for p in b["panels"]:
        w, h = p["r"] - p["l"], p["b"] - p["t"]
        assert w > 80 and abs(w / h - 1) < 0.1, f"a {w:.0f} x {h:.0f} px panel for a {T} x {T} map"
    ticks = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .find(d => d.layout && d.layout.meta && d.layout.meta.cells)
        .querySelectorAll('.xtick text, .ytick text').length""")
    assert ticks >= 8, "no axes on the thumbnails"
    page.locator(".js-plotly-plot").first.screenshot(path=str(ARTIFACTS / "first-use-grid-induction.png"))


def test_the_one_query_table_shows_its_last_row_without_scrolling(page, server):
    open_by_clicks(page, server, view="One query")  # the dates model's story: cross, layer 1, head 3
    frame = page.locator('[data-testid="stDataFrame"]').first
    frame.scroll_into_view_if_needed()
    box = frame.bounding_box()
    rows = 11  # the dates example's source tokens
    assert box["height"] >= 35 * (rows + 1), f"{box['height']:.0f} px for a header and {rows} rows of 35 px"
    frame.screenshot(path=str(ARTIFACTS / "first-use-one-query-table.png"))


# the README's pictures -----------------------------------------------------------------------------------------------

README_SHOTS = {  # file -> (link parameters, which chart to scroll into view: None = the top of the page)
    "first-screen.png": ({}, None),
    "head-grid-induction.png": ({"model": "induction", "kind": "decoder-masked-self", "layer": "1", "head": "all",
                                 "view": "head-grid"}, ".js-plotly-plot"),
    "training-induction.png": ({"model": "induction", "kind": "decoder-masked-self", "layer": "1", "head": "1",
                                "view": "training"}, ".attn[data-key=train_map]"),
}
MAX_SHOT_BYTES = 300_000


def optimised_png(raw: bytes, target: Path) -> None:
    """A screenshot as a 256-colour palette PNG (a third of the bytes; the app's flat colours survive)."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(raw)).convert("RGB")
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(target, optimize=True)


@pytest.mark.parametrize("name", list(README_SHOTS))
def test_readme_screenshots(page, server, name):
    """UPDATE_SCREENSHOTS=1 makes docs/images/<name> from the running app; otherwise the file must exist, be a
    1400 x 900 PNG and stay small."""
    from PIL import Image

    target = SCREENSHOTS / name
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        params, chart = README_SHOTS[name]
        open_link(page, server, **params)
        assert exception_boxes(page) == []
        if chart is not None:
            plot = page.locator(chart).first
            plot.evaluate("""e => { e.scrollIntoView({block: 'start'});
                const main = document.querySelector('[data-testid="stMain"]');
                if (main) main.scrollBy(0, -110); }""")  # the chart's title below Streamlit's header
            page.wait_for_timeout(600)
        page.mouse.move(5, 890)  # no hover label in the picture
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        optimised_png(page.screenshot(), target)
    assert target.is_file(), f"{target} is missing: run with UPDATE_SCREENSHOTS=1"
    assert target.stat().st_size < MAX_SHOT_BYTES
    with Image.open(target) as img:
        assert img.size == VIEWPORT


def test_changing_a_selector_updates_the_address_and_the_address_reopens_the_view(page, server):
    open_by_clicks(page, server, head="head 1", view="Step by step")
    page.wait_for_function("() => location.search.includes('head=1') && location.search.includes('step-by-step')",
                           timeout=TIMEOUT)
    address = page.url
    assert "model=dates" in address and "layer=1" in address
    other = page.context.new_page()  # a new tab: a new session, with that address
    other.goto(address)
    wait_idle(other, TIMEOUT)
    assert other.get_by_role("radio", name="Step by step", exact=True).is_checked()
    assert other.get_by_role("combobox", name="Head", exact=True).input_value().strip() == "head 1"
    other.close()
