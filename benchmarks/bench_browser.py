"""What a user waits for, measured in headless Chromium against `streamlit run app.py`.

(e) cold start: server launch -> first map drawn, on the shipped default model;
(d) source change (from the Ctrl+Enter keydown, on the page's clock) -> updated map drawn, at T = 32, 128,
    512 tokens (source and target), on a long-context checkpoint made here (char tokenizer, demo size, max_len
    1024; random weights: the cost of a trace does not depend on what the model learned). Teacher forcing fixes
    the target length, so T is exact;
(g) a GPT-2-small-shaped model (12 x 12 heads, random weights): first map after a new input at T = 128, 512, 1024,
    head and layer changes through the page's selectors (a rerun each) at T = 128 and 1024, from the option's click
    on the page's clock, and the server's peak memory; the same on the shipped dates model. (The map's own buttons
    change head, layer, kind and stage without a rerun: benchmarks/bench_switch.py.)

    python -m benchmarks.bench_browser     # prints a table, writes benchmarks/results/browser.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from model import ModelConfig, Tokenizer, Transformer, save_checkpoint
from tests.e2e_support import chromium, streamlit_server, wait_idle

RESULTS = Path(__file__).parent / "results"
TARGETS_MS = {128: 300.0, 512: 1000.0}
COLD_START_TARGET_S = 10.0
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def make_long_checkpoint(root: Path) -> Path:
    tok = Tokenizer.train([ALPHABET + " "], level="char")
    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, d_model=128, n_heads=4,
                      n_encoder_layers=2, n_decoder_layers=2, d_ff=512, dropout=0.0, max_len=1024)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # greedy decoding of the page's first (default) source stops at once
        model.generator.bias[cfg.eos_id] = 100.0
    return save_checkpoint(root / "long", model, tok, tok, {"task": "benchmark (random weights)"})


def text_of(n: int, shift: int) -> str:
    return "".join(ALPHABET[(i * 7 + shift) % 26] for i in range(n))


# the map the canvas shows: its shape, and which map and head (a new text, layer or head is another key)
FINGERPRINT_JS = """() => {
    const s = window.__attnCanvasStats && window.__attnCanvasStats.map;
    const m = s && s.draws > 0 && s.shown && s.shown();
    if (!m) return null;
    return {rows: m.rows, cols: m.cols, key: m.overview + ':' + m.head + ':' + m.values.length};
}"""


def arm_js(event: str, condition: str) -> str:
    """Page script: the clock starts at the first ``event`` matching ``condition`` (on the browser's clock) and
    stops at the first animation frame in which the canvas shows another map (it draws before that frame)."""
    return f"""() => {{
    const fingerprint = {FINGERPRINT_JS};
    const before = fingerprint();
    window.__bench = {{start: null, end: null}};
    document.addEventListener('{event}', e => {{
        if (({condition}) && window.__bench.start === null) window.__bench.start = performance.now();
    }}, {{capture: true}});
    const tick = () => {{
        const f = fingerprint();
        if (window.__bench.start !== null && f !== null && (before === null || f.key !== before.key)) {{
            window.__bench.end = performance.now();
        }} else {{
            requestAnimationFrame(tick);
        }}
    }};
    requestAnimationFrame(tick);
}}"""


ARM_JS = arm_js("keydown", "e.key === 'Enter' && e.ctrlKey")  # from the Ctrl+Enter that commits a text
ARM_CLICK_JS = arm_js("pointerup", "e.target.closest('[role=option]')")  # from the click on a selectbox option


def map_shape_js() -> str:
    return (f"([rows, cols]) => {{ const f = ({FINGERPRINT_JS})();"
            " return f !== null && f.rows === rows && f.cols === cols; }")


def commit_text(page, label: str, text: str) -> None:
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(text)
    box.press("Control+Enter" if box.evaluate("e => e.tagName") == "TEXTAREA" else "Enter")


def cold_start() -> float:
    t0 = time.perf_counter()
    with streamlit_server() as url, chromium() as page:
        page.goto(url)
        page.wait_for_selector("canvas.attn-map[data-drawn]", timeout=120_000)
        return time.perf_counter() - t0


def source_change(lengths: list[int], repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_long_checkpoint(Path(tmp))
        with streamlit_server(env={"INSPECTOR_CHECKPOINTS": tmp}) as url, chromium() as page:
            page.goto(url)
            try:
                wait_idle(page, 120_000)
            except Exception:
                page.screenshot(path="/tmp/bench_browser_fail.png", full_page=True)
                raise
            page.get_by_text("type a target (teacher forcing)").click()
            for T in lengths:
                n = T - 1  # + [EOS] on the source, [BOS] + text on the decoder input
                commit_text(page, "Target text (the decoder reads it, shifted right)", text_of(n, 99))
                commit_text(page, "Source text", text_of(n, 98))
                page.wait_for_function(map_shape_js(), arg=[T, T], timeout=120_000)
                wait_idle(page, 120_000)
                times = []
                for r in range(repeats):  # a new text each time: nothing cached
                    box = page.get_by_role("textbox", name="Source text", exact=True)
                    box.fill(text_of(n, r))  # typing is the user's time, not the app's
                    page.evaluate(ARM_JS)
                    box.press("Control+Enter")  # the commit: the clock starts in the page at this keydown
                    page.wait_for_function("() => window.__bench.end !== null", timeout=120_000)
                    times.append(page.evaluate("() => window.__bench.end - window.__bench.start"))
                    wait_idle(page, 120_000)
                rows.append({"T": T, "median_ms": round(statistics.median(times), 1),
                             "min_ms": round(min(times), 1), "max_ms": round(max(times), 1), "repeats": repeats,
                             "target_ms": TARGETS_MS.get(T)})
    return rows


def timed_choice(page, label: str, option: str) -> float:
    """ms from the click on ``option`` of the selectbox ``label`` to the redrawn map."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    page.evaluate(ARM_CLICK_JS)
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_function("() => window.__bench.end !== null", timeout=120_000)
    ms = page.evaluate("() => window.__bench.end - window.__bench.start")
    wait_idle(page, 120_000)
    return ms


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of the server process and its children (MiB), from /proc."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            total += int(line.split()[1])
    return round(total / 1024, 1)


def choice_changes(page, n_heads: int, n_layers: int, repeats: int) -> dict:
    heads = [timed_choice(page, "Head", f"head {(i + 1) % n_heads}") for i in range(repeats)]
    layers = [timed_choice(page, "Layer", str(i % n_layers)) for i in range(repeats)]
    return {"head_change_ms": round(statistics.median(heads), 1),
            "layer_change_ms": round(statistics.median(layers), 1),
            "head_change_max_ms": round(max(heads), 1), "layer_change_max_ms": round(max(layers), 1)}


def gpt2_small_session(lengths: list[int], repeats: int) -> dict:
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import gpt2_small, text_of_tokens

    path = gpt2_small()
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    rows, changes = [], {}
    with tempfile.TemporaryDirectory() as empty, streamlit_server(
            env={"INSPECTOR_CHECKPOINTS": empty, "INSPECTOR_MODELS": str(path.parent)}) as url, chromium() as page:
        page.goto(url)
        wait_idle(page, 300_000)
        for T in lengths:
            times = []
            for r in range(repeats if T <= 512 else max(2, repeats // 2)):
                box = page.get_by_role("textbox", name="Text", exact=True)
                box.fill(text_of_tokens(tok, T, shift=r + 1))
                page.evaluate(ARM_JS)
                box.press("Control+Enter")
                page.wait_for_function("() => window.__bench.end !== null", timeout=300_000)
                times.append(page.evaluate("() => window.__bench.end - window.__bench.start"))
                wait_idle(page, 300_000)
            rows.append({"T": T, "first_map_median_ms": round(statistics.median(times), 1),
                         "max_ms": round(max(times), 1), "repeats": len(times), "target_ms": GPT2_FIRST_MAP_MS[T]})
            if T in (128, 1024):
                changes[T] = {**choice_changes(page, 12, 12, 3), "target_ms": GPT2_CHANGE_MS[T]}
        peak = peak_rss_mib(url.pid)
    return {"first_map": rows, "changes": changes, "server_peak_rss_MiB": peak,
            "server_peak_target_MiB": 1.5 * 1024}


def dates_changes(repeats: int) -> dict:
    with streamlit_server() as url, chromium() as page:
        page.goto(url)
        wait_idle(page, 120_000)
        return choice_changes(page, 4, 2, repeats)


GPT2_FIRST_MAP_MS = {128: 1000.0, 512: 2000.0, 1024: 4000.0}
GPT2_CHANGE_MS = {128: 150.0, 1024: 400.0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-gpt2", action="store_true")
    args = ap.parse_args(argv)
    cold = cold_start()
    updates = source_change(args.lengths, args.repeats)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads()},
        "cold_start_s": round(cold, 2), "cold_start_target_s": COLD_START_TARGET_S,
        "source_change": updates, "dates_changes": dates_changes(5),
    }
    if not args.skip_gpt2:
        result["gpt2_small"] = gpt2_small_session([128, 512, 1024], 3)
    print(f"cold start (launch -> first map): {cold:.1f} s "
          f"({'ok' if cold <= COLD_START_TARGET_S else 'MISSED'}, target {COLD_START_TARGET_S:.0f} s)")
    print("source change -> updated map drawn, teacher forcing, source = target = T tokens")
    print(f"{'T':>6} | {'median ms':>10} | {'min':>8} | {'max':>8} | target")
    for r in updates:
        verdict = "" if r["target_ms"] is None else \
            f"{r['target_ms']:.0f} ms {'ok' if r['median_ms'] <= r['target_ms'] else 'MISSED'}"
        print(f"{r['T']:>6} | {r['median_ms']:>10} | {r['min_ms']:>8} | {r['max_ms']:>8} | {verdict}")
    d = result["dates_changes"]
    print(f"dates model, through the selectors: head change {d['head_change_ms']} ms, layer change "
          f"{d['layer_change_ms']} ms "
          f"(median; max {d['head_change_max_ms']} / {d['layer_change_max_ms']})")
    if "gpt2_small" in result:
        g = result["gpt2_small"]
        print("GPT-2-small-shaped (12 x 12 heads): first map after a new input (from the Ctrl+Enter keydown)")
        for r in g["first_map"]:
            ok = "ok" if r["first_map_median_ms"] <= r["target_ms"] else "MISSED"
            print(f"  T = {r['T']:>5}: {r['first_map_median_ms']:>8} ms (max {r['max_ms']}), target "
                  f"{r['target_ms']:.0f} ms {ok}")
        for T, c in g["changes"].items():
            worst = max(c["head_change_ms"], c["layer_change_ms"])
            print(f"  T = {T:>5}: head change {c['head_change_ms']} ms, layer change {c['layer_change_ms']} ms "
                  f"(median), target {c['target_ms']:.0f} ms {'ok' if worst <= c['target_ms'] else 'MISSED'}")
        print(f"  server peak memory: {g['server_peak_rss_MiB']} MiB (target "
              f"{g['server_peak_target_MiB']:.0f} MiB {'ok' if g['server_peak_rss_MiB'] <= 1536 else 'MISSED'})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "browser.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'browser.json'}")


if __name__ == "__main__":
    main()
