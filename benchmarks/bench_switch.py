"""Head, layer, kind and stage changes on the attention map, and the Training view's step slider, in headless
Chromium against `streamlit run app.py`, on the page's own clock: from the click's (or key's) event timestamp to the
animation frame after the map that was asked for is drawn (window.__attnCanvasStats; a map that had to come from the
server counts its round trip and is marked so). In the same browser, BertViz's head_view on the same tensors (the
GPT-2-small-shaped model at T = 32): a double click on a head's box (its way to switch to one head) to the frame after
its lines are redrawn.

- the shipped dates model (T = 11): head, layer, kind and stage changes;
- a GPT-2-small-shaped model (12 x 12 heads, random weights): T = 32, 128, 512 (head, layer to a neighbour, stage)
  and 1,024 (head, layer to a neighbour), and one jump to a far layer at T = 128 and 512;
- a Llama-shaped model (llama-4x8-d512) at T = 8,192: head, layer to a neighbour;
  (a long input's neighbours come after its map is drawn: each layer step waits until the page holds the next
  layer, as a reader does who looks at a map for a moment; the wait is the next figure, not part of the step);
- the Training view of the induction model: 20 presses of the right arrow on its step slider.

With --before DIR (a checkout of the code before, e.g. `git archive main | tar -x -C DIR`), the dates model's changes
and the Training slider are measured there too, the old way (the page's selectors, the Plotly map redrawn), each
round interleaved with this checkout's, and the ratios printed.

    python -m benchmarks.bench_switch                       # prints a table, writes benchmarks/results/switch.json
    python -m benchmarks.bench_switch --before /tmp/main    # and the checkout before, interleaved
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tests.e2e_support import CHROMIUM, CHROMIUM_ARGS, streamlit_server, wait_idle

RESULTS = Path(__file__).parent / "results"
TARGETS = {"head_ms": 20.0, "switch_short_ms": 50.0, "layer_any_ms": 150.0}  # issue 30
TIMED_OUT_MS = 300_000  # a change that never shows its map
SHORT_T = 512  # layer, kind and stage changes up to this length: no round trip (target switch_short_ms)

# the page's clock: the last click / keydown (capture phase, before any handler), then the frame that shows a map
ARM_JS = """() => { window.__evAt = null;
    for (const type of ['click', 'keydown', 'dblclick']) document.addEventListener(type, (e) => {
        window.__evAt = e.timeStamp; }, {capture: true}); }"""
SHOWN_JS = """([key, want, after]) => { const s = window.__attnCanvasStats && window.__attnCanvasStats[key];
    if (!s) return false;
    const hit = s.history.find((r) => r.n > after && (want.head === undefined || r.head === want.head) &&
        (want.choice === undefined || JSON.stringify(r.choice) === JSON.stringify(want.choice)));
    return hit ? {...hit, ev: window.__evAt} : false; }"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_avg() -> float:
    """The machine's one-minute load average (it is shared: other engineers' test runs move every figure)."""
    return round(os.getloadavg()[0], 2)


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs), 1), "min_ms": round(xs[0], 1), "max_ms": round(xs[-1], 1),
            "n": len(xs)}


def settle(page, timeout: float = 300_000) -> None:
    """The rerun that follows a change (and the deferred parts it brings) has ended."""
    page.wait_for_timeout(250)
    page.wait_for_function("""() => { const s = document.querySelector('[data-testid="stStatusWidget"]');
        return !(s && /Running|Stop/.test(s.innerText)); }""", timeout=timeout)
    page.wait_for_timeout(250)


def stats(page, key: str = "map") -> dict:
    return page.evaluate("(k) => JSON.parse(JSON.stringify({draws: window.__attnCanvasStats[k].draws, "
                         "head: window.__attnCanvasStats[k].head, choice: window.__attnCanvasStats[k].choice, "
                         "held: window.__attnCanvasStats[k].held}))", key)


