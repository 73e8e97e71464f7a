"""Attention that records every stage: the project's own transformer, transformers models, and their traces.

The contract is model.api (Pipeline, ModelInfo, RunResult); the one traced call is model.call (``run``); traces are
model.capture.trace (FullTrace) and model.capture.lazy (LazyTrace); names are model.core.names (RecordName). The
folders: core/ (the math and shared facts), capture/ (recording a call), own/ (the project's transformer), hf/
(transformers models), safe/ (reading what a user hands us), analysis/, atlas/, training/; settings.py reads the
environment.

The names below are imported when first used (``from model import run``): importing the package, or a torch-free
module of it such as model.settings, does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {  # name -> the module (under model) that defines it
    "ARCHS": "api", "CaptureBudgetError": "api", "ImageEncoding": "api", "ImagePipeline": "api", "ModelInfo": "api",
    "Pipeline": "api", "RunResult": "api",
    "CaptureBudget": "call", "estimate_bytes": "call", "generate": "call", "intervened_outputs": "call",
    "run": "call", "run_batch": "call",
    "record_to_dataframe": "capture.dataframe",
    "LazyTrace": "capture.lazy", "RecordTooLarge": "capture.lazy",
    "Recorder": "capture.recorder",
    "FullTrace": "capture.trace", "Trace": "capture.trace", "Window": "capture.trace",
    "AttentionRecord": "core.attention", "STAGES": "core.attention", "attention": "core.attention",
    "causal_mask": "core.attention", "fast_attention": "core.attention", "padding_mask": "core.attention",
    "repeat_kv": "core.attention", "subsequent_mask": "core.attention",
    "Encoding": "core.encoding", "TokenizerError": "core.encoding",
    "ABLATION_MODES": "core.interventions", "Interventions": "core.interventions",
    "KINDS": "core.names", "RecordName": "core.names", "record_name": "core.names",
    "allowed_matrix": "core.reasons", "forbidden_by_reason": "core.reasons", "mask_reason_matrix": "core.reasons",
    "is_hf_directory": "load", "load": "load", "available_devices": "runtime", "resolve_device": "runtime",
    "load_checkpoint": "own.checkpoint", "save_checkpoint": "own.checkpoint",
    "ModelConfig": "own.config",
    "TransformerPipeline": "own.pipeline",
    "BOS_ID": "own.tokenizer", "EOS_ID": "own.tokenizer", "PAD_ID": "own.tokenizer", "Tokenizer": "own.tokenizer",
    "SPECIAL_TOKENS": "own.tokenizer", "UNK_ID": "own.tokenizer",
    "KVCache": "own.transformer", "MultiHeadAttention": "own.transformer", "Transformer": "own.transformer",
    "CheckpointError": "safe.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
