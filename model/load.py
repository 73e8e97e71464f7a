"""Opening a model: ``load(path)`` -> a pipeline (model.api.Pipeline) with ``run`` (the traced call of model.call),
``generate`` and ``decode``; and the devices it can run on.

Two kinds of pipeline: the project's own transformer (model.own.pipeline) and models in the Hugging Face layout run by
transformers (model.hf). ``load`` picks the right one from the directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .own.checkpoint import load_checkpoint
from .own.pipeline import TransformerPipeline
from .safe.files import read_json_file

if TYPE_CHECKING:
    from .safe.paths import PathPolicy


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda, then mps, then cpu; an explicit device that is not available is a ValueError."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda or mps")
    return dev


def available_devices() -> list[str]:
    """Device names that work on this machine, "cpu" always included."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def is_hf_directory(path: str | Path, policy: PathPolicy | None = None) -> bool:
    """A Hugging Face layout directory: its config.json names a ``model_type`` (ours never does)."""
    config = Path(path) / "config.json"
    try:
        data = read_json_file(config, policy=policy)
    except Exception:
        return False
    return isinstance(data, dict) and "model_type" in data


def load(path: str | Path, device: str | torch.device = "auto", policy: PathPolicy | None = None):
    """Load a checkpoint directory onto ``device`` ("auto" = cuda, then mps, then cpu).

    This project's checkpoints give a ``TransformerPipeline``; a Hugging Face directory (config.json with a model_type,
    model.safetensors, tokenizer.json) gives a ``model.hf.HFPipeline`` (transformers is imported only then).
    ``policy`` (model.safe.paths.PathPolicy): every file is opened only if its real path lies inside the allowed roots.
    """
    dev = resolve_device(device)
    if is_hf_directory(path, policy):
        from .hf import load_hf  # lazy: the app's cold start on its own models does not pay for transformers
        from .runtime import release_freed_memory

        pipe = load_hf(path, device=dev, policy=policy)
        release_freed_memory()  # what loading freed (about 0.6 x the weights) would stay with this thread's arena
        return pipe
    config, model, src_tok, tgt_tok, meta = load_checkpoint(path, device=dev, policy=policy)
    return TransformerPipeline(config, model, src_tok, tgt_tok, meta, str(path))


__all__ = ["available_devices", "is_hf_directory", "load", "resolve_device"]