def timed(page, act, want: dict, key: str = "map") -> dict:
    """Run ``act`` (a click or a key) and time it to the first frame that shows ``want`` ({head} or {choice})."""
    after = stats(page, key)["draws"]
    page.evaluate(ARM_JS)
    act()
    rec = page.wait_for_function(SHOWN_JS, arg=[key, want, after], timeout=TIMED_OUT_MS).json_value()
    ms = rec["at"] - rec["ev"]
    in_page = rec["cause"] not in ("overview", "sync", "stack")
    return {"ms": ms, "in_page": in_page, "cause": rec["cause"]}


def choice_button(page, group: str, text: str):
    return page.locator(f'.attn[data-key=map] .attn-choice[data-choice="{group}"] button', has_text=text).first


def change_choice(page, group: str, value, text: str | None = None) -> dict:
    current = stats(page)["choice"]
    want = {**current, group: value}
    return timed(page, lambda: choice_button(page, group, text or str(value)).click(), {"choice": want})


def change_head(page, head: int, key: str = "map") -> dict:
    button = page.locator(f".attn[data-key={key}] button[data-head='{head}']")
    return timed(page, lambda: button.click(), {"head": head}, key)


def rounds(page, steps: list, repeats: int) -> dict:
    """``steps``: (name, function) pairs run in turn ``repeats`` times; the page settles after each."""
    out: dict[str, list] = {}
    for _ in range(repeats):
        for name, fn in steps:
            out.setdefault(name, []).append(fn())
            settle(page)
    def row(rs):
        waits = [r["prefetch_s"] for r in rs if r.get("prefetch_s") is not None]
        extra = {"prefetch_wait_s": round(max(waits), 2)} if waits else {}
        return {**summary([r["ms"] for r in rs]), "in_page": all(r["in_page"] for r in rs),
                "causes": sorted({r["cause"] for r in rs}), **extra}
    return {name: row(rs) for name, rs in out.items()}


# ---- this checkout

def dates_steps(page) -> list:
    heads, layers, kinds, stages = iter([0, 1, 2, 3] * 50), iter([0, 1] * 50), \
        iter(["encoder self", "decoder masked self", "cross"] * 50), iter(["scores", "weights"] * 50)
    stage_text = {"scores": "scores", "weights": "weights"}
    return [("head", lambda: change_head(page, next(heads))),
            ("layer", lambda: change_choice(page, "layer", next(layers))),
            ("kind", lambda: change_choice(page, "kind", next(kinds))),
            ("stage", lambda: (lambda s: change_choice(page, "stage", s, stage_text[s]))(next(stages)))]


def open_text(page, text: str) -> None:
    before = page.evaluate("() => window.__attnCanvasStats && window.__attnCanvasStats.map ? "
                           "window.__attnCanvasStats.map.overview : null")
    page.evaluate("""(t) => { const ta = document.querySelector('textarea');
        const set = Object.getOwnPropertyDescriptor(window.HTMLTextAreaElement.prototype, 'value').set;
        set.call(ta, t); ta.dispatchEvent(new Event('input', {bubbles: true})); }""", text)
    page.get_by_role("textbox", name="Text", exact=True).press("Control+Enter")
    page.wait_for_function("(b) => { const s = window.__attnCanvasStats && window.__attnCanvasStats.map;"
                           " return s && s.overview && s.overview !== b && s.draws > 0; }", arg=before,
                           timeout=600_000)
    settle(page, 600_000)


def long_steps(page, T: int, n_layers: int, stages: bool) -> list:
    shown = stats(page)
    state = {"layer": shown["choice"]["layer"], "down": True, "head": shown["head"], "stage": shown["choice"]["stage"]}

    def layer():
        lo, hi = 0, n_layers - 1
        if (state["down"] and state["layer"] == lo) or (not state["down"] and state["layer"] == hi):
            state["down"] = not state["down"]
        state["layer"] += -1 if state["down"] else 1
        waited = prefetched(page, {**stats(page)["choice"], "layer": state["layer"]})
        return {**change_choice(page, "layer", state["layer"]), "prefetch_s": waited}

    def head():
        state["head"] = (state["head"] + 5) % 12
        return change_head(page, state["head"])

    def stage():  # between the weights and the scores (from whichever the page shows)
        state["stage"] = "scores" if state["stage"] != "scores" else "weights"
        return change_choice(page, "stage", state["stage"])
    steps = [("head", head), ("layer", layer)]
    return steps + [("stage", stage)] if stages else steps


