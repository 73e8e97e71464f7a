"""Image calls: the traced call against the uncaptured one, and the memory a capture holds, for two vision models.

- the shipped ViT (checkpoints/shapes: 64 x 64 images, 8-pixel patches, 65 tokens, 3 layers x 4 heads, d_model 64);
- a ViT-B/16-shaped transformers model (ViTModel, random weights: 12 layers x 12 heads, d_model 768, 224 x 224
  images, 197 tokens) with its PIL image processor, built once into benchmarks/.cache/vit_b16 (shipped nowhere).

Each through ``pipe.run(image)`` as the app calls it: the image processor, then one forward with full capture, lazy
capture or none (``capture=False``: the same call without recording, the model's SDPA path); medians of interleaved
repeats.

    python -m benchmarks.bench_vision            # prints a table, writes benchmarks/results/vision.json
    python -m benchmarks.bench_vision --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from model.runtime import configure_cpu

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache" / "vit_b16"
SHAPES = ROOT / "checkpoints" / "shapes"


def vit_b16() -> Path:
    """ViT-B/16's shape (ViTConfig's defaults) with random weights and ViT's PIL image processor, built once."""
    if (CACHE / "model.safetensors").is_file() and (CACHE / "preprocessor_config.json").is_file():
        return CACHE
    import transformers as tf

    torch.manual_seed(0)
    model = tf.ViTModel(tf.ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, image_size=224, patch_size=16))
    CACHE.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(CACHE)
    tf.ViTImageProcessorPil(size={"height": 224, "width": 224}).save_pretrained(CACHE)
    return CACHE


def photo(size: int = 256, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 image (not the model's size: the processor resizes it)."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def time_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def bench_latency(path: Path, image: np.ndarray, repeats: int) -> dict:
    """Median ms of the processor alone, and of pipe.run with no, lazy and full capture (interleaved)."""
    from model import estimate_bytes, load
    from model.call import open_image

    pipe = load(path, "cpu")
    pil = open_image(image)
    runs = {"no_capture": lambda: pipe.run(image, capture=False), "lazy": lambda: pipe.run(image, mode="lazy"),
            "full": lambda: pipe.run(image, mode="full")}
    for fn in runs.values():  # warm-up: the allocator keeps a capture's buffers for the next one
        fn()
    times: dict[str, list[float]] = {k: [] for k in ["processor", *runs]}
    for _ in range(repeats):
        times["processor"].append(time_ms(lambda: pipe.image_input(pil)))
        for k, fn in runs.items():
            times[k].append(time_ms(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    full = pipe.run(image, mode="full")
    T = len(full.source.ids)
    return {"model": path.name, "tokens": T, "layers": pipe.info.n_encoder_layers, "heads": pipe.info.n_heads,
            "d_model": pipe.info.d_model, "parameters": pipe.info.parameters,
            **{f"{k}_ms": round(v, 1) for k, v in med.items()},
            "full_ratio": round(med["full"] / med["no_capture"], 2),
            "lazy_ratio": round(med["lazy"] / med["no_capture"], 2),
            "trace_MiB": round(full.trace.nbytes() / 2**20, 2),
            "estimate_MiB": round(estimate_bytes(pipe, T, 0) / 2**20, 2), "repeats": repeats}


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _memory_child(path: str, mode: str) -> None:
    """In a fresh process: the peak RSS growth of one call (after an uncaptured one), and what its trace holds."""
    from model import load

    pipe = load(path, "cpu")
    image = photo()
    pipe.run(image, capture=False)
    base = _status_bytes("VmRSS")
    res = pipe.run(image, mode=mode)
    held = res.trace.nbytes() if mode == "full" else res.trace.inputs_nbytes()
    print(json.dumps({"rss_growth": _status_bytes("VmHWM") - base, "held": held}))


def bench_memory(path: Path) -> list[dict]:
    rows = []
    for mode in ("full", "lazy"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_vision", "--memory-child", str(path), mode],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"model": path.name, "capture": mode, "held_MiB": round(got["held"] / 2**20, 2),
                     "peak_rss_growth_MiB": round(got["rss_growth"] / 2**20, 1)})
    return rows


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = [" | ".join(f"{c:>13}" for c in cols)]
    lines += [" | ".join(f"{r.get(c, '—')!s:>13}" for c in cols) for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ATTN_TORCH_THREADS", "1")),
                    help="torch intra-op threads (default: as the app, ATTN_TORCH_THREADS or 1)")
    ap.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    settings = configure_cpu(args.threads)  # what the app sets at start-up
    if args.memory_child:
        _memory_child(*args.memory_child)
        return
    repeats = 5 if args.quick else args.repeats
    big = vit_b16()
    latency = [bench_latency(SHAPES, photo(64), repeats), bench_latency(big, photo(), max(3, repeats // 4))]
    memory = bench_memory(SHAPES) + bench_memory(big)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "torch": torch.__version__, **settings},
              "latency": latency, "memory": memory}
    print(f"pipe.run(image), batch 1, median ms; {settings}")
    print(table(latency))
    print("\nmemory of one call")
    print(table(memory))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vision.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'vision.json'}")


if __name__ == "__main__":
    main()
