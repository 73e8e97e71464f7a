"""End-to-end: `streamlit run app.py` in a subprocess, driven through Debian's Chromium with Playwright.

The heatmap the browser draws must hold the numbers of the model's own trace for that input.
With CI=true a missing browser is a failure, not a skip. Screenshots go to artifacts/.
"""

import json
import os

import numpy as np
import pytest

from model import load
from tests.e2e_support import (
    ARTIFACTS,
    chromium,
    chromium_available,
    exception_boxes,
    heatmaps,
    streamlit_server,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEFAULT_SOURCE = "Saturday, November 21, 2026"  # what pages/inspector.py opens on
TIMEOUT = 120_000  # ms: a cold start on a loaded 2-core machine


@pytest.fixture(scope="module")
def page():
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server() as url, chromium() as pg:
        pg.goto(url)
        try:
            wait_idle(pg, TIMEOUT)
        except Exception:
            shot(pg, "00-never-idle")  # what the browser showed instead
            raise
        yield pg


@pytest.fixture(scope="module")
def pipe():
    return load("checkpoints/dates", device="cpu")


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)


def first_map(page):
    maps = [m for m in heatmaps(page) if m]
    assert maps, "no Plotly heatmap on the page"
    return maps[0][0]


def wait_for_map(page, rows=None, cols=None, different_from=None):
    """Wait until the first heatmap has the given shape and/or differs from ``different_from`` (values)."""
    page.wait_for_function(
        """([rows, cols, before]) => {
            const d = document.querySelector('.js-plotly-plot');
            const t = d && d._fullData && d._fullData.find(t => t.type === 'heatmap');
            if (!t || !t.z) return false;
            if (rows !== null && t.z.length !== rows) return false;
            if (cols !== null && t.z[0].length !== cols) return false;
            if (before !== null && JSON.stringify(Array.from(t.z, r => Array.from(r))) === before) return false;
            return true;
        }""",
        arg=[rows, cols, None if different_from is None else json.dumps(different_from, separators=(",", ":"))],
        timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)


def choose(page, label, option):
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


def expected_weights(pipe, source, name, head):
    res = pipe.run(source)
    return res, res.trace.numpy()[name].weights[0, head]


def test_first_page_shows_the_models_cross_attention(page, pipe):
    shot(page, "01-first-page")
    assert exception_boxes(page) == []
    m = first_map(page)
    res, w = expected_weights(pipe, DEFAULT_SOURCE, "decoder.1.cross_attn", 0)
    assert (m["rows"], m["cols"]) == (len(res.target.ids), len(res.source.ids)) == w.shape
    np.testing.assert_allclose(np.array(m["z"], dtype=np.float32), w, atol=1e-6)


def test_changing_layer_and_head_updates_the_map(page, pipe):
    before = first_map(page)["z"]
    choose(page, "Layer", "0")
    wait_for_map(page, different_from=before)
    choose(page, "Head", "head 2")
    res, w = expected_weights(pipe, DEFAULT_SOURCE, "decoder.0.cross_attn", 2)
    page.wait_for_timeout(300)
    wait_idle(page, TIMEOUT)
    m = first_map(page)
    shot(page, "02-layer0-head2")
    np.testing.assert_allclose(np.array(m["z"], dtype=np.float32), w, atol=1e-6)
    assert exception_boxes(page) == []


def test_typing_a_new_source_updates_the_map(page, pipe):
    text = "3.4.1999"
    box = page.get_by_label("Source text")
    box.fill(text)
    box.press("Control+Enter")  # a text area commits on Ctrl+Enter (or on blur)
    res = pipe.run(text)
    wait_for_map(page, rows=len(res.target.ids), cols=len(res.source.ids))
    shot(page, "03-new-source")
    m = first_map(page)
    w = res.trace.numpy()["decoder.0.cross_attn"].weights[0, 2]  # layer 0, head 2 still selected
    np.testing.assert_allclose(np.array(m["z"], dtype=np.float32), w, atol=1e-6)
    assert exception_boxes(page) == []


def test_hostile_source_is_shown_literally(page):
    box = page.get_by_label("Source text")
    box.fill('<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> 21 November 2026')
    box.press("Control+Enter")
    page.wait_for_timeout(500)
    wait_idle(page, TIMEOUT)
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator("img[src='x']").count() == 0
    assert exception_boxes(page) == []
    shot(page, "04-hostile-source")


def test_playground_page_renders(page):
    page.get_by_role("link", name="Teaching playground").click()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    shot(page, "05-playground")
    charts = heatmaps(page)
    assert sum(len(c) for c in charts) >= 5
    for chart in charts:
        for t in chart:
            assert np.isfinite(np.array(t["z"], dtype=np.float64)).all()
    assert exception_boxes(page) == []