PREFETCH_WAIT_MS = 120_000


def prefetched(page, choice: dict, key: str = "map") -> float | None:
    """Wait until the page holds the map ``choice`` (a long input's neighbours come after its map is drawn): the
    seconds waited here, or None when it never came (the change then measures a round trip)."""
    t = time.perf_counter()
    try:
        page.wait_for_function("([k, c]) => window.__attnCanvasStats[k].holds(c)", arg=[key, choice],
                               timeout=PREFETCH_WAIT_MS)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError
        return None
    return time.perf_counter() - t


def far_jump(page, n_layers: int) -> dict:
    layer = stats(page)["choice"]["layer"]
    target = 0 if layer > n_layers // 2 else n_layers - 1
    r = change_choice(page, "layer", target)
    settle(page)
    return {"ms": round(r["ms"], 1), "in_page": r["in_page"], "from": layer, "to": target}


@contextlib.contextmanager
def browser():
    """One headless Chromium for the whole run: each app gets a context (a window) of its own in it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def app(chrome, env: dict | None = None, root: Path | None = None, query: str = ""):
    with streamlit_server(env=env, timeout=300, root=root) as url:
        context = chrome.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            page.goto(f"{url}/{query}")
            wait_idle(page, 600_000)
            settle(page)
            yield url, page
        finally:
            context.close()


def gpt2_session(chrome, lengths: list[int], repeats: int, bertviz_T: int | None) -> dict:
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import gpt2_small, text_of_tokens

    path = gpt2_small()
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    out = {}
    with tempfile.TemporaryDirectory() as empty, app(
            chrome, env={"INSPECTOR_CHECKPOINTS": empty, "INSPECTOR_MODELS": str(path.parent)},
            query=f"?model={path.name}") as (_, page):
        for T in lengths:
            open_text(page, text_of_tokens(tok, T, shift=1))
            load = load_avg()
            row = rounds(page, long_steps(page, T, 12, stages=T <= SHORT_T), repeats)
            if T in (128, 512):
                row["far_layer"] = far_jump(page, 12)
            row["held_maps"] = stats(page)["held"]
            row.update(date=now(), load_avg=[load, load_avg()])
            out[T] = row
            print(f"GPT-2-small-shaped T = {T}: {json.dumps(row)}", flush=True)
            if T == bertviz_T:
                out["bertviz"] = bertviz_head_switch(chrome, T, repeats * 2)
                print(f"BertViz head_view T = {T}: {json.dumps(out['bertviz'])}", flush=True)
    return out


def llama_session(chrome, T: int, repeats: int) -> dict:
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import text_of_tokens
    from benchmarks.llama_shaped import llama_shaped

    path = llama_shaped("llama-4x8-d512")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    with tempfile.TemporaryDirectory() as empty, app(
            chrome, env={"INSPECTOR_CHECKPOINTS": empty, "INSPECTOR_MODELS": str(path.parent),
                 "INSPECTOR_MAX_SOURCE_CHARS": "400000"}, query=f"?model={path.name}") as (_, page):
        open_text(page, text_of_tokens(tok, T, shift=1))
        load = load_avg()
        state = {"head": stats(page)["head"], "layer": stats(page)["choice"]["layer"], "down": True}

        def head():
            state["head"] = (state["head"] + 3) % 8
            return change_head(page, state["head"])

        def layer():
            if (state["down"] and state["layer"] == 0) or (not state["down"] and state["layer"] == 3):
                state["down"] = not state["down"]
            state["layer"] += -1 if state["down"] else 1
            waited = prefetched(page, {**stats(page)["choice"], "layer": state["layer"]})
            return {**change_choice(page, "layer", state["layer"]), "prefetch_s": waited}
        row = rounds(page, [("head", head), ("layer", layer)], repeats)
        row.update(date=now(), load_avg=[load, load_avg()])
        print(f"Llama-shaped T = {T}: {json.dumps(row)}", flush=True)
        return row


def training_slider(page, steps: int = 20) -> dict:
    """Home, then ``steps`` right-arrow presses on the canvas's step slider, one at a time (each to its frame), then
    a burst of ``steps`` presses 50 ms apart (a key held down): from the first keydown to the last step's frame."""
    slider = page.locator(".attn-slider input[type=range]")
    slider.wait_for(state="attached", timeout=600_000)  # every snapshot traced first
    settle(page, 600_000)

    def home():
        slider.focus()
        page.keyboard.press("Home")
        page.wait_for_timeout(900)  # past the 500 ms after which the step is reported: its rerun ends first
        settle(page)
    home()
    times, t0 = [], time.perf_counter()
    for _ in range(steps):
        r = timed(page, lambda: page.keyboard.press("ArrowRight"), {}, key="train_map")
        times.append(r["ms"])
    drawn_s = time.perf_counter() - t0
    settle(page)
    home()
    after = stats(page, "train_map")["draws"]
    page.evaluate(ARM_JS)
    first = None
    for _ in range(steps):
        page.keyboard.press("ArrowRight")
        first = first if first is not None else page.evaluate("() => window.__evAt")
        page.wait_for_timeout(50)
    final = int(page.locator(".attn[data-key=train_map] .attn-slider output").inner_text())  # the last step
    last_key = page.evaluate("() => window.__evAt")
    last = page.wait_for_function(
        """([after, step]) => window.__attnCanvasStats.train_map.history.find((r) => r.n > after &&
            r.cause === 'step' && r.choice && r.choice.step === step) || false""", arg=[after, final],
        timeout=120_000).json_value()
    settle(page)
    return {"step": summary(times), "times": times, "steps": steps, "one_at_a_time_s": round(drawn_s, 2),
            "burst_s": round((last["at"] - first) / 1000, 2), "after_last_key_ms": round(last["at"] - last_key, 1)}


