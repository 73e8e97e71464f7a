"""Checkpoints as a directory: config.json, model.safetensors, tokenizer file(s), meta.json. Never unpickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .tokenizer import Tokenizer
from .transformer import Transformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"  # when source and target share one tokenizer
SOURCE_TOKENIZER_FILE = "source_tokenizer.json"  # when they differ
TARGET_TOKENIZER_FILE = "target_tokenizer.json"


class CheckpointError(Exception):
    """A checkpoint directory that cannot be loaded; the message names the file and the problem."""


def save_checkpoint(path: str | Path, model: Transformer, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory (created if needed); returns its path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
    for stale in (TOKENIZER_FILE, SOURCE_TOKENIZER_FILE, TARGET_TOKENIZER_FILE):
        (path / stale).unlink(missing_ok=True)
    if src_tokenizer.to_str() == tgt_tokenizer.to_str():
        src_tokenizer.save(path / TOKENIZER_FILE)
    else:
        src_tokenizer.save(path / SOURCE_TOKENIZER_FILE)
        tgt_tokenizer.save(path / TARGET_TOKENIZER_FILE)
    (path / META_FILE).write_text(json.dumps(meta or {}, indent=2, default=str) + "\n")
    return path


def _read_json(file: Path) -> Any:
    if not file.is_file():
        raise CheckpointError(f"{file}: file is missing")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None


def _read_tokenizer(file: Path) -> Tokenizer:
    if not file.is_file():
        raise CheckpointError(f"{file}: file is missing")
    try:
        return Tokenizer.from_file(file)
    except Exception as e:  # the Rust side raises a plain Exception for malformed files
        raise CheckpointError(f"{file}: not a valid tokenizer ({e})") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Read and validate a checkpoint directory.

    Returns (config, model in eval mode on ``device``, source tokenizer, target tokenizer, meta).
    Raises CheckpointError for a missing file, corrupt weights, or weights that do not fit the config.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")

    try:
        config = ModelConfig.from_dict(_read_json(path / CONFIG_FILE))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid config ({e})") from None

    if (path / TOKENIZER_FILE).is_file():
        src_tok = tgt_tok = _read_tokenizer(path / TOKENIZER_FILE)
    elif (path / SOURCE_TOKENIZER_FILE).exists() or (path / TARGET_TOKENIZER_FILE).exists():
        src_tok = _read_tokenizer(path / SOURCE_TOKENIZER_FILE)
        tgt_tok = _read_tokenizer(path / TARGET_TOKENIZER_FILE)
    else:
        raise CheckpointError(f"{path / TOKENIZER_FILE}: file is missing (nor are there "
                              f"{SOURCE_TOKENIZER_FILE} and {TARGET_TOKENIZER_FILE})")
    for tok, size_field in ((src_tok, "src_vocab_size"), (tgt_tok, "tgt_vocab_size")):
        if tok.vocab_size != getattr(config, size_field):
            raise CheckpointError(f"{path / CONFIG_FILE}: {size_field}={getattr(config, size_field)} but the "
                                  f"tokenizer has {tok.vocab_size} tokens")

    meta = _read_json(path / META_FILE)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path / META_FILE}: must be a JSON object")

    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise CheckpointError(f"{weights_file}: file is missing")
    try:
        state = load_file(str(weights_file), device="cpu")  # safetensors: a header and raw bytes, no code
    except Exception as e:
        raise CheckpointError(f"{weights_file}: not a readable safetensors file, truncated or corrupt ({e})") from None

    model = Transformer(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
             for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        problems.append(f"unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    if wrong:
        problems.append("shape mismatch " + "; ".join(wrong[:5]))
    if problems:
        raise CheckpointError(f"{weights_file}: weights do not match {CONFIG_FILE}: " + "; ".join(problems))
    bad = [k for k, t in state.items() if not t.is_floating_point() or not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{weights_file}: non-float or non-finite values in {bad[:5]}")
    model.load_state_dict({k: t.to(torch.float32) for k, t in state.items()})
    model.eval().requires_grad_(False)
    return config, model.to(device), src_tok, tgt_tok, meta
