"""The notebook widget in a real JupyterLab, and the standalone HTML file, in headless Chromium.

JupyterLab (pinned in requirements-dev.txt) is started on 127.0.0.1 with a random token; a notebook shows the dates
model and a tiny random GPT-2 at 1,024 tokens; the test checks the pixels drawn, that a head change is drawn with no
message from the kernel in between, and that a zoom to exact cells puts the trace's value in the hover. The
standalone file is opened with every network request refused: it draws, its exact cells are the trace's, the hover and
head buttons work, and its PNG button saves the map at 2x with its axes and colour bar. Every wait is on a condition.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from tests.conftest import CHECKPOINTS
from tests.e2e_support import (
    ARTIFACTS,
    cell_output,
    chromium,
    chromium_available,
    jupyter_lab,
    run_all_cells,
    write_notebook,
)
from tests.test_canvas_browser import page_q, viridis

pytestmark = pytest.mark.browser
TIMEOUT = 180_000  # ms: a cold JupyterLab and kernel on a loaded 2-core machine
DATES = "Saturday, November 21, 2026"
PIXEL_JS = """([key, r, c]) => { const s = window.__attnCanvasStats[key]; const p = s.devicePixel(r, c);
    const cv = document.querySelector(`[data-key="${key}"] .attn-map`) || document.querySelector('.attn-map');
    return Array.from(cv.getContext('2d').getImageData(p.x, p.y, 1, 1).data.slice(0, 3)); }"""


@pytest.fixture(scope="module")
def context():
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium(viewport=(1400, 1000)) as page:
        yield page.context


# ---- the widget in JupyterLab

LAB_CELLS = [
    f"""import json
import viz.notebook as nb
dates = nb.show(r'{CHECKPOINTS / "dates"}', {DATES!r}, device='cpu', attention='decoder.1.cross_attn')
dates""",
    """name = 'decoder.1.cross_attn'
print('DATES', json.dumps({'key': dates.key, 'values': [dates.result.trace.window(name, h, range(11), range(11))
      .values.tolist() for h in range(4)], 'rows': dates.result.target.tokens, 'cols': dates.result.source.tokens}))""",
    """import torch, transformers
from tests.hf_models import byte_level_tokenizer
bpe = byte_level_tokenizer(['<|endoftext|>'], None)
tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe)
torch.manual_seed(0)
gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=4, n_positions=1024,
    vocab_size=len(tok) + 3, initializer_range=0.5))
ids = tok(' '.join(['the cat sat on the mat', 'a dog ran in the park'] * 120))['input_ids'][:1024]
long = nb.show((gpt2, tok), tok.decode(ids))
long""",
    """w = long.result.trace.window('decoder.0.self_attn', 0, range(448, 576), range(448, 576))