# ---- the checkout before (--before): the page's selectors, the Plotly map

OLD_FINGERPRINT_JS = """() => { const d = document.querySelector('.js-plotly-plot');
    const t = d && d._fullData && d._fullData.find(t => t.type === 'heatmap');
    if (!t || !t.z || !t.z.length) return null;
    return t.z.length + 'x' + t.z[0].length + ':' + JSON.stringify(Array.from(t.z, r => Array.from(r))); }"""
OLD_ARM_JS = """([event, condition]) => { const fingerprint = %s; const before = fingerprint();
    window.__bench = {start: null, end: null};
    document.addEventListener(event, e => { if (eval(condition) && window.__bench.start === null)
        window.__bench.start = e.timeStamp; }, {capture: true});
    const tick = () => { const f = fingerprint();
        if (window.__bench.start !== null && f !== null && f !== before) window.__bench.end = performance.now();
        else requestAnimationFrame(tick); };
    requestAnimationFrame(tick); }""" % OLD_FINGERPRINT_JS


def old_timed(page, event: str, condition: str, act) -> dict:
    page.evaluate(OLD_ARM_JS, [event, condition])
    act()
    page.wait_for_function("() => window.__bench.end !== null", timeout=120_000)
    return {"ms": page.evaluate("() => window.__bench.end - window.__bench.start"), "in_page": False,
            "cause": "rerun"}


def old_select(page, label: str, option: str) -> dict:
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    return old_timed(page, "pointerup", "e.target.closest('[role=option]')",
                     lambda: page.get_by_role("option", name=option, exact=True).click())


def old_dates_steps(page) -> list:
    heads, layers = iter([0, 1, 2, 3] * 50), iter(["0", "1"] * 50)
    kinds, stages = iter(["encoder self", "decoder masked self", "cross"] * 50), iter(["scores", "weights"] * 50)

    def kind():
        k = next(kinds)
        group = page.locator('[data-testid="stRadio"]').filter(has_text="Attention").first
        return old_timed(page, "click", "true", lambda: group.get_by_text(k, exact=True).click())
    return [("head", lambda: old_select(page, "Head", f"head {next(heads)}")),
            ("layer", lambda: old_select(page, "Layer", next(layers))),
            ("kind", kind), ("stage", lambda: old_select(page, "Stage", next(stages)))]


