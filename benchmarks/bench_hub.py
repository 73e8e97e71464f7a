"""Hub ids (issue 28): scanning a Hugging Face cache of many models, opening a model by id against by path, and a
download from a hub on 127.0.0.1 (tests/fake_hub.py; nothing leaves the machine).

    python -m benchmarks.bench_hub            # table printed, benchmarks/results/hub.json

Run alone (the figures are wall-clock times on a shared machine): the scan of N repositories (config, tokenizer,
tokenizer_config and a small safetensors file each, laid out as huggingface_hub writes them), the kept listing the
sidebar reads on every run, resolving an id (``model.hub.locate``), loading the real all-MiniLM-L6-v2 by id and by
its snapshot's path (median of 3 after a warm-up load), and fetching its 91 MB over loopback.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.pop("HF_HUB_OFFLINE", None)

from tests.fake_hub import FakeHub  # noqa: E402
from tests.hub_cache import MINILM, MINILM_COMMIT, add_model_dir, add_repo, files_of, minilm_dir  # noqa: E402

SMALL = {"config.json": b'{"model_type": "gpt2"}', "model.safetensors": b"x" * 4096, "tokenizer.json": b"{}",
         "tokenizer_config.json": b"{}"}


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def scans(root: Path) -> list[dict]:
    from model.hub.cache import forget_listings, listing, scan

    rows = []
    for n in (200, 500):
        cache = root / f"scan{n}"
        for i in range(n):
            add_repo(cache, f"org/model-{i:03d}", SMALL)
        seconds, found = timed(lambda c=cache: scan(c))
        forget_listings()
        listing(cache)
        kept, _ = timed(lambda c=cache: listing(c), repeat=20)
        rows.append({"repos": n, "scan_s": round(seconds, 3), "listed": len(found.models),
                     "kept_listing_ms": round(kept * 1e3, 3)})
        print(f"scan of {n} repositories: {seconds:.3f} s (median of 3); the kept listing: {kept * 1e3:.3f} ms")
    return rows


def opening(root: Path) -> dict:
    from huggingface_hub import constants

    from model import load
    from model.hub import locate
    from model.hub.cache import forget_listings

    cache = root / "hub"
    snapshot = add_model_dir(cache, MINILM, minilm_dir(), commit=MINILM_COMMIT)
    constants.HF_HUB_CACHE = str(cache)
    forget_listings()
    load(MINILM, "cpu")  # warm-up: torch, transformers and the file cache
    resolve, _ = timed(lambda: locate(MINILM), repeat=20)
    by_id, _ = timed(lambda: load(MINILM, "cpu"))
    by_path, _ = timed(lambda: load(str(snapshot), "cpu"))
    print(f"resolving {MINILM}: {resolve * 1e3:.2f} ms; loading it by id {by_id:.2f} s, by path {by_path:.2f} s "
          "(median of 3, warm)")
    return {"resolve_ms": round(resolve * 1e3, 2), "load_by_id_s": round(by_id, 3), "load_by_path_s": round(by_path, 3)}


def download(root: Path) -> dict:
    hub = FakeHub()
    hub.add(MINILM, files_of(minilm_dir()))
    hub.start()
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(root / "fetched")}
    try:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "model.hub", "get", MINILM, "--allow-download", "--quiet"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - t
    finally:
        hub.stop()
    assert done.returncode == 0, done.stderr
    size = sum(len(hub.repos[MINILM].files[n]) for n in ("config.json", "model.safetensors", "tokenizer.json",
                                                           "tokenizer_config.json"))
    requests = len([r for r in hub.requests if "agent-harnesses" not in r[1]])
    print(f"download of {MINILM} over loopback ({size / 1e6:.1f} MB, {requests} requests): {seconds:.1f} s "
          "for the whole command (Python, huggingface_hub and the checks included)")
    return {"bytes": size, "requests": requests, "command_s": round(seconds, 2)}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        root = Path(tmp)
        out = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
               "cpus": os.cpu_count(), "scan": scans(root), "open": opening(root), "download": download(root)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hub.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
