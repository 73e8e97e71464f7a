"""Every benchmark, one command: `python -m benchmarks` (tables printed, JSON in benchmarks/results/).

    model.json    forward with and without capture (T = 32..1024) on the demo model and a GPT-2-small-shaped one,
                  memory of one capture against its estimate
    analysis.json ranking every head by ablation; rollout and exact flow (shipped models, GPT-2-small-shaped)
    app.json      inspector server time of a layer/head/kind/stage change (AppTest), chart payload bytes per cell
    browser.json  cold start, source change -> updated map, head/layer changes and the server's peak memory, in
                  headless Chromium, on the demo model, the dates model and the GPT-2-small-shaped one
    bertviz.json  BertViz's head_view and model_view against this app on the same tensors in the same Chromium
                  (needs requirements-bench.txt; skipped with a note when BertViz is not installed)
    long.json     long contexts (Llama-shaped, T = 4,096 and 8,192): first pass against the uncaptured forward,
                  memory beyond it, one 256 x 256 window of any stage
    canvas.json   the attention canvas alone (synthetic attention, T = 256 .. 32,768) in headless Chromium
    app_canvas.json  the app's canvas maps (GPT-2-small-shaped at T = 512 / 1,024, Llama-shaped at 4,096)
    first_map.json   a new input's first map in the server's process against the uncaptured forward (GPT-2-small
                  shape); the logits one call keeps at 8,192 tokens (Llama-shaped)
    why.json      head patching, logit lens and knockouts on the GPT-2-small-shaped model
    knockout.json one knocked-out cell at 4,096 and 8,192 tokens: peak memory beyond the traced call, before and after
    atlas.json    corpus atlas builds (examples/s, memory over 10,000 examples) and the Atlas view's queries
    first_use.json  a newcomer's cold start (frame, first heatmap)
    load.json     eight Chromium sessions against one server for three minutes; with --fairness, a new input while
                  four sessions run the logit lens (python -m benchmarks.bench_load --fairness)
    vision.json   image calls: traced against uncaptured, and a capture's memory, on the shipped ViT (shapes) and a
                  ViT-B/16-shaped model at 224 x 224
    switch.json   head, layer, kind and stage changes on the canvas in Chromium (dates, GPT-2-small-shaped up to
                  1,024, Llama-shaped at 8,192), BertViz's head switch at T = 32, the Training slider
    hostile.json  hostile checkpoints: time to refusal and peak memory (run alone: python -m benchmarks.bench_hostile)
    hub.json      hub ids: scanning a cache of 200 / 500 models, resolving an id, loading by id vs by path, a
                  download over loopback (run alone: python -m benchmarks.bench_hub)
    notebook.json the notebook widget against CircuitsVis's attention_heads (T = 32 / 1,024 / 8,192) in JupyterLab
                  and Chromium: payload bytes per drawn cell, time to first draw (needs requirements-bench.txt)
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = [["-m", "benchmarks.bench_model"], ["benchmarks/bench_app.py"], ["-m", "benchmarks.bench_analysis"],
         ["-m", "benchmarks.bench_browser"], ["-m", "benchmarks.bench_bertviz"], ["-m", "benchmarks.bench_long"],
         ["-m", "benchmarks.bench_canvas"], ["-m", "benchmarks.bench_app_canvas"],
         ["-m", "benchmarks.bench_first_map"], ["-m", "benchmarks.bench_why"], ["-m", "benchmarks.bench_knockout"],
         ["-m", "benchmarks.bench_atlas"], ["-m", "benchmarks.bench_first_use"], ["-m", "benchmarks.bench_load"],
         ["-m", "benchmarks.bench_vision"], ["-m", "benchmarks.bench_switch"], ["-m", "benchmarks.bench_notebook"]]
OPTIONAL = {"benchmarks.bench_bertviz": "bertviz", "benchmarks.bench_notebook": "circuitsvis"}  # step -> package


def main() -> int:
    failed = []
    for step in STEPS:
        package = OPTIONAL.get(step[-1])
        if package is not None and importlib.util.find_spec(package) is None:
            print(f"\n=== {step[-1]} skipped ({package} is missing): pip install -r requirements-bench.txt", flush=True)
            continue
        print(f"\n=== python {' '.join(step)}", flush=True)
        if subprocess.run([sys.executable, *step], cwd=ROOT).returncode != 0:
            failed.append(" ".join(step))
    if failed:
        print(f"\nfailed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
