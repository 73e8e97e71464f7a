"""Start the app with `streamlit run` (or JupyterLab) on a free port and drive Debian's Chromium through Playwright.

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
    """The server's URL; ``.pid`` is its process id (for memory measurements), ``.token`` a Jupyter server's token."""

    pid: int = 0
    token: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(proc, log, probe: str, what: str, url: str, timeout: float) -> None:
    """Until ``probe`` answers 200; RuntimeError (with the log's end) if the process exits, TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read()[-4000:]}")
        try:
            with urllib.request.urlopen(probe, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer on {url} within {timeout:.0f} s")
        time.sleep(0.2)


def stop_server(proc, log, wait: float) -> None:
    """Stop a server's whole process group (SIGTERM, then SIGKILL after ``wait`` s) and remove its log."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    log.close()
    os.unlink(log.name)


@contextlib.contextmanager
def streamlit_server(script: str = "app.py", timeout: float = 90.0, env: dict | None = None,
                     args: tuple[str, ...] = (), root: Path | None = None) -> Iterator[str]:
    """Run `streamlit run script` headless on a free port (``args``: the script's own, after `--`; in ``root``,
    default this checkout); yield its URL; always stop it (whole process group)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="streamlit-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"] + (["--", *args] if args else [])
    proc = subprocess.Popen(cmd, cwd=root or ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    try:
        wait_until_up(proc, log, url + "/_stcore/health", "streamlit", url, timeout)
        yield url
    finally:
        stop_server(proc, log, 10)


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


CANVAS_MAP_JS = """(key) => { const s = window.__attnCanvasStats && window.__attnCanvasStats[key];
    const m = s && s.shown && s.shown();
    return m ? {...m, choice: s.choice || null} : null; }"""


def canvas_map(page, key: str = "map") -> dict | None:
    """What the attention canvas ``key`` shows: {rows, cols, z ((rows, cols) float32 exact cells, or uint8 colour
    indices when not exact), exact, head, overview, choice}; None when there is none."""
    import numpy as np

    m = page.evaluate(CANVAS_MAP_JS, key)
    if m is None:
        return None
    m["z"] = np.asarray(m.pop("values"), dtype=np.float32 if m["exact"] else np.uint8).reshape(m["rows"], m["cols"])
    return m


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current run (no running indicator) and a chart or map is drawn."""
    page.wait_for_selector(".js-plotly-plot, canvas.attn-map[data-drawn]", timeout=timeout)
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


def lab_settings(root: Path) -> dict:
    """Environment for a JupyterLab of its own under ``root``: config, data, runtime, settings and workspaces there
    (nothing read from or written to the user's), the preferred kernel started without asking, no news prompt."""
    dirs = {name: root / f".{name}" for name in ("config", "data", "runtime", "settings", "workspaces")}
    settings = dirs["settings"] / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True, exist_ok=True)
    (settings / "apputils-extension").mkdir(parents=True, exist_ok=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"autoStartDefaultKernel": true}')
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    return {"JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]), "PYTHONPATH": str(ROOT)}


@contextlib.contextmanager
def jupyter_lab(root: Path, timeout: float = 120.0) -> Iterator[str]:
    """`jupyter lab` on 127.0.0.1, a free port and a random token, serving ``root`` (its kernels import this
    repository's packages); yield its URL (``.token``: the token); always stop it (whole process group)."""
    import secrets

    port, token = free_port(), secrets.token_hex(16)
    log = tempfile.NamedTemporaryFile("w+", prefix="jupyterlab-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=None"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **lab_settings(root)})
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    url.token = token
    try:
        wait_until_up(proc, log, f"{url}/api/status?token={token}", "jupyter lab", url, timeout)
        yield url
    finally:
        stop_server(proc, log, 15)


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells (no outputs) for the python3 kernel."""
    import json

    nb = {"cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "source": src, "outputs": [],
                     "execution_count": None} for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


def run_all_cells(page, url: str, name: str, timeout: float = 120_000) -> None:
    """Open notebook ``name`` of the lab at ``url`` and run every cell once its kernel is idle (Run > Run All)."""
    page.goto(f"{url}/lab/tree/{name}?token={url.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout)
    page.wait_for_function("() => /\\| Idle/.test((document.querySelector('#jp-main-statusbar') || {}).innerText"
                           " || '')", timeout=timeout)
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click("li.lm-Menu-item:has-text('Run All Cells')")


def cell_output(page, marker: str, timeout: float = 300_000):
    """The JSON a cell printed after ``marker`` on one line (waits until the whole of it has arrived: a long print
    comes in several stream messages)."""
    handle = page.wait_for_function("""(m) => {
        for (const e of document.querySelectorAll('.jp-OutputArea-output pre')) {
            const line = e.innerText.split('\\n').find((l) => l.startsWith(m + ' '));
            if (line === undefined) continue;
            try { return JSON.parse(line.slice(m.length + 1)); } catch (err) { return false; }
        }
        return false; }""", arg=marker, timeout=timeout)
    return handle.json_value()
