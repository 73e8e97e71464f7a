"""Eight Chromium sessions against one `streamlit run app.py` for three minutes: what each visitor gets.

Each session loops over actions a visitor takes (a new input, a layer or head change, another view, the selection's
CSV, the whole trace's CSV) for DURATION seconds; each action is timed from its click to the page settled (no
"Running" indicator). Downloads are checked: a download that fails or comes back empty counts as failed (target 0).
The server's resident memory is sampled every 5 s.

    python -m benchmarks.bench_load              # prints a table, writes benchmarks/results/load.json
    python -m benchmarks.bench_load --seconds 60 --sessions 4

Fairness (issue 32): a session's new 60-token input on the GPT-2-small-shaped model, alone and while four other
sessions run the logit lens of 1,024 tokens (jobs since issue 32; before, the lens ran in the session's own run on the
big lane), each timed from Ctrl+Enter to the page settled. "before" runs the tree at --before (git archive).

    python -m benchmarks.bench_load --fairness   # both sides; writes "fairness" into benchmarks/results/load.json
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


FILL_JS = """(t) => { const ta = document.querySelector('textarea');
    const set = Object.getOwnPropertyDescriptor(window.HTMLTextAreaElement.prototype, 'value').set;
    set.call(ta, t); ta.dispatchEvent(new Event('input', {bubbles: true})); }"""
LENS_SESSIONS, LENS_TOKENS, PROBE_TOKENS, PROBES = 4, 1024, 60, 5
RUNNING_JS = """() => { const s = document.querySelector('[data-testid="stStatusWidget"]');
    return !!(s && /Running/.test(s.innerText)); }"""


def new_input(page, text: str, timeout: float = 600_000) -> float:
    """Type ``text`` into the sidebar's box, commit it, wait for the page to settle -> seconds."""
    page.evaluate(FILL_JS, text)
    t0 = time.perf_counter()
    page.get_by_role("textbox", name="Text", exact=True).press("Control+Enter")
    settle(page, timeout)
    return time.perf_counter() - t0


def lens_session(browser, url: str, text: str):
    """A session on the lens view of the GPT-2-small-shaped model with ``text`` (1,024 tokens) traced -> its page."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{url}?model=gpt2small&view=logit-lens")
    page.wait_for_selector("textarea", timeout=600_000)
    settle(page, 600_000)
    new_input(page, text)
    return page


def fairness(code: Path) -> dict:
    """A probe session's new 60-token inputs alone, then while four sessions run the lens at 1,024 tokens."""
    import statistics as stats_

    from playwright.sync_api import sync_playwright
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import gpt2_small, text_of_tokens

    model = gpt2_small()
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    env = {"INSPECTOR_MODELS": str(model.parent), "INSPECTOR_WARM_UP": "0"}
    with streamlit_server(timeout=180, env=env, root=code) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            probe = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            probe.goto(f"{url}?model=gpt2small")
            probe.wait_for_selector("textarea", timeout=600_000)
            settle(probe, 600_000)
            new_input(probe, text_of_tokens(tok, PROBE_TOKENS, shift=0))  # warm: the model loaded, one call made
            alone = [new_input(probe, text_of_tokens(tok, PROBE_TOKENS, shift=1 + i)) for i in range(PROBES)]
            lens = [lens_session(browser, url, text_of_tokens(tok, LENS_TOKENS, shift=50 + i))
                    for i in range(LENS_SESSIONS)]  # each traced, the lens not started yet
            for page in lens:  # the four lenses at once
                page.get_by_role("button", name="Compute the logit lens").first.click()
            probe.wait_for_timeout(3000)  # their runs have started
            busy = [new_input(probe, text_of_tokens(tok, PROBE_TOKENS, shift=20 + i)) for i in range(PROBES)]
            jobs_shown = sum(bool(page.query_selector('[data-testid="stProgress"]')) for page in lens)
            running = sum(page.evaluate(RUNNING_JS) for page in lens)
        finally:
            browser.close()
    a, b = stats_.median(alone), stats_.median(busy)
    return {"alone_s": [round(x, 2) for x in alone], "with_lens_s": [round(x, 2) for x in busy],
            "alone_median_s": round(a, 2), "with_lens_median_s": round(b, 2), "ratio": round(b / a, 2),
            "worst_ratio": round(max(busy) / a, 2),
            "lens_sessions_at_the_end": {"showing_a_job": jobs_shown, "running_their_script": running}}


def run_fairness(before_rev: str | None) -> None:
    import subprocess
    import tempfile

    from benchmarks.bench_hostile import ROOT, before_tree

    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "target_ratio": 1.5,
           "what": f"a new {PROBE_TOKENS}-token input (GPT-2-small-shaped), median of {PROBES}, alone and while "
                   f"{LENS_SESSIONS} sessions run the logit lens of {LENS_TOKENS} tokens"}
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        rev = before_rev or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], check=True,
                                           capture_output=True, text=True).stdout.strip()
        for side, code in (("after", ROOT), ("before", before_tree(rev, Path(tmp) / "before"))):
            out[side] = fairness(code)
            print(side, json.dumps(out[side]), flush=True)
    path = RESULTS / "load.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc["fairness"] = out
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--fairness", action="store_true", help="the fairness measurement only (issue 32)")
    ap.add_argument("--before", default=None, help="--fairness: git revision of the 'before' side")
    args = ap.parse_args()
    if args.fairness:
        run_fairness(args.before)
        return
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
    path = RESULTS / "load.json"
    kept = {k: v for k, v in (json.loads(path.read_text()) if path.is_file() else {}).items() if k == "fairness"}
    path.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "summary": summary, "rss": samples,
        "errors": {k: v["errors"] for k, v in results.items()}, **kept}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'load.json'}")


if __name__ == "__main__":
    main()