def old_training_slider(page, steps: int = 20) -> dict:
    """The same on the Streamlit slider of the checkout before: each press to the redrawn Plotly map, then a burst
    (from the first keydown to the last change of the map once the page has settled)."""
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Snapshot").first.locator('input[type="range"]')
    slider.wait_for(state="attached", timeout=600_000)  # every snapshot traced first
    settle(page, 600_000)

    def home():
        slider.focus()
        page.keyboard.press("Home")
        page.wait_for_timeout(900)
        settle(page)
    home()
    times, t0 = [], time.perf_counter()
    for _ in range(steps):
        times.append(old_timed(page, "keydown", "e.key === 'ArrowRight'",
                               lambda: page.keyboard.press("ArrowRight"))["ms"])
    drawn_s = time.perf_counter() - t0
    settle(page)
    home()
    page.evaluate("""() => { const f = %s; let last = f(); window.__changes = [];
        window.__firstKey = null;
        document.addEventListener('keydown', (e) => { window.__lastKey = e.timeStamp;
            if (window.__firstKey === null) window.__firstKey = e.timeStamp; }, {capture: true});
        const tick = () => { const x = f(); if (x !== last) { last = x; window.__changes.push(performance.now()); }
            requestAnimationFrame(tick); }; requestAnimationFrame(tick); }""" % OLD_FINGERPRINT_JS)
    for _ in range(steps):
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(50)
    page.wait_for_timeout(1000)
    settle(page)
    page.wait_for_timeout(1000)
    end, first, last_key = page.evaluate(
        "() => [window.__changes[window.__changes.length - 1], window.__firstKey, window.__lastKey]")
    return {"step": summary(times), "times": times, "steps": steps, "one_at_a_time_s": round(drawn_s, 2),
            "burst_s": round((end - first) / 1000, 2), "after_last_key_ms": round(end - last_key, 1)}


def interleaved_dates(chrome, repeats: int, before: Path | None) -> dict:
    """The dates model's changes here and (``before``) there, one round of each in turn."""
    with contextlib.ExitStack() as stack:
        _, new = stack.enter_context(app(chrome))
        old = stack.enter_context(app(chrome, root=before))[1] if before else None
        new_steps, old_steps = dates_steps(new), old_dates_steps(old) if old else []
        res: dict[str, dict[str, list]] = {"after": {}, "before": {}}
        for _ in range(repeats):
            for i, (name, fn) in enumerate(new_steps):
                for side, page, f in (("after", new, fn), ("before", old, old_steps[i][1] if old else None)):
                    if page is None:
                        continue
                    page.bring_to_front()
                    res[side].setdefault(name, []).append(f())
                    settle(page)
        out = {side: {name: {**summary([r["ms"] for r in rs]), "in_page": all(r["in_page"] for r in rs)}
                      for name, rs in part.items()} for side, part in res.items() if part}
        print(f"dates model (T = 11): {json.dumps(out)}", flush=True)
        return out


def interleaved_training(chrome, before: Path | None, repeats: int) -> dict:
    query = "?model=induction&kind=decoder-masked-self&layer=1&head=1&view=training"
    with contextlib.ExitStack() as stack:
        _, new = stack.enter_context(app(chrome, query=query))
        new.wait_for_function("() => window.__attnCanvasStats.train_map && window.__attnCanvasStats.train_map.held",
                              timeout=300_000)
        old = None
        if before:
            _, old = stack.enter_context(app(chrome, root=before, query=query))
        out: dict[str, list] = {"after": [], "before": []}
        for _ in range(repeats):
            new.bring_to_front()
            out["after"].append(training_slider(new))
            if old is not None:
                old.bring_to_front()
                out["before"].append(old_training_slider(old))
        res = {side: {"step": summary([x for r in runs for x in r["times"]]),
                      "one_at_a_time_s": statistics.median(r["one_at_a_time_s"] for r in runs),
                      "burst_s": statistics.median(r["burst_s"] for r in runs), "steps": runs[0]["steps"],
                      "after_last_key_ms": statistics.median(r["after_last_key_ms"] for r in runs),
                      "times_ms": [round(x, 1) for r in runs for x in r["times"]]}
               for side, runs in out.items() if runs}
        print(f"Training slider: {json.dumps(res)}", flush=True)
        return res


