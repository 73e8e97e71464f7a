"""Inspector speed and payload, measured with Streamlit's AppTest.

Server time = the script run (`ScriptRunner._run_script`), with one shared ScriptCache as in `streamlit run`
(AppTest otherwise recompiles the page on every run). Payload = the chart spec Streamlit sends (`el.proto.spec`).

    .venv/bin/python benchmarks/bench_app.py          # prints a table, writes benchmarks/results/app.json
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly.io as pio
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streamlit.testing.v1.app_test as app_test  # noqa: E402
from streamlit.runtime.scriptrunner import script_runner  # noqa: E402
from streamlit.runtime.scriptrunner.script_cache import ScriptCache  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

import viz  # noqa: E402
from model import ModelConfig, Tokenizer, Transformer, TransformerPipeline, save_checkpoint  # noqa: E402

TARGET_MS = 50.0
REPEATS = 15
RESULTS = ROOT / "benchmarks" / "results" / "app.json"

_script_times: list[float] = []
_original_run_script = script_runner.ScriptRunner._run_script


def _timed_run_script(self, rerun_data):
    t = time.perf_counter()
    try:
        return _original_run_script(self, rerun_data)
    finally:
        _script_times.append(time.perf_counter() - t)


script_runner.ScriptRunner._run_script = _timed_run_script
_shared_cache = ScriptCache()
app_test.ScriptCache = lambda: _shared_cache  # bytecode compiled once, as in the server

_model_runs = []
_original_pipeline_run = TransformerPipeline.run


def _counting_run(self, *args, **kwargs):
    _model_runs.append(1)
    return _original_pipeline_run(self, *args, **kwargs)


TransformerPipeline.run = _counting_run


def long_checkpoint(path: Path, max_len: int = 320) -> tuple[str, str, str]:
    """A random-weight checkpoint that accepts ~300 tokens, and a source/target of that length."""
    torch.manual_seed(0)
    words = [f"w{i}" for i in range(50)]
    src = Tokenizer.train([" ".join(words)], level="word")
    tgt = Tokenizer.train(["abcdefghij"], level="char")
    cfg = ModelConfig(src_vocab_size=src.vocab_size, tgt_vocab_size=tgt.vocab_size, d_model=64, n_heads=4,
                      n_encoder_layers=2, n_decoder_layers=2, d_ff=128, max_len=max_len)
    save_checkpoint(path, Transformer(cfg).eval(), src, tgt, {"task": "bench-long"})
    return str(path), " ".join(words[i % 50] for i in range(299)), "abcdefghij" * 29 + "abcdefgh"


def fixture_checkpoint(path: Path) -> str:
    torch.manual_seed(0)
    src = Tokenizer.train(["Saturday, November 21, 2026"], level="word")
    tgt = Tokenizer.train(["2026-11-21"], level="char")
    cfg = ModelConfig(src_vocab_size=src.vocab_size, tgt_vocab_size=tgt.vocab_size, d_model=128, n_heads=4,
                      n_encoder_layers=2, n_decoder_layers=2, d_ff=256, max_len=32)
    save_checkpoint(path, Transformer(cfg).eval(), src, tgt, {"task": "bench"})
    return str(path)


def wire_bytes(z: dict) -> int:
    """Bytes of a typed array in the spec Streamlit sends: Plotly's to_json escapes "/" as \\u002f."""
    return len(json.dumps(z).replace("/", "\\u002f"))


def spec_stats(at) -> dict:
    """Bytes of the first chart's spec, and of its heatmap matrix, per cell."""
    spec_text = at.get("plotly_chart")[0].proto.spec
    spec = json.loads(spec_text)
    z = spec["data"][0]["z"]
    cells = int(np.prod([int(s) for s in str(z["shape"]).split(",")]))
    return {"shape": z["shape"], "dtype": z["dtype"], "spec_bytes": len(spec_text),
            "matrix_bytes_per_cell": round(wire_bytes(z) / cells, 3),
            "spec_bytes_per_cell": round(len(spec_text) / cells, 3)}


def measure(at, change, n: int = REPEATS) -> dict:
    """Median / p90 server time (ms) of the rerun after each change, and AppTest wall time."""
    server, wall = [], []
    for i in range(n):
        change(at, i)
        _script_times.clear()
        t = time.perf_counter()
        at.run()
        wall.append(time.perf_counter() - t)
        server.append(sum(_script_times))
        assert not at.exception, [e.value for e in at.exception]
    ms = sorted(1000 * s for s in server)
    return {"server_ms_median": round(statistics.median(ms), 1), "server_ms_p90": round(ms[int(0.9 * (n - 1))], 1),
            "apptest_wall_ms_median": round(1000 * statistics.median(wall), 1)}


