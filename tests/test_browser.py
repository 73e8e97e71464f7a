"""End-to-end: `streamlit run app.py` in a subprocess, driven through Debian's Chromium with Playwright.

The map the browser draws (the attention canvas) must hold the numbers of the model's own trace for that input.
With CI=true a missing browser is a failure, not a skip. Screenshots go to artifacts/.
"""

import json
import os
import re

import numpy as np
import pytest

from model import load
from tests.e2e_support import (
    ARTIFACTS,
    canvas_map,
    chromium,
    chromium_available,
    exception_boxes,
    heatmaps,
    streamlit_server,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEFAULT_SOURCE = "Saturday, November 21, 2026"  # what the inspector opens on
TIMEOUT = 120_000  # ms: a cold start on a loaded 2-core machine


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.hf_models import build

    root = tmp_path_factory.mktemp("browser-models")
    build("gpt2", root / "gpt2")
    return root


@pytest.fixture(scope="module")
def page(models_dir):
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(env={"INSPECTOR_MODELS": str(models_dir)}) as url, chromium() as pg:
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


def first_map(page, key="map"):
    """What the attention canvas ``key`` shows: its head's exact cells (the page's own copy) and which map it is."""
    m = canvas_map(page, key)
    assert m is not None, f"no attention canvas {key!r} on the page"
    return m


def wait_for_map(page, rows=None, cols=None, different_from=None, key="map"):
    """Wait until the canvas shows a map of the given shape and/or other cells than ``different_from``."""
    page.wait_for_function(
        """([key, rows, cols, before]) => {
            const s = window.__attnCanvasStats && window.__attnCanvasStats[key];
            const m = s && s.shown && s.shown();
            if (!m || !m.exact) return false;
            if (rows !== null && m.rows !== rows) return false;
            if (cols !== null && m.cols !== cols) return false;
            if (before !== null && JSON.stringify(m.values) === before) return false;
            return true;
        }""",
        arg=[key, rows, cols, None if different_from is None else json.dumps(
            np.asarray(different_from, dtype=np.float32).ravel().tolist(), separators=(",", ":"))],
        timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)


def choose(page, label, option):
    """Pick ``option`` in the Streamlit selectbox labelled ``label`` (opened again if a rerun closed its list)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    item = page.get_by_role("option", name=option, exact=True)
    for _ in range(5):
        box.click()
        try:
            item.wait_for(state="visible", timeout=5_000)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: a rerun re-drew the selectbox
            page.keyboard.press("Escape")
            wait_idle(page, TIMEOUT)
    item.click()


def selectbox_value(page, label) -> str:
    """What a Streamlit selectbox shows (its combobox input's value)."""
    return page.get_by_role("combobox", name=label, exact=True).input_value().strip()


def view(page, name, chart=True):
    page.get_by_role("radio", name=name, exact=True).click()
    page.wait_for_timeout(400)
    if chart:
        wait_idle(page, TIMEOUT)


def type_source(page, text):
    """Type into the sidebar's text box ("Source text" for an encoder-decoder, "Text" for the other kinds)."""
    box = page.get_by_role("textbox", name=re.compile(r"^(Source text|Text)$"))
    box.fill(text)
    box.press("Control+Enter")  # a text area commits on Ctrl+Enter (or on blur)


def test_first_page_shows_the_story_map(page, pipe):
    shot(page, "01-first-page")
    assert exception_boxes(page) == []
    m = first_map(page)
    res = pipe.run(DEFAULT_SOURCE)
    w = res.trace.numpy()["decoder.1.cross_attn"].weights[0, 3]  # the story: layer 1, head 3
    assert (m["rows"], m["cols"]) == (len(res.target.ids), len(res.source.ids)) == w.shape
    assert m["head"] == 3 and m["choice"] == {"kind": "cross", "layer": 1, "stage": "weights"}
    np.testing.assert_array_equal(m["z"], w)  # float32 cells, as the model computed them
    text = page.locator("body").inner_text()
    assert "Look at layer 1 cross-attention, head 3" in text and "probability of this output" in text
    assert "Deploy" not in text


def test_the_first_map_fits_the_first_screen_with_its_controls(page):
    """A newcomer's 1440 x 900 screen: the story's map, its labels and the layer / head buttons without scrolling."""
    page.set_viewport_size({"width": 1440, "height": 900})
    page.reload()
    wait_idle(page, TIMEOUT)
    page.wait_for_timeout(500)
    canvas = page.locator(".attn[data-key=map] canvas.attn-map").bounding_box()
    for group in ("layer", "kind"):
        box = page.locator(f'.attn[data-key=map] .attn-choice[data-choice="{group}"]').bounding_box()
        assert 0 <= box["y"] and box["y"] + box["height"] <= 900, group
    assert page.locator(".attn[data-key=map] button[data-head='3']").bounding_box()["y"] >= 0
    assert canvas["y"] + canvas["height"] <= 900, canvas  # the map, its key labels included
    page.screenshot(path=str(ARTIFACTS / "browser-00-first-screen-1440x900.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.reload()
    wait_idle(page, TIMEOUT)


def test_the_short_map_hover_and_a_knockout_from_its_selection(page, pipe):
    res = pipe.run(DEFAULT_SOURCE)
    toks, src = res.target.tokens, res.source.tokens
    w = res.trace.numpy()["decoder.1.cross_attn"].weights[0, 3]
    canvas = page.locator(".attn[data-key=map] canvas.attn-map")
    canvas.scroll_into_view_if_needed()
    for r, c in [(0, 6), (4, 3)]:
        p = page.evaluate("([r, c]) => window.__attnCanvasStats.map.cellToClient(r, c)", [r, c])
        page.mouse.move(p["x"], p["y"])
        tip = page.locator(".attn-tip div").first.inner_text()
        assert tip == f"query {r}·{toks[r]} (→ {res.output_tokens[r]}) → key {c}·{src[c]}: {float(w[r, c]):.4f}"
    page.locator(".attn[data-key=map] button[data-mode='column']").click()
    p = page.evaluate("() => window.__attnCanvasStats.map.cellToClient(2, 9)")
    page.mouse.click(p["x"], p["y"])
    button = page.get_by_role("button", name="Knock out key column 9 of head 3")
    button.wait_for(timeout=TIMEOUT)
    shot(page, "02a-selected-column")
    button.click()
    page.get_by_text("Output after knocking out").first.wait_for(timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    shot(page, "02b-knocked-out")
    assert exception_boxes(page) == []
    page.locator(".attn[data-key=map] button[data-act='clear']").click()
    page.locator(".attn[data-key=map] button[data-mode='view']").click()
    wait_idle(page, TIMEOUT)


def test_layer_kind_stage_and_head_change_on_the_map_and_the_selectors_follow(page, pipe):
    tr = pipe.run(DEFAULT_SOURCE).trace.numpy()
    for group, text, name, stage in (("layer", "0", "decoder.0.cross_attn", "weights"),
                                     ("stage", "scaled scores", "decoder.0.cross_attn", "scaled"),
                                     ("kind", "encoder self", "encoder.0.self_attn", "scaled"),
                                     ("stage", "weights", "encoder.0.self_attn", "weights"),
                                     ("kind", "cross", "decoder.0.cross_attn", "weights")):
        n = page.evaluate("() => window.__attnCanvasStats.map.draws")
        page.locator(f'.attn[data-key=map] .attn-choice[data-choice="{group}"] button', has_text=text).first.click()
        page.wait_for_function("(n) => window.__attnCanvasStats.map.draws > n", arg=n, timeout=TIMEOUT)
        rec = page.evaluate("(n) => window.__attnCanvasStats.map.history.find(r => r.n > n)", n)
        assert rec["cause"] == group  # drawn from the maps the page holds, before any rerun
        m = first_map(page)
        np.testing.assert_array_equal(m["z"], getattr(tr[name], stage)[0, m["head"]])
        wait_idle(page, TIMEOUT)
        page.wait_for_timeout(300)
        wait_idle(page, TIMEOUT)
    assert selectbox_value(page, "Layer") == "0" and selectbox_value(page, "Stage") == "weights"
    n = page.evaluate("() => window.__attnCanvasStats.map.draws")
    page.locator(".attn[data-key=map] button[data-head='2']").click()
    page.wait_for_function("(n) => window.__attnCanvasStats.map.draws > n", arg=n, timeout=TIMEOUT)
    page.wait_for_timeout(300)
    wait_idle(page, TIMEOUT)
    assert selectbox_value(page, "Head") == "head 2"
    np.testing.assert_array_equal(first_map(page)["z"], tr["decoder.0.cross_attn"].weights[0, 2])
    assert exception_boxes(page) == []


def test_changing_layer_and_head_updates_the_map(page, pipe):
    choose(page, "Layer", "1")
    page.wait_for_timeout(300)
    wait_idle(page, TIMEOUT)
    before = first_map(page)["z"]
    choose(page, "Layer", "0")
    wait_for_map(page, different_from=before)
    choose(page, "Head", "head 2")
    res = pipe.run(DEFAULT_SOURCE)
    w = res.trace.numpy()["decoder.0.cross_attn"].weights[0, 2]
    page.wait_for_function("() => window.__attnCanvasStats.map.head === 2", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    m = first_map(page)
    shot(page, "02-layer0-head2")
    np.testing.assert_array_equal(m["z"], w)
    assert exception_boxes(page) == []


def test_typing_a_new_source_updates_the_map(page, pipe):
    text = "3.4.1999"
    type_source(page, text)
    res = pipe.run(text)
    wait_for_map(page, rows=len(res.target.ids), cols=len(res.source.ids))
    shot(page, "03-new-source")
    m = first_map(page)
    w = res.trace.numpy()["decoder.0.cross_attn"].weights[0, 2]  # layer 0, head 2 still selected
    np.testing.assert_array_equal(m["z"], w)
    assert exception_boxes(page) == []


def test_selectors_agree_with_the_chart_after_the_source_is_cleared(page, pipe):
    """Issue 14: clear the source, type a new one: the selectors used to jump back to their defaults while the
    chart kept the old selection."""
    choose(page, "Stage", "scaled scores")
    page.wait_for_timeout(300)
    wait_idle(page, TIMEOUT)
    type_source(page, "")
    page.wait_for_function("() => !(window.__attnCanvasStats || {}).map", timeout=TIMEOUT)  # the map is gone
    type_source(page, "Nov 5, 1901")
    res = pipe.run("Nov 5, 1901")
    wait_for_map(page, rows=len(res.target.ids), cols=len(res.source.ids))
    shot(page, "04-selectors-after-clearing")
    assert (selectbox_value(page, "Layer"), selectbox_value(page, "Head"), selectbox_value(page, "Stage")) == \
        ("0", "head 2", "scaled scores")
    m = first_map(page)
    assert m["choice"] == {"kind": "cross", "layer": 0, "stage": "scaled"} and m["head"] == 2
    np.testing.assert_array_equal(m["z"], res.trace.numpy()["decoder.0.cross_attn"].scaled[0, 2])
    choose(page, "Stage", "weights")
    page.wait_for_timeout(300)
    wait_idle(page, TIMEOUT)


def test_clicking_the_centre_of_a_thumbnail_opens_its_head(page):
    """Issue 14: clicking the centre of a thumbnail did nothing; now the whole thumbnail opens its head."""
    view(page, "Model overview")
    page.wait_for_function("() => document.querySelector('.js-plotly-plot image, .js-plotly-plot .layer-above')",
                           timeout=TIMEOUT)
    plot = page.locator(".js-plotly-plot").first
    # the centre of the thumbnail of layer 1, head 1 (second row, second column), in page pixels
    box = page.evaluate("""() => {
        const d = document.querySelector('.js-plotly-plot');
        const t = d._fullData.find(t => t.type === 'scatter');
        const xs = [], ys = [];
        t.customdata.forEach((c, i) => { if (c[0] === 5) { xs.push(t.x[i]); ys.push(t.y[i]); } });
        const cx = xs.reduce((a, b) => a + b) / xs.length, cy = ys.reduce((a, b) => a + b) / ys.length;
        const xa = d._fullLayout.xaxis, ya = d._fullLayout.yaxis, r = d.getBoundingClientRect();
        return {x: r.left + xa._offset + xa.l2p(cx), y: r.top + ya._offset + ya.l2p(cy)};
    }""")
    shot(page, "05-overview")
    page.mouse.click(box["x"], box["y"])
    page.wait_for_function("() => { const b = [...document.querySelectorAll('[role=radio][aria-checked=true]')];"
                           " return b.some(e => e.innerText.trim() === 'Attention map'); }", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    shot(page, "06-after-thumbnail-click")
    assert (selectbox_value(page, "Layer"), selectbox_value(page, "Head")) == ("1", "head 1")
    assert exception_boxes(page) == []
    del plot


def test_head_view_lines_and_hover_isolation(page):
    view(page, "Head view", chart=False)
    frame = page.frame_locator("iframe").first
    frame.locator("line").first.wait_for(state="attached", timeout=TIMEOUT)
    n_lines = frame.locator("line").count()
    assert n_lines > 5
    frame.locator("text[text-anchor=end]", has_text="0·[BOS]").first.hover()  # the first query token
    opacities = frame.locator("line").evaluate_all("ls => ls.map(l => [l.dataset.i, l.getAttribute('stroke-opacity')])")
    faded = [o for i, o in opacities if i != "0"]
    assert faded and all(float(o) <= 0.02 for o in faded)  # only the hovered token's lines stay
    shot(page, "07-head-view")
    assert exception_boxes(page) == []


def test_training_view_of_the_induction_model(page):
    choose(page, "Model", "induction")
    page.wait_for_timeout(500)
    wait_idle(page, TIMEOUT)
    view(page, "Training")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2 && "
                           "window.__attnCanvasStats.train_map && window.__attnCanvasStats.train_map.held > 5",
                           timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    shot(page, "08-training-view")
    text = page.locator("body").inner_text()
    assert "Previous-token heads and induction heads" in text
    final = first_map(page, "train_map")
    slider = page.locator(".attn-slider input[type=range]")
    slider.focus()
    n = page.evaluate("() => window.__attnCanvasStats.train_map.draws")
    page.keyboard.press("Home")  # the first snapshot: step 0, drawn from the maps the page holds
    page.wait_for_function("(n) => window.__attnCanvasStats.train_map.draws > n", arg=n, timeout=TIMEOUT)
    rec = page.evaluate("(n) => window.__attnCanvasStats.train_map.history.find(r => r.n > n)", n)
    assert rec["cause"] == "step" and rec["choice"] == {"step": 0}
    assert first_map(page, "train_map")["z"].tolist() != final["z"].tolist()
    page.wait_for_timeout(500)
    wait_idle(page, TIMEOUT)
    assert "At step 0" in page.locator("body").inner_text()  # the rest of the page followed
    shot(page, "09-training-step0")
    assert exception_boxes(page) == []


def test_a_transformers_model_from_the_models_directory(page):
    choose(page, "Model", "gpt2 (models directory)")
    page.wait_for_timeout(500)
    wait_idle(page, TIMEOUT)
    view(page, "Attention map")
    type_source(page, "the cat sat on the mat")
    page.wait_for_timeout(500)
    wait_idle(page, TIMEOUT)
    shot(page, "10-gpt2")
    text = page.locator("body").inner_text()
    assert "gpt2" in text and "decoder-only" in text
    assert exception_boxes(page) == []
    m = first_map(page)
    assert m["rows"] == m["cols"] and m["rows"] > 3


def test_hostile_source_is_shown_literally(page):
    choose(page, "Model", "dates")
    page.wait_for_timeout(500)
    wait_idle(page, TIMEOUT)
    type_source(page, '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> 21 November 2026')
    page.wait_for_timeout(500)
    wait_idle(page, TIMEOUT)
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator("img[src='x']").count() == 0
    assert exception_boxes(page) == []
    shot(page, "11-hostile-source")


def test_playground_page_renders(page):
    page.get_by_role("link", name="Teaching playground").click()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    shot(page, "12-playground")
    charts = heatmaps(page)
    assert sum(len(c) for c in charts) >= 5
    for chart in charts:
        for t in chart:
            assert np.isfinite(np.array(t["z"], dtype=np.float64)).all()
    assert exception_boxes(page) == []


def test_a_deep_link_to_the_playground_runs_through_the_entry_point(page):
    """Reported while checking: with the pages in a pages/ folder, opening /playground directly ran that file
    alone (Streamlit's folder routing): another menu ("app", "inspector", "playground") and no wide layout."""
    base = page.url.split("/playground")[0].rstrip("/")
    page.goto(base + "/playground")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Teaching playground" in nav and "Attention inspector" in nav and "app" not in nav.split()
    assert exception_boxes(page) == []
