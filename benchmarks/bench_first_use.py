"""What a newcomer waits for on a cold start, in headless Chromium against `streamlit run app.py`.

Each restart: launch the server, wait until it answers its health check ("server up"), open the page, and read on
the page's clock (Date.now, the same machine clock as the server's) when the first text of the app's frame is
visible (the title or the loading line) and when the first heatmap is drawn. Targets (issue 22): the frame within
1 s of the page being asked for, the first map on the shipped model within 3 s of the server being up.

    python -m benchmarks.bench_first_use            # 3 restarts; prints a table, writes results/first_use.json
    python -m benchmarks.bench_first_use --label before --repeats 3
"""

from __future__ import annotations

import argparse
import json
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
# text is visible, and the first in which a Plotly heatmap has been drawn.
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
        if (w.map === null) {
            for (const d of document.querySelectorAll('.js-plotly-plot')) {
                const t = (d._fullData || []).find(t => t.type === 'heatmap' && t.z && t.z.length);
                if (t && d.querySelector('.heatmaplayer image, .hm')) { w.map = Date.now(); break; }
            }
        }
    } catch (e) { w.errors += 1; }
    if (w.frame === null || w.map === null) requestAnimationFrame(tick);
})();
"""


def one_start() -> dict:
    launched = time.time()
    with streamlit_server() as url, chromium((1400, 900)) as page:
        up = time.time()
        page.add_init_script(WATCH_JS)
        asked = time.time()
        page.goto(url)
        page.wait_for_function("() => window.__firstUse.map !== null", timeout=120_000)
        w = page.evaluate("() => window.__firstUse")
    return {"launch_to_up_s": round(up - launched, 2),
            "up_to_frame_s": round((w["frame"] / 1000) - up, 2) if w["frame"] else None,
            "goto_to_frame_s": round((w["frame"] / 1000) - asked, 2) if w["frame"] else None,
            "up_to_first_map_s": round((w["map"] / 1000) - up, 2),
            "frame_text": w["frameText"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--label", default="current", help="the name of this measurement in first_use.json")
    args = ap.parse_args(argv)
    runs = [one_start() for _ in range(args.repeats)]

    def med(key):
        vals = [r[key] for r in runs if r[key] is not None]
        return round(statistics.median(vals), 2) if vals else None

    summary = {"launch_to_up_s": med("launch_to_up_s"), "up_to_frame_s": med("up_to_frame_s"),
               "goto_to_frame_s": med("goto_to_frame_s"), "up_to_first_map_s": med("up_to_first_map_s")}
    print(f"cold start on the shipped dates model, {args.repeats} restarts (median; each run below)")
    print(f"{'run':>4} | {'launch -> up':>12} | {'up -> frame':>11} | {'up -> first map':>15} | frame text")
    for n, r in enumerate(runs):
        print(f"{n:>4} | {r['launch_to_up_s']:>10} s | {r['up_to_frame_s']!s:>9} s | {r['up_to_first_map_s']:>13} s"
              f" | {r['frame_text']}")
    frame_ok = summary["goto_to_frame_s"] is not None and summary["goto_to_frame_s"] <= FRAME_TARGET_S
    map_ok = summary["up_to_first_map_s"] <= FIRST_MAP_TARGET_S
    print(f"median: frame {summary['goto_to_frame_s']} s after the page was asked for (target {FRAME_TARGET_S:.0f} s:"
          f" {'ok' if frame_ok else 'MISSED'}), first map {summary['up_to_first_map_s']} s after the server was up "
          f"(target {FIRST_MAP_TARGET_S:.0f} s: {'ok' if map_ok else 'MISSED'})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "first_use.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous[args.label] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform()}, "runs": runs, "median": summary,
        "targets_s": {"frame_after_goto": FRAME_TARGET_S, "first_map_after_up": FIRST_MAP_TARGET_S}}
    out.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
