"""End-to-end: the image page in Chromium. Clicking a patch of the picture makes it the query, and the overlay then
draws that query's row of the model's own trace (read back from the chart plotly.js drew). Screenshots go to
artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from model import RecordName, load, run
from tests.e2e_support import ARTIFACTS, chromium, chromium_available, exception_boxes, streamlit_server, wait_idle
from ui.vision.inputs import sample_picture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SEED = 7
TIMEOUT = 120_000  # ms: a cold start on a loaded 2-core machine
OVERLAY = ".st-key-img_overlay .js-plotly-plot"
# The centre of patch n (its click target) in page pixels.
PATCH_CENTRE_JS = """([selector, n]) => {
    const d = document.querySelector(selector);
    const t = d._fullData.find(t => t.type === 'scatter');
    const i = t.customdata.findIndex(c => c[0] === n);
    const xa = d._fullLayout.xaxis, ya = d._fullLayout.yaxis, r = d.getBoundingClientRect();
    return {x: r.left + xa._offset + xa.l2p(t.x[i]), y: r.top + ya._offset + ya.l2p(t.y[i])};
}"""
# What the heat layer draws (plotly.js's decoded z) and the outlined query patch.
OVERLAY_JS = """(selector) => {
    const d = document.querySelector(selector);
    const t = d && d._fullData && d._fullData.find(t => t.type === 'heatmap');
    return t ? {z: Array.from(t.z, r => Array.from(r)), query: d.layout.meta.query_patch} : null;
}"""


@pytest.fixture(scope="module")
def page():
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(env={"INSPECTOR_CHECKPOINTS": str(ROOT / "checkpoints"), "INSPECTOR_MODELS": ""}) as url, \
            chromium((1440, 900)) as pg:
        pg.goto(f"{url}/images?model=shapes&sample={SEED}&head=0")
        try:
            wait_idle(pg, TIMEOUT)
            pg.wait_for_selector(OVERLAY, timeout=TIMEOUT)
        except Exception:
            pg.screenshot(path=str(ARTIFACTS / "vision-00-never-idle.png"), full_page=True)
            raise
        yield pg


@pytest.fixture(scope="module")
def traced():
    return run(load(ROOT / "checkpoints" / "shapes", "cpu"), sample_picture(SEED).image)


def test_clicking_a_patch_shows_that_querys_row_over_the_picture(page, traced):
    names = sorted((n for n in traced.trace if RecordName.parse(n).kind == "encoder self"),
                   key=lambda n: RecordName.parse(n).layer)
    positions, (rows, cols) = list(traced.patch_positions), traced.patch_grid
    before = page.evaluate(OVERLAY_JS, OVERLAY)
    cls = traced.source.tokens.index("[CLS]")
    np.testing.assert_allclose(before["z"], traced.trace.row(names[-1], 0, cls).weights[positions].reshape(rows, cols),
                               atol=1e-6)  # the first screen: [CLS], head 0 of the last layer
    page.screenshot(path=str(ARTIFACTS / "vision-01-first-screen.png"))
    patch = 3 * cols + 5  # r3c5
    page.locator(OVERLAY).scroll_into_view_if_needed()
    centre = page.evaluate(PATCH_CENTRE_JS, [OVERLAY, patch])
    page.mouse.click(centre["x"], centre["y"])
    page.wait_for_function("""([selector, n]) => { const d = document.querySelector(selector);
        return d && d.layout && d.layout.meta && d.layout.meta.query_patch === n; }""", arg=[OVERLAY, patch],
                           timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    after = page.evaluate(OVERLAY_JS, OVERLAY)
    query = positions[patch]
    expected = traced.trace.row(names[-1], 0, query).weights[positions].reshape(rows, cols)
    np.testing.assert_allclose(after["z"], expected, atol=1e-6)  # the clicked patch's own row, from the trace
    assert not np.allclose(after["z"], before["z"], atol=1e-4)
    assert page.get_by_role("combobox", name="Query").input_value().strip() == f"{query}·r3c5"
    assert f"query={query}" in page.url  # the link follows
    page.screenshot(path=str(ARTIFACTS / "vision-02-after-patch-click.png"))
    assert exception_boxes(page) == []


@pytest.mark.parametrize("section", ["Head grid", "Attention map", "Statistics", "What if"])
def test_each_section_below_the_picture_draws(page, section):
    page.locator(".st-key-img_section").get_by_text(section, exact=True).click()
    page.wait_for_timeout(300)
    wait_idle(page, TIMEOUT)
    page.locator(".st-key-img_section").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"vision-03-{section.lower().replace(' ', '-')}.png"), full_page=True)
    assert exception_boxes(page) == []
    if section == "Attention map":
        page.wait_for_selector("canvas.attn-map", timeout=TIMEOUT)
    if section == "What if":
        page.get_by_role("button", name="The red object's patches").click()
        wait_idle(page, TIMEOUT)
        page.get_by_role("button", name="Run the picture again").click()
        page.get_by_text("knocked out in every layer and head").wait_for(timeout=TIMEOUT)
        wait_idle(page, TIMEOUT)
        page.screenshot(path=str(ARTIFACTS / "vision-04-knockout.png"), full_page=True)
        assert exception_boxes(page) == []


def test_the_inspector_sends_an_image_model_to_this_page(page):
    """The text inspector opened on the shapes model: a message and a link, which opens the model here."""
    base = page.url.split("/images")[0]
    page.goto(f"{base}/?model=shapes")
    page.get_by_text("reads images, not text").wait_for(timeout=TIMEOUT)
    link = page.get_by_role("link", name="Open shapes on the Image attention page")
    link.wait_for(timeout=TIMEOUT)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"], [data-stale=\"true\"]')",
                           timeout=TIMEOUT)
    page.screenshot(path=str(ARTIFACTS / "vision-05-inspector-sends-here.png"))
    assert exception_boxes(page) == []
    link.click()
    page.wait_for_selector(OVERLAY, timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    assert "/images" in page.url and "model=shapes" in page.url
    assert page.get_by_text("Prediction for").count() == 1  # the prediction line (the name is bidi-isolated)
    assert exception_boxes(page) == []
