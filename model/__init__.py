"""Attention that records every stage: the project's own transformer, transformers models, and their traces.

The contract is model.api (Pipeline, ModelInfo, RunResult); the one traced call is model.call (``run``); traces are
model.capture.trace (FullTrace) and model.capture.lazy (LazyTrace); names are model.core.names (RecordName).
"""

from .api import ARCHS, CaptureBudgetError, ModelInfo, Pipeline, RunResult
from .call import CaptureBudget, estimate_bytes, generate, intervened_outputs, run, run_batch
from .capture.dataframe import record_to_dataframe
from .capture.lazy import LazyTrace, RecordTooLarge
from .capture.recorder import Recorder
from .capture.trace import FullTrace, Trace, Window
from .core.attention import (
    STAGES,
    AttentionRecord,
    attention,
    causal_mask,
    fast_attention,
    padding_mask,
    repeat_kv,
    subsequent_mask,
)
from .core.encoding import Encoding, TokenizerError
from .core.interventions import ABLATION_MODES, Interventions
from .core.names import KINDS, RecordName, record_name
from .core.reasons import allowed_matrix, forbidden_by_reason, mask_reason_matrix
from .load import available_devices, is_hf_directory, load, resolve_device
from .own.checkpoint import load_checkpoint, save_checkpoint
from .own.config import ModelConfig
from .own.pipeline import TransformerPipeline
from .own.tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, Tokenizer
from .own.transformer import KVCache, MultiHeadAttention, Transformer
from .safe.errors import CheckpointError

__all__ = [
    "ABLATION_MODES", "ARCHS", "AttentionRecord", "BOS_ID", "Pipeline", "CaptureBudget", "CaptureBudgetError",
    "CheckpointError", "EOS_ID", "Encoding", "FullTrace", "Interventions", "KINDS", "KVCache", "LazyTrace",
    "ModelConfig", "ModelInfo", "MultiHeadAttention", "PAD_ID", "TransformerPipeline", "RecordName",
    "RecordTooLarge", "Recorder", "RunResult", "SPECIAL_TOKENS", "STAGES", "Tokenizer", "TokenizerError", "Trace",
    "Transformer", "UNK_ID", "Window", "allowed_matrix", "attention", "available_devices", "causal_mask",
    "estimate_bytes", "fast_attention", "forbidden_by_reason", "generate", "intervened_outputs", "is_hf_directory",
    "load", "load_checkpoint", "mask_reason_matrix", "padding_mask", "record_name", "record_to_dataframe",
    "repeat_kv", "resolve_device", "run", "run_batch", "save_checkpoint", "subsequent_mask",
]
