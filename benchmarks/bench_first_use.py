"""What a newcomer waits for on a cold start, in headless Chromium against `streamlit run app.py`.

Each restart: launch the server, wait until it answers its health check ("server up"), open the page, and read on
the page's clock (Date.now, the same machine clock as the server's) when the first text of the app's frame is
visible (the title or the loading line) and when the first map is drawn (the attention canvas's first frame).
Targets (issue 22): the frame within 1 s of the page being asked for, the first map on the shipped model within 3 s
of the server being up.

    python -m benchmarks.bench_first_use                     # 3 rounds: the app, the app without the server's
                                                             # warm-up, a bare Streamlit page (the floor)
    python -m benchmarks.bench_first_use --before /tmp/main  # and a checkout of main, measured in turn with them
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from tests.e2e_support import chromium, streamlit_server

RESULTS = Path(__file__).parent / "results"
FRAME_TARGET_S = 1.0
FIRST_MAP_TARGET_S = 3.0

# Installed before any page script: the time (Date.now, ms) of the first animation frame in which the app's frame
# text is visible, and the first in which the attention canvas (or, in a tree before this round, Plotly) has drawn
# its map.
WATCH_JS = """
window.__firstUse = {frame: null, map: null, frameText: null, errors: 0};
(function tick() {
    const w = window.__firstUse;
    try {
        if (w.frame === null) {
            const el = document.querySelector('[data-testid="stMain"] h1');
            if (el && el.innerText.trim() && el.getBoundingClientRect().height > 0) {
                w.frame = Date.now(); w.frameText = el.innerText.trim().slice(0, 80);
            }
        }
        const maps = window.__attnCanvasStats || {};  // the canvas lives in its component's shadow root
        // a tree before this round (--before) drew a short map with Plotly: its heatmap layer counts as the map
        const plotly = document.querySelector('[data-testid="stPlotlyChart"] .heatmaplayer image, ' +
                                               '[data-testid="stPlotlyChart"] .heatmaplayer .hm');
        if (w.map === null && (Object.values(maps).some((s) => s.draws > 0) || plotly)) w.map = Date.now();
    } catch (e) { w.errors += 1; }
    if (w.frame === null || w.map === null) requestAnimationFrame(tick);
})();
"""


FLOOR_SCRIPT = 'import streamlit as st\nst.title("Attention inspector")\n'


def one_start(script: str = "app.py", env: dict | None = None, wait_for_map: bool = True) -> dict:
    """One cold start of ``script`` (the floor script, a bare Streamlit page, has no map to wait for)."""
    launched = time.time()
    with streamlit_server(script, env=env) as url, chromium((1400, 900)) as page:
        up = time.time()
        page.add_init_script(WATCH_JS)
        asked = time.time()
        page.goto(url)
        page.wait_for_function(f"() => window.__firstUse.{'map' if wait_for_map else 'frame'} !== null",
                               timeout=120_000)
        w = page.evaluate("() => window.__firstUse")
    return {"launch_to_up_s": round(up - launched, 2),
            "up_to_frame_s": round((w["frame"] / 1000) - up, 2) if w["frame"] else None,
            "goto_to_frame_s": round((w["frame"] / 1000) - asked, 2) if w["frame"] else None,
            "up_to_first_map_s": round((w["map"] / 1000) - up, 2) if w["map"] else None,
            "frame_text": w["frameText"]}


KEYS = ("launch_to_up_s", "up_to_frame_s", "goto_to_frame_s", "up_to_first_map_s")


def main(argv=None) -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="cold starts of each variant, taken in turn")
    ap.add_argument("--before", type=Path, default=None,
                    help="a checkout of another commit (e.g. main) whose app.py is measured alongside")
    args = ap.parse_args(argv)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(FLOOR_SCRIPT)
    variants = {"after": ("app.py", None, True),
                "after, INSPECTOR_WARM_UP=0": ("app.py", {"INSPECTOR_WARM_UP": "0"}, True),
                "floor (bare Streamlit page)": (f.name, None, False)}
    if args.before is not None:
        variants = {f"before ({args.before})": (str(args.before.resolve() / "app.py"), None, True), **variants}
    runs: dict[str, list] = {k: [] for k in variants}
    loads = []
    try:
        for _ in range(args.rounds):  # in turn, so that every variant meets the same load on a shared machine
            for label, (script, env, wait) in variants.items():
                loads.append(round(os.getloadavg()[0], 2))
                runs[label].append(one_start(script, env, wait))
    finally:
        Path(f.name).unlink()

    def med(rs, key):
        vals = [r[key] for r in rs if r[key] is not None]
        return round(statistics.median(vals), 2) if vals else None

    print(f"cold start, {args.rounds} rounds (median), load average {min(loads)}-{max(loads)} on "
          f"{os.cpu_count()} cores")
    print(f"{'variant':>34} | {'launch -> up':>12} | {'page asked -> frame':>19} | {'up -> first map':>15}")
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_1min": loads},
              "targets_s": {"frame_after_page_asked": FRAME_TARGET_S, "first_map_after_up": FIRST_MAP_TARGET_S}}
    for label, rs in runs.items():
        m = {k: med(rs, k) for k in KEYS}
        result[label] = {"runs": rs, "median": m}
        print(f"{label:>34} | {m['launch_to_up_s']!s:>10} s | {m['goto_to_frame_s']!s:>17} s | "
              f"{m['up_to_first_map_s']!s:>13} s")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "first_use.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"targets: frame {FRAME_TARGET_S:.0f} s after the page is asked for, first map {FIRST_MAP_TARGET_S:.0f} s "
          f"after the server is up; wrote {out}")


if __name__ == "__main__":
    main()
