"""Every benchmark, one command: `python -m benchmarks` (tables printed, JSON in benchmarks/results/).

    model.json    forward with and without capture (T = 32..1024), memory of one capture (T = 512, 1024)
    app.json      inspector server time of a layer/head/kind/stage change (AppTest), chart payload bytes per cell
    browser.json  cold start and source change -> updated heatmap in headless Chromium (T = 32, 128, 512)
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = [["-m", "benchmarks.bench_model"], ["benchmarks/bench_app.py"], ["-m", "benchmarks.bench_browser"]]


def main() -> int:
    failed = []
    for step in STEPS:
        print(f"\n=== python {' '.join(step)}", flush=True)
        if subprocess.run([sys.executable, *step], cwd=ROOT).returncode != 0:
            failed.append(" ".join(step))
    if failed:
        print(f"\nfailed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
