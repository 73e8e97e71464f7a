"""Start the app with `streamlit run` on a free port and drive Debian's Chromium through Playwright.

Shared by the browser tests (tests/test_browser.py) and the browser benchmarks (benchmarks/bench_browser.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "artifacts"  # screenshots land here (ignored by git, kept by CI as test artifacts)


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None


class ServerURL(str):
    """The server's URL; ``.pid`` is its process id (for memory measurements)."""

    pid: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(script: str = "app.py", timeout: float = 90.0, env: dict | None = None,
                     cwd: Path = ROOT) -> Iterator[str]:
    """Run `streamlit run script` headless on a free port (in ``cwd``: another tree for a benchmark's "before"); yield
    its URL; always stop it (whole process group)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="streamlit-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read()[-4000:]}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        os.unlink(log.name)


@contextlib.contextmanager
def chromium(viewport=(1400, 1000)):
    """A fresh headless Chromium page (own profile dir), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


# JavaScript run in the page: the Plotly figures the browser actually drew. `data` keeps the binary payload
# ({dtype, bdata}); `_fullData` holds the arrays plotly.js decoded from it and plotted.
PLOTLY_HEATMAPS_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(div => (div._fullData || [])
    .filter(t => t.type === 'heatmap' && t.z)
    .map(t => ({rows: t.z.length, cols: t.z[0] ? t.z[0].length : 0,
               z: Array.from(t.z, r => Array.from(r)),
               title: (div.layout && div.layout.title && div.layout.title.text) || ''})))
"""


def heatmaps(page) -> list[list[dict]]:
    """Per Plotly chart on the page: its heatmap traces' shapes and values."""
    return page.evaluate(PLOTLY_HEATMAPS_JS)


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current run (no running indicator) and a chart is drawn."""
    page.wait_for_selector(".js-plotly-plot", timeout=timeout)
    page.wait_for_function(
        """() => {
            const status = document.querySelector('[data-testid="stStatusWidget"]');
            if (status && /Running|Stop/.test(status.innerText)) return false;
            // placeholders of widgets not drawn yet, and elements left over from the previous run
            return !document.querySelector('[data-testid="stSkeleton"], [data-stale="true"]');
        }""",
        timeout=timeout)


def exception_boxes(page) -> list[str]:
    return [e.inner_text() for e in page.query_selector_all('[data-testid="stException"]')]