# ---- BertViz, in the same browser

def bertviz_head_switch(chrome, T: int, repeats: int) -> dict:
    """BertViz head_view on the GPT-2-small-shaped model's tensors at ``T``: a double click on head i's box (BertViz
    then shows head i alone) to the animation frame after its handler redrew the lines."""
    from bertviz import head_view

    from benchmarks.bench_bertviz import attentions, js_files, served

    weights, tokens, _, _ = attentions(T)
    html = head_view(weights, tokens, html_action="return").data
    files = js_files()
    context = chrome.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()

    def route(r):
        url = r.request.url
        key = "require.min.js" if "require" in url else ("d3.min.js" if "/d3/" in url else "jquery.min.js")
        return r.fulfill(status=200, content_type="application/javascript", body=files[key])
    page.route("https://**/*", route)
    try:
        with served(html) as address:
            page.goto(address)
            page.wait_for_function("() => document.querySelectorAll('svg line').length > 0", timeout=120_000)
            page.evaluate("""() => { window.__bv = []; document.addEventListener('dblclick', (e) => {
                const t0 = e.timeStamp; requestAnimationFrame(() => window.__bv.push(performance.now() - t0)); }); }""")
            n_heads = weights[0].shape[1]
            # the head boxes: CHECKBOX_SIZE (20 px) squares in a row at the top of the svg, one per head
            boxes = page.evaluate("""(n) => Array.from(document.querySelectorAll('svg rect'))
                .filter((r) => r.getAttribute('width') === '20' && r.getAttribute('height') === '20')
                .slice(0, n).map((r) => { const b = r.getBoundingClientRect();
                    return {x: b.left + b.width / 2, y: b.top + b.height / 2}; })""", n_heads)
            assert len(boxes) == n_heads, f"{len(boxes)} head boxes found for {n_heads} heads"
            for i in range(repeats):
                before = page.evaluate("() => window.__bv.length")
                box = boxes[(i * 5 + 1) % n_heads]
                page.mouse.dblclick(box["x"], box["y"])
                page.wait_for_function("(n) => window.__bv.length > n", arg=before, timeout=60_000)
                page.wait_for_timeout(150)
            times = page.evaluate("() => window.__bv")
        return {**summary(times), "T": T, "html_bytes": len(html)}
    finally:
        context.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", type=Path, default=None, help="a checkout of the code before, measured in turn")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512, 1024])
    ap.add_argument("--long", type=int, default=8192, help="the Llama-shaped length (0: skip)")
    ap.add_argument("--parts", nargs="+", default=["dates", "training", "gpt2", "llama"],
                    help="which parts to run (a partial run replaces those parts of the results file)")
    args = ap.parse_args(argv)
    result = {"date": now(),
              "machine": {"platform": platform.platform(), "processor": platform.processor()},
              "targets": TARGETS, "before": str(args.before) if args.before else None}
    with browser() as chrome:
        if "dates" in args.parts:
            result["dates"] = {**interleaved_dates(chrome, args.repeats, args.before), "date": now()}
        if "training" in args.parts:
            result["training"] = {**interleaved_training(chrome, args.before, 1), "date": now()}
        if "gpt2" in args.parts:
            result["gpt2_small"] = {**gpt2_session(chrome, args.lengths, args.repeats, 32 if 32 in args.lengths
                                                   else None), "date": now()}
        if args.long and "llama" in args.parts:
            result["llama_4x8"] = {args.long: llama_session(chrome, args.long, args.repeats), "date": now()}
    target = RESULTS / "switch.json"
    if len(args.parts) < 4:  # a part measured again replaces that part of the last full run (each part dated)
        if not target.is_file():
            print(json.dumps(result, indent=1))
            return
        result = merged(json.loads(target.read_text()), result)
    RESULTS.mkdir(exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {target}")


def merged(last: dict, new: dict) -> dict:
    """The last results with the parts measured again: a length's row replaces that length's row only (the others
    are kept, each with the date of the run that measured it)."""
    out = dict(last)  # its date and machine: the last full run's
    for part in ("dates", "training"):
        if part in new:
            out[part] = new[part]
    for part in ("gpt2_small", "llama_4x8"):
        if part not in new:
            continue
        old = last.get(part, {})
        kept = {k: ({**v, "date": v.get("date", old.get("date"))} if str(k).isdigit() else v)
                for k, v in old.items() if k != "date"}
        out[part] = {**kept, **{str(k): v for k, v in new[part].items()}}
    return out


def verdict(ms: float, target: float) -> str:
    return f"{'ok' if ms <= target else 'MISSED'} (target {target:.0f} ms)"


def load_note(row: dict) -> str:
    return f"; load {row['load_avg'][0]}-{row['load_avg'][1]}, {row['date']}" if "load_avg" in row else ""


def print_table(r: dict) -> None:
    print("\nchange -> the asked map drawn (median ms, page clock; 'rt' = it came from the server)")
    d = r["dates"]
    for name, row in d["after"].items():
        target = TARGETS["head_ms"] if name == "head" else TARGETS["switch_short_ms"]
        line = f"  dates T = 11 {name:<6}: {row['median_ms']:>7} {'' if row['in_page'] else 'rt'} " \
               f"{verdict(row['median_ms'], target)}"
        if "before" in d and name in d["before"]:
            b = d["before"][name]["median_ms"]
            line += f"; before {b} ms ({b / max(row['median_ms'], 0.1):.1f}x)"
        print(line)
    lengths = {str(k): v for k, v in r["gpt2_small"].items() if str(k).isdigit()}
    for T, row in lengths.items():
        for name in ("head", "layer", "stage"):
            if name in row:
                target = TARGETS["head_ms"] if name == "head" else (
                    TARGETS["switch_short_ms"] if int(T) <= SHORT_T else TARGETS["layer_any_ms"])
                x = row[name]
                print(f"  GPT-2-small-shaped T = {T} {name:<6}: {x['median_ms']:>7} "
                      f"{'' if x['in_page'] else 'rt'} {verdict(x['median_ms'], target)}{load_note(row)}")
        if "far_layer" in row:
            f = row["far_layer"]
            print(f"  GPT-2-small-shaped T = {T} far layer {f['from']} -> {f['to']}: {f['ms']} ms "
                  f"{'' if f['in_page'] else '(round trip)'}")
    if "bertviz" in r["gpt2_small"]:
        b = r["gpt2_small"]["bertviz"]
        ours = lengths["32"]["head"]["median_ms"]
        print(f"  BertViz head_view T = 32 head switch: {b['median_ms']} ms; this app's head change at T = 32: "
              f"{ours} ms ({'ok' if ours <= b['median_ms'] else 'MISSED'}: at most BertViz's, same Chromium run)")
    for T, row in r.get("llama_4x8", {}).items():
        if not str(T).isdigit():
            continue
        for name in ("head", "layer"):
            x = row[name]
            target = TARGETS["head_ms"] if name == "head" else TARGETS["layer_any_ms"]
            print(f"  Llama-shaped T = {T} {name:<6}: {x['median_ms']:>7} {'' if x['in_page'] else 'rt'} "
                  f"{verdict(x['median_ms'], target)}{load_note(row)}")
    t = r["training"]
    a = t["after"]
    line = (f"  Training slider (induction): {a['step']['median_ms']} ms a step (max {a['step']['max_ms']}); "
            f"20 presses 50 ms apart: the last step drawn {a['after_last_key_ms']} ms after the last key")
    if "before" in t:
        b = t["before"]
        line += (f"; before {b['step']['median_ms']} ms a step, the last map {b['after_last_key_ms']} ms after the "
                 f"last key ({b['step']['median_ms'] / max(a['step']['median_ms'], 0.1):.0f}x a step)")
    print(line)


if __name__ == "__main__":
    main()