def bench_model(path: str, label: str, source: str | None = None, target: str | None = None) -> dict:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["model_path"] = path
    if source is not None:
        at.session_state["source"] = source
    if target is not None:
        at.session_state["target_mode"] = "type a target (teacher forcing)"
        at.session_state["target"] = target
    _script_times.clear()
    t = time.perf_counter()
    at.run()
    cold = {"first_run_wall_ms": round(1000 * (time.perf_counter() - t), 1)}
    assert not at.exception, [e.value for e in at.exception]
    runs_before = len(_model_runs)
    n_layers = len(at.selectbox(key="layer").options)
    n_heads = len(at.selectbox(key="head").options) - 1
    rows = {
        "layer change": measure(at, lambda a, i: a.selectbox(key="layer").set_value(i % n_layers)),
        "head change": measure(at, lambda a, i: a.selectbox(key="head").set_value(i % n_heads)),
        "kind change": measure(at, lambda a, i: a.radio(key="kind").set_value(
            ["cross", "encoder self", "decoder masked self"][i % 3])),
        "stage change": measure(at, lambda a, i: a.selectbox(key="stage").set_value(
            ["weights", "masked", "scaled", "scores"][i % 4])),
    }
    at.radio(key="kind").set_value("cross")
    at.selectbox(key="stage").set_value("weights")
    at.run()
    payload = spec_stats(at)
    model_runs_during_changes = len(_model_runs) - runs_before
    at.session_state["view"] = "Step by step"
    rows["step-by-step view (all panels)"] = measure(at, lambda a, i: a.selectbox(key="head").set_value(i % n_heads), 5)
    at.session_state["view"] = "Attention map"
    rows["new source (runs the model)"] = measure(
        at, lambda a, i: a.text_area(key="source").input((source or "Saturday, November 21, 2026") + " " * (i + 1)), 3)
    return {"model": label, "cold": cold, "changes": rows, "payload": payload,
            "model_runs_during_selection_changes": model_runs_during_changes}


def synthetic_payloads() -> list[dict]:
    """What one attention map costs on the wire at several lengths (float32 up to 256, uint8 above)."""
    rng = np.random.default_rng(0)
    out = []
    for T in (16, 64, 128, 256, 300, 512, 1024):
        logits = rng.normal(size=(T, T)) * 2
        causal = np.tril(np.ones((T, T), bool))
        softmax = np.where(causal, np.exp(logits), 0)
        cases = {"uniform 0..1 (worst case)": (rng.random((T, T)), None),
                 "causal softmax rows": (softmax / softmax.sum(1, keepdims=True), {"causal": ~causal})}
        labels = [f"tok{i}" for i in range(T)]
        for case, (w, mask) in cases.items():
            t = time.perf_counter()
            fig = viz.attention_heatmap(w.astype(np.float32), labels, labels, reasons=mask)
            text = pio.to_json(fig.to_dict(), validate=False)
            ms = 1000 * (time.perf_counter() - t)
            z = json.loads(text)["data"][0]["z"]
            out.append({"T": T, "case": case, "dtype": z["dtype"],
                        "matrix_bytes_per_cell": round(wire_bytes(z) / T ** 2, 3),
                        "spec_bytes_per_cell": round(len(text) / T ** 2, 3), "spec_bytes": len(text),
                        "build_and_serialise_ms": round(ms, 2)})
    return out


def main() -> None:
    results = {"target_server_ms": TARGET_MS, "models": []}
    dates = ROOT / "checkpoints" / "dates"
    with tempfile.TemporaryDirectory() as tmp:
        if (dates / "config.json").is_file():
            results["models"].append(bench_model(str(dates), "checkpoints/dates"))
        else:
            results["models"].append(bench_model(fixture_checkpoint(Path(tmp) / "fixture"),
                                                 "random-weight fixture shaped like dates (dates not trained)"))
        path, src, tgt = long_checkpoint(Path(tmp) / "long")
        results["models"].append(bench_model(path, "random-weight, 300 source x 300 target tokens", src, tgt))
    results["synthetic_payloads"] = synthetic_payloads()
    results["torch_threads"] = torch.get_num_threads()

    print(f"{'model':<48} {'change':<32} {'server ms (median / p90)':>26} {'AppTest wall ms':>16}")
    for m in results["models"]:
        for change, r in m["changes"].items():
            exempt = "runs the model" in change or "step" in change  # not selection changes
            ok = "ok" if r["server_ms_median"] <= TARGET_MS or exempt else "SLOW"
            print(f"{m['model'][:48]:<48} {change:<32} {r['server_ms_median']:>12.1f} / {r['server_ms_p90']:<10.1f}"
                  f" {r['apptest_wall_ms_median']:>14.1f}  {ok}")
        p = m["payload"]
        print(f"{'':<48} payload {p['shape']} {p['dtype']}: {p['matrix_bytes_per_cell']} B/cell matrix, "
              f"{p['spec_bytes_per_cell']} B/cell whole spec ({p['spec_bytes']} B); model runs during selection "
              f"changes: {m['model_runs_during_selection_changes']}")
    print(f"\n{'T':>5} {'case':<26} {'dtype':>6} {'matrix B/cell':>14} {'spec B/cell':>12} {'spec bytes':>11}"
          f" {'build+json ms':>14}")
    for p in results["synthetic_payloads"]:
        print(f"{p['T']:>5} {p['case']:<26} {p['dtype']:>6} {p['matrix_bytes_per_cell']:>14} "
              f"{p['spec_bytes_per_cell']:>12} {p['spec_bytes']:>11} {p['build_and_serialise_ms']:>14}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
