"""Eight Chromium sessions against one `streamlit run app.py` for three minutes: what each visitor gets.

Each session loops over actions a visitor takes (a new input, a layer or head change, another view, the selection's
CSV, the whole trace's CSV) for DURATION seconds; each action is timed from its click to the page settled (no
"Running" indicator). Downloads are checked: a download that fails or comes back empty counts as failed (target 0).
The server's resident memory is sampled every 5 s.

    python -m benchmarks.bench_load              # prints a table, writes benchmarks/results/load.json
    python -m benchmarks.bench_load --seconds 60 --sessions 4
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from tests.e2e_support import CHROMIUM, CHROMIUM_ARGS, streamlit_server

RESULTS = Path(__file__).parent / "results"
SOURCES = ["Saturday, November 21, 2026", "1 May 2000", "Monday 3 March 1999", "9th of July 1969",
           "FEBRUARY 29, 2000", "2099/12/31", "august 15, 1947", "Nov 5, 1901"]
VIEWS = ["Attention map", "Head grid", "Model overview", "Statistics", "Rollout", "Export"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def settle(page, timeout: float = 120_000) -> None:
    """Until the action's rerun has run and the page holds no stale element (under load the server can take a few
    hundred ms to start the rerun; a click on a stale download button then races the rerun's address update, whose
    history.replaceState cancels the download's navigation in Chromium)."""
    page.wait_for_timeout(250)
    page.wait_for_function("""() => { const s = document.querySelector('[data-testid="stStatusWidget"]');
        return !(s && /Running|Stop/.test(s.innerText)) && !document.querySelector('[data-stale="true"]'); }""",
                           timeout=timeout)


def choose(page, label: str, option: str) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def download(page, label: str, errors: list) -> bool:
    """Click a download button; True when a non-empty file arrived (else the reason goes to ``errors``)."""
    button = page.get_by_role("button", name=label).first
    button.wait_for(timeout=30_000)  # not there: the action failed (counted apart), not a download
    try:
        with page.expect_download(timeout=60_000) as info:
            button.click()
        failure = info.value.failure()
        path = info.value.path()
        ok = failure is None and bool(path) and Path(path).stat().st_size > 0
        if not ok:
            errors.append(f"download {label!r}: {failure or 'empty file'}")
        return ok
    except Exception as e:
        errors.append(f"download {label!r}: {type(e).__name__}: {str(e)[:160]}")
        return False


def visitor(browser, url: str, seconds: float, seed: int, out: dict) -> None:
    rng = random.Random(seed)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    times, failures, downloads, failed_downloads, errors = [], 0, 0, 0, []
    try:
        page.goto(url)
        page.wait_for_selector("canvas.attn-map[data-drawn]", timeout=180_000)
        settle(page)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            action = rng.choice(["text", "layer", "head", "view", "csv", "trace_csv"])
            t0 = time.perf_counter()
            try:
                if action == "text":
                    box = page.get_by_role("textbox", name="Source text", exact=True)
                    box.fill(rng.choice(SOURCES))
                    box.press("Control+Enter")
                elif action == "layer":
                    choose(page, "Layer", str(rng.randrange(2)))
                elif action == "head":
                    choose(page, "Head", f"head {rng.randrange(4)}")
                elif action == "view":
                    page.get_by_role("radio", name=rng.choice(VIEWS), exact=True).first.click()
                else:
                    page.get_by_role("radio", name="Export", exact=True).first.click()
                    settle(page)
                    if action == "csv":
                        downloads += 1
                        failed_downloads += not download(page, "CSV of this selection", errors)
                    else:
                        prep = page.get_by_role("button", name="Prepare the whole trace as CSV")
                        if prep.count():
                            prep.first.click()
                            settle(page)
                        downloads += 1
                        failed_downloads += not download(page, "CSV of the whole trace (", errors)
                settle(page)
                times.append((time.perf_counter() - t0) * 1e3)
            except Exception as e:  # counted, and the visitor goes on
                failures += 1
                errors.append(f"{action}: {type(e).__name__}: {str(e)[:120]}")
                page.wait_for_timeout(500)
            if page.query_selector('[data-testid="stException"]'):
                errors.append("exception box on the page")
    finally:
        context.close()
    out[seed] = {"times_ms": times, "failures": failures, "downloads": downloads,
                 "failed_downloads": failed_downloads, "errors": errors[:10]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--sessions", type=int, default=8)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    results: dict = {}
    samples = []
    with streamlit_server(timeout=180) as url:
        stop = threading.Event()

        def sample():
            t0 = time.monotonic()
            while not stop.is_set():
                samples.append({"s": round(time.monotonic() - t0, 1), "rss_MiB": round(rss_mib(url.pid), 1)})
                stop.wait(5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # one Playwright (its sync API is bound to the thread that started it) per visitor thread
        threads = []

        def run(i):
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    visitor(browser, url, args.seconds, i, results)
                finally:
                    browser.close()

        started = time.monotonic()
        for i in range(args.sessions):
            threads.append(threading.Thread(target=run, args=(i,)))
            threads[-1].start()
            time.sleep(2)  # arriving one after the other, as visitors do
        for t in threads:
            t.join()
        stop.set()
        wall = time.monotonic() - started
    times = sorted(x for r in results.values() for x in r["times_ms"])
    summary = {
        "sessions": args.sessions, "seconds": args.seconds, "actions": len(times),
        "actions_per_s": round(len(times) / wall, 2) if wall else 0,
        "p50_ms": round(statistics.median(times), 1) if times else None,
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1) if times else None,
        "failed_actions": sum(r["failures"] for r in results.values()),
        "downloads": sum(r["downloads"] for r in results.values()),
        "failed_downloads": sum(r["failed_downloads"] for r in results.values()),
        "rss_MiB_first": samples[0]["rss_MiB"] if samples else None,
        "rss_MiB_max": max((s["rss_MiB"] for s in samples), default=None),
        "rss_MiB_last": samples[-1]["rss_MiB"] if samples else None,
    }
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "summary": summary, "rss": samples,
        "errors": {k: v["errors"] for k, v in results.items()}}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'load.json'}")


if __name__ == "__main__":
    main()