print('LONG', json.dumps({'key': long.key, 'T': long.result.trace.shape('decoder.0.self_attn').tq,
                          'values': w.values.tolist()}))""",
]


@pytest.fixture(scope="module")
def lab(context, tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    write_notebook(root / "widget.ipynb", LAB_CELLS)
    with jupyter_lab(root) as url:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        run_all_cells(page, url, "widget.ipynb", TIMEOUT)
        dates = cell_output(page, "DATES", TIMEOUT)
        long = cell_output(page, "LONG", TIMEOUT)
        for key in (dates["key"], long["key"]):
            page.wait_for_function("(k) => { const s = (window.__attnCanvasStats || {})[k]; return s && s.detail; }",
                                   arg=key, timeout=TIMEOUT)
        yield page, dates, long
        page.screenshot(path=str(ARTIFACTS / "notebook-lab.png"), full_page=True)
        assert not errors, errors
        page.close()


def test_the_widget_draws_the_traces_pixels(lab):
    page, dates, _ = lab
    key, values = dates["key"], np.asarray(dates["values"], dtype=np.float32)
    head = page.evaluate("(k) => window.__attnCanvasStats[k].head", key)
    for r, c in [(0, 0), (3, 9), (10, 2), (5, 5)]:
        assert tuple(page.evaluate(PIXEL_JS, [key, r, c])) == viridis(page_q(values[head, r, c]))


def test_a_head_change_is_drawn_without_the_kernel(lab):
    page, dates, _ = lab
    key, values = dates["key"], np.asarray(dates["values"], dtype=np.float32)
    r, c = int(values[2].argmax() // 11), int(values[2].argmax() % 11)
    # one task of the page: nothing from the kernel can arrive between the click and the reads
    got = page.evaluate("""([key, r, c]) => { const s = window.__attnCanvasStats[key];
        const before = {received: s.received, draws: s.draws};
        document.querySelector(`[data-key="${key}"] .attn-heads button[data-head="2"]`).click();
        const cv = document.querySelector(`[data-key="${key}"] .attn-map`);
        const p = s.devicePixel(r, c);
        return {before, received: s.received, head: cv.dataset.head, drawn: Number(cv.dataset.drawn || 0),
                pixel: Array.from(cv.getContext('2d').getImageData(p.x, p.y, 1, 1).data.slice(0, 3))}; }""",
                        [key, r, c])
    assert got["head"] == "2" and got["received"] == got["before"]["received"]
    assert tuple(got["pixel"]) == viridis(page_q(values[2, r, c]))  # head 2's value, drawn before any reply
    page.wait_for_function("(k) => window.__attnCanvasStats[k].draws > 0 && window.__attnCanvasStats[k].detail"
                           " && window.__attnCanvasStats[k].detail.head === 2", arg=key, timeout=TIMEOUT)


def test_find_in_text_and_the_query_strip(lab):
    page, dates, _ = lab
    key, values = dates["key"], np.asarray(dates["values"], dtype=np.float32)
    pos = next(i for i, t in enumerate(dates["rows"]) if "6" in t)
    box = page.locator(f'[data-key="{key}"] .attn-find input')
    box.fill("6")
    box.press("Enter")
    page.wait_for_function("([k, q]) => window.__attnCanvasStats[k].query === q", arg=[key, pos], timeout=TIMEOUT)
    strip = page.locator(f'[data-key="{key}"] .attn-strip')
    strip.wait_for(state="visible", timeout=TIMEOUT)  # the row, computed in the kernel
    head = page.evaluate("(k) => window.__attnCanvasStats[k].head", key)
    assert strip.locator(".attn-strip-title").inner_text().startswith(f"query {pos}·{dates['rows'][pos]}")
    best = int(values[head, pos].argmax())
    top = strip.locator(".attn-strip-top").inner_text()
    assert top.startswith(f"strongest keys: {best}·{dates['cols'][best]} {values[head, pos, best]:.4f}")


def test_the_stage_picker_draws_a_new_overview(lab):
    page, dates, _ = lab
    key, values = dates["key"], np.asarray(dates["values"], dtype=np.float32)
    head = page.evaluate("(k) => window.__attnCanvasStats[k].head", key)
    r, c = int(values[head].argmax() // 11), int(values[head].argmax() % 11)
    weights = viridis(page_q(values[head, r, c]))
    picker = f'[data-key="{key}"] select[data-pick="stage"]'
    seen = [page.evaluate("(k) => window.__attnCanvasStats[k].overview", key)]
    for stage in ("scores", "weights"):
        page.select_option(picker, stage)
        seen.append(page.wait_for_function("([k, ov]) => { const s = window.__attnCanvasStats[k];"
                                           " return s.overview !== ov && s.overview; }", arg=[key, seen[-1]],
                                           timeout=TIMEOUT).json_value())
        assert page.eval_on_selector(picker, "(s) => s.value") == stage  # the pickers follow the new overview
        drawn = tuple(page.evaluate(PIXEL_JS, [key, r, c]))
        assert (drawn == weights) == (stage == "weights")  # scores on a diverging scale, then the weights again


def test_a_zoom_to_exact_cells_shows_the_traces_value(lab):
    page, _, long = lab
    key, T = long["key"], long["T"]
    assert T == 1024
    stats = "(k) => JSON.parse(JSON.stringify(window.__attnCanvasStats[k]))"
    assert page.evaluate(stats, key)["pool"] > 1  # the whole map: pooled
    canvas = page.locator(f'[data-key="{key}"] .attn-map')
    canvas.scroll_into_view_if_needed()
    canvas.focus()
    for _ in range(3):  # 1,024 / 1.5^3: about 300 cells per axis, around the centre
        page.keyboard.press("+")
    page.wait_for_function("""(k) => { const s = window.__attnCanvasStats[k]; const d = s.detail, v = s.view;
        return d && d.pool === 1 && d.view.r0 <= v.r0 && d.view.r1 >= Math.floor(v.r1) && s.pool === 1; }""",
                           arg=key, timeout=TIMEOUT)
    values = np.asarray(long["values"], dtype=np.float32)  # queries and keys 448..575, head 0
    v = page.evaluate(stats, key)["view"]
    inside = np.zeros_like(values, dtype=bool)
    rows = np.arange(448, 576)
    inside[(rows >= np.ceil(v["r0"]))[:, None] & (rows < np.floor(v["r1"]))[:, None]
           & (rows >= np.ceil(v["c0"]))[None, :] & (rows < np.floor(v["c1"]))[None, :]] = True
    i, j = np.unravel_index(np.argmax(np.where(inside, values, -1)), values.shape)
    r, c = 448 + int(i), 448 + int(j)
    point = page.evaluate("([k, r, c]) => window.__attnCanvasStats[k].cellToClient(r, c)", [key, r, c])
    page.mouse.move(point["x"], point["y"])
    tip = page.locator(f'[data-key="{key}"] .attn-tip')
    tip.wait_for(state="visible", timeout=TIMEOUT)
    text = tip.inner_text()
    assert f"query {r}·" in text and f"key {c}·" in text and "exact cell" in text
    assert f": {values[i, j]:.4f}" in text, (text, values[i, j])


# ---- the standalone file

def open_offline(context, path):
    """The file in a new page with every request but the file itself refused; (page, refused URLs, errors)."""
    page = context.new_page()
    refused: list[str] = []
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url == path.as_uri():
            return r.continue_()
        refused.append(r.request.url)
        return r.abort()
    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_function("() => { const s = (window.__attnCanvasStats || {}).file; return s && s.file && s.draws; }",
                           timeout=TIMEOUT)
    return page, refused, errors


@pytest.fixture(scope="module")
def dates_file(context, dates, tmp_path_factory):
    from viz.notebook import show

    widget = show(dates, DATES, attention="decoder.1.cross_attn", head=3)
    path = tmp_path_factory.mktemp("html") / "dates.html"
    widget.save_html(path, caption="the dates model")
    page, refused, errors = open_offline(context, path)
    yield page, widget.result
    assert refused == [] and errors == [], (refused, errors)
    page.close()


def test_the_file_draws_offline_with_the_traces_exact_cells(dates_file):
    page, res = dates_file
    name = "decoder.1.cross_attn"
    got = page.evaluate("() => { const s = window.__attnCanvasStats.file; const out = [];"
                        " for (let h = 0; h < 4; h++) { const rows = []; for (let r = 0; r < 11; r++) {"
                        " const row = []; for (let c = 0; c < 11; c++) row.push(s.exactCell(h, r, c));"
                        " rows.push(row); } out.push(rows); } return out; }")
    want = np.stack([res.trace.window(name, h, range(11), range(11)).values for h in range(4)])
    assert np.array_equal(np.asarray(got, dtype=np.float64), want.astype(np.float64))  # every cell, bitwise
    assert page.evaluate("() => window.__attnCanvasStats.file.head") == 3
    for r, c in [(0, 6), (8, 3)]:
        assert tuple(page.evaluate(PIXEL_JS, ["file", r, c])) == viridis(page_q(want[3, r, c]))


def test_the_files_hover_and_head_buttons(dates_file):
    page, res = dates_file
    want = res.trace.window("decoder.1.cross_attn", 1, range(11), range(11)).values
    page.click('.attn-heads button[data-head="1"]')
    page.wait_for_function("() => window.__attnCanvasStats.file.head === 1")
    assert tuple(page.evaluate(PIXEL_JS, ["file", 4, 2])) == viridis(page_q(want[4, 2]))
    point = page.evaluate("() => window.__attnCanvasStats.file.cellToClient(4, 2)")
    page.mouse.move(point["x"], point["y"])
    page.locator(".attn-tip").wait_for(state="visible")
    text = page.locator(".attn-tip").inner_text()
    assert f"query 4·{res.target.tokens[4]}" in text and f"key 2·{res.source.tokens[2]}" in text
    assert f": {want[4, 2]:.4f}" in text and "exact cell" in text


def test_the_png_is_twice_the_size_with_axes_and_colour_bar(dates_file):
    from PIL import Image

    page, _ = dates_file
    with page.expect_download() as download:
        page.click('.attn-tools button[data-act="png"]')
    image = Image.open(io.BytesIO(open(download.value.path(), "rb").read())).convert("RGB")
    s = page.evaluate("() => JSON.parse(JSON.stringify(window.__attnCanvasStats.file))")
    css = page.evaluate("() => { const c = document.querySelector('.attn-map'); return [c.clientWidth, "
                        "c.clientHeight]; }")
    assert download.value.suggested_filename.endswith(".png")
    assert image.size == (2 * css[0], 2 * css[1]) and s["snapshot"]["scale"] == 2
    m = s["mapRect"]
    bar = image.getpixel((int(2 * (m["x"] + m["w"] + 20)), int(2 * m["y"] + 3)))  # the colour bar's top: hi
    # the bar's top rows: the top of the scale (a pixel 1.5 px below the edge may hold the next steps of the ramp)
    assert min(max(abs(a - b) for a, b in zip(bar, viridis(k), strict=True)) for k in range(250, 256)) <= 2
    labels = image.crop((0, int(2 * m["y"]), int(2 * m["x"] - 10), int(2 * (m["y"] + m["h"]))))
    assert np.asarray(labels).sum(axis=2).min() < 300  # tick labels: dark text left of the map
    image.save(ARTIFACTS / "notebook-png.png")


def test_a_1024_token_12_head_file_is_a_few_mb_and_says_where_exact_cells_stop(context, tmp_path):
    transformers = pytest.importorskip("transformers")
    from tests.hf_models import byte_level_tokenizer
    from viz.notebook import show

    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=byte_level_tokenizer(["<|endoftext|>"], None))
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=48, n_layer=1, n_head=12, n_positions=1024,
                                                                vocab_size=len(tok) + 3))
    ids = tok(" ".join(["the cat sat on the mat", "a dog ran in the park"] * 120))["input_ids"][:1024]
    widget = show((gpt2, tok), tok.decode(ids), head=5)
    out = widget.save_html(tmp_path / "long.html")
    assert out.exact_heads == (5,) and out.nbytes < 4 * 2**20, out.nbytes
    page, refused, errors = open_offline(context, tmp_path / "long.html")
    want = widget.result.trace.window("decoder.0.self_attn", 5, range(600, 602), range(0, 2)).values
    got = page.evaluate("() => [[600, 0], [600, 1], [601, 0], [601, 1]].map(([r, c]) =>"
                        " window.__attnCanvasStats.file.exactCell(5, r, c))")
    assert np.array_equal(np.asarray(got, dtype=np.float64), want.ravel().astype(np.float64))
    assert page.evaluate("() => window.__attnCanvasStats.file.exactCell(4, 600, 0)") is None
    page.click('.attn-heads button[data-head="4"]')  # a head the file holds no exact cells of
    page.wait_for_function("() => window.__attnCanvasStats.file.head === 4")
    point = page.evaluate("() => window.__attnCanvasStats.file.cellToClient(600, 10)")
    page.mouse.move(point["x"], point["y"])
    page.locator(".attn-tip").wait_for(state="visible")
    assert "exact values for head 5 of 12 only" in page.locator(".attn-tip").inner_text()
    assert refused == [] and errors == []
    page.close()
