"""The Atlas page in headless Chromium: `streamlit run app_pages/atlas.py` on a built atlas; the strip the browser
draws holds the database's means, a click on a strip cell selects that head (the distribution and the tables follow),
the projection is drawn. Screenshots go to artifacts/ (atlas-*.png)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from model.atlas import queries as Q
from model.atlas.build import BuildRequest, build
from model.atlas.store import open_read_only
from tests.e2e_support import (
    ARTIFACTS,
    ROOT,
    chromium,
    chromium_available,
    exception_boxes,
    heatmaps,
    streamlit_server,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT = 120_000
TEXTS = ["Saturday, November 21, 2026", "21.11.2026", "Nov 3, 1999", "the 5th of May 2001", "2026/11/21",
         "Tuesday, 1 January 1901", "14th of July 1989", "3.4.2012", "1st of March 2000, a Wednesday",
         "December 25, 1999", "2000-01-01", "30 June 1950", "Sunday, 5 June 2044", "7.7.1977", "9th of May 1945"]


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-atlases")
    data = folder.parent / "dates.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    row = build(BuildRequest(model=str(ROOT / "checkpoints" / "dates"), data=str(data),
                             db=str(folder / "dates.duckdb"), batch_size=8, device="cpu"))
    return folder, row


def test_the_atlas_page_draws_the_corpus_and_a_click_selects_a_head(atlas):
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    folder, run = atlas
    ARTIFACTS.mkdir(exist_ok=True)
    con = open_read_only(folder / "dates.duckdb")
    try:
        ref = Q.head_summary(con, run["run_id"], "entropy", "mean", kind="cross")
        hist_ref = Q.distribution(con, run["run_id"], "decoder.0.cross_attn", 2, "entropy", bins=8)
    finally:
        con.close()
    with streamlit_server("app_pages/atlas.py", env={"INSPECTOR_ATLASES": str(folder)}) as url, \
            chromium(viewport=(1400, 1100)) as page:
        page.goto(url)
        wait_idle(page, TIMEOUT)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=TIMEOUT)
        # the statistic: entropy (the strip's default for cross-attention is the first statistic it has)
        page.get_by_role("combobox", name="Statistic", exact=True).click()
        page.get_by_role("option", name="entropy (nats)", exact=True).click()
        page.wait_for_timeout(500)
        wait_idle(page, TIMEOUT)
        strip = heatmaps(page)[0][0]
        np.testing.assert_allclose(np.array(strip["z"], dtype=float),
                                   ref.pivot(index="layer", columns="head", values="value").to_numpy(), atol=1e-9)
        # click the strip's cell of layer 0, head 2 (its click target's centre, in page pixels)
        box = page.evaluate("""() => {
            const d = document.querySelector('.js-plotly-plot');
            const t = d._fullData.find(t => t.type === 'scatter');
            const i = t.customdata.findIndex(c => c[0] === 2);
            const xa = d._fullLayout.xaxis, ya = d._fullLayout.yaxis, r = d.getBoundingClientRect();
            return {x: r.left + xa._offset + xa.l2p(xa.d2l(t.x[i])), y: r.top + ya._offset + ya.l2p(ya.d2l(t.y[i]))};
        }""")
        page.mouse.click(box["x"], box["y"])
        page.wait_for_function("() => { const t = document.querySelectorAll('.js-plotly-plot')[1];"
                               " return t && t.layout.title.text.startsWith('decoder.0.cross_attn, head 2'); }",
                               timeout=TIMEOUT)
        wait_idle(page, TIMEOUT)
        assert page.get_by_role("combobox", name="Layer", exact=True).input_value().strip() == "0"
        assert page.get_by_role("combobox", name="Head", exact=True).input_value().strip() == "2"
        counts = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot')[1]._fullData[0].y)")
        assert counts == hist_ref["count"].tolist()
        qk = page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[2]._fullData"
                           ".reduce((n, t) => n + t.x.length, 0)")
        assert qk > 0
        assert exception_boxes(page) == []
        page.screenshot(path=str(ARTIFACTS / "atlas-1-strip.png"))
        page.locator('[data-testid="stDataFrame"]').first.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "atlas-2-examples.png"))
        page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "atlas-3-queries-and-keys.png"))
