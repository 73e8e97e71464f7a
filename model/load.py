"""Opening a model: ``load(path)`` -> a pipeline (model.api.Pipeline) with ``run`` (the traced call of model.call),
``generate`` and ``decode`` (the devices it can run on are model.runtime's).

Two kinds of pipeline: the project's own transformer (model.own.pipeline) and models in the Hugging Face layout run by
transformers (model.hf). ``load`` picks the right one from the directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .own.checkpoint import is_vision_checkpoint, load_checkpoint, load_vision_checkpoint
from .own.pipeline import TransformerPipeline, VisionPipeline
from .runtime import resolve_device
from .safe.files import read_json_file

if TYPE_CHECKING:
    from .safe.paths import PathPolicy


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

    This project's checkpoints give a ``TransformerPipeline`` (a vision one, config.json's arch "vit", a
    ``VisionPipeline``); a Hugging Face directory (config.json with a model_type,
    model.safetensors, tokenizer.json) gives a ``model.hf.HFPipeline`` (transformers is imported only then).
    ``policy`` (model.safe.paths.PathPolicy): every file is opened only if its real path lies inside the allowed roots.
    """
    dev = resolve_device(device)
    if is_hf_directory(path, policy):
        from .hf import load_hf  # lazy: the app's cold start on its own models does not pay for transformers

        return load_hf(path, device=dev, policy=policy)
    if is_vision_checkpoint(path, policy):
        config, model, meta = load_vision_checkpoint(path, device=dev, policy=policy)
        return VisionPipeline(config, model, meta, str(path))
    config, model, src_tok, tgt_tok, meta = load_checkpoint(path, device=dev, policy=policy)
    return TransformerPipeline(config, model, src_tok, tgt_tok, meta, str(path))


__all__ = ["is_hf_directory", "load"]
