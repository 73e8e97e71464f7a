"""Opening a model: ``load(path)`` -> a pipeline (model.api.Pipeline) with ``run`` (the traced call of model.call),
``generate`` and ``decode`` (the devices it can run on are model.runtime's).

Two kinds of pipeline: the project's own transformer (model.own.pipeline) and models in the Hugging Face layout run by
transformers (model.hf). ``load`` picks the right one from the directory; a hub id (``org/name``) opens from the
Hugging Face cache (model.hub).
"""

from __future__ import annotations

import os
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


def modality_of(path: str | Path, policy: PathPolicy | None = None) -> str:
    """What the model in directory ``path`` reads, from its config.json alone, decided as ``load`` decides which
    pipeline to build: "image" for this project's vision transformer (``"arch": "vit"``) or a transformers family
    that model.hf.families declares an image model (transformers is imported only then), else "text". Equals the
    loaded pipeline's ``info.modality``; for a directory that cannot be read, "text" (loading it says why)."""
    if is_hf_directory(path, policy):
        from .hf.vision import vision_family

        return "image" if vision_family(path, policy) is not None else "text"
    return "image" if is_vision_checkpoint(path, policy) else "text"


def model_dir(path: str | Path, policy: PathPolicy | None = None, allow_download: bool = False) -> Path:
    """The directory ``load`` opens: ``path`` itself when it is one (or a ``Path``), else a hub id resolved through
    the Hugging Face cache (model.hub.locate), downloaded first when allowed."""
    if isinstance(path, Path) or os.path.isdir(path):
        return Path(path)
    from .hub import locate_or_download, looks_like_hub_id

    if not looks_like_hub_id(path):
        return Path(path)
    return locate_or_download(path, policy, allow_download=allow_download).path


def load(path: str | Path, device: str | torch.device = "auto", policy: PathPolicy | None = None,
         allow_download: bool = False):
    """Load a model onto ``device`` ("auto" = cuda, then mps, then cpu): a checkpoint directory, or a hub id
    (``"gpt2"``, ``"org/name"``, ``"org/name@revision"``) from the Hugging Face cache, resolved as transformers'
    ``from_pretrained(..., local_files_only=True)`` does (main -> refs/main -> its snapshot). An id the cache lacks is
    a CheckpointError saying how to get it; ``allow_download=True`` (or INSPECTOR_ALLOW_DOWNLOAD=1) downloads it
    first, with a progress bar (never under INSPECTOR_PUBLIC=1).

    This project's checkpoints give a ``TransformerPipeline`` (a vision one, config.json's arch "vit", a
    ``VisionPipeline``); a Hugging Face directory (config.json with a model_type,
    model.safetensors, tokenizer.json) gives a ``model.hf.HFPipeline`` (transformers is imported only then).
    ``policy`` (model.safe.paths.PathPolicy): every file is opened only if its real path lies inside the allowed roots.
    """
    dev = resolve_device(device)
    path = model_dir(path, policy, allow_download)
    if is_hf_directory(path, policy):
        from .hf import load_hf  # lazy: the app's cold start on its own models does not pay for transformers
        from .runtime import release_freed_memory

        pipe = load_hf(path, device=dev, policy=policy)
        release_freed_memory()  # what loading freed (about 0.6 x the weights) would stay with this thread's arena
        return pipe
    if is_vision_checkpoint(path, policy):
        config, model, meta = load_vision_checkpoint(path, device=dev, policy=policy)
        return VisionPipeline(config, model, meta, str(path))
    config, model, src_tok, tgt_tok, meta = load_checkpoint(path, device=dev, policy=policy)
    return TransformerPipeline(config, model, src_tok, tgt_tok, meta, str(path))


__all__ = ["is_hf_directory", "load", "modality_of", "model_dir"]
