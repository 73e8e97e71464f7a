"""Attention that records every stage: the project's own transformer, transformers models, and their traces."""

from .attention import (
                        AttentionRecord,
                        KVCache,
                        MultiHeadAttention,
                        attention,
                        causal_mask,
                        fast_attention,
                        padding_mask,
                        repeat_kv,
                        subsequent_mask,
)
from .capture import ABLATION_MODES, LazyTrace, Recorder
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ModelConfig
from .inference import (
                        CaptureBudgetError,
                        ModelInfo,
                        Pipeline,
                        RunResult,
                        available_devices,
                        axes,
                        is_hf_directory,
                        load,
                        resolve_device,
)
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, Encoding, Tokenizer, TokenizerError
from .trace import (
                        Trace,
                        allowed_matrix,
                        forbidden_by_reason,
                        mask_reason_matrix,
                        parse_name,
                        record_axes,
                        record_name,
                        record_to_dataframe,
)
from .transformer import ModelOutput, Transformer

__all__ = [
    "ABLATION_MODES", "AttentionRecord", "BOS_ID", "CaptureBudgetError", "CheckpointError", "EOS_ID", "Encoding",
    "KVCache", "LazyTrace", "ModelConfig", "ModelInfo", "ModelOutput", "MultiHeadAttention", "PAD_ID", "Pipeline",
    "Recorder", "RunResult", "SPECIAL_TOKENS", "Tokenizer", "TokenizerError", "Trace", "Transformer", "UNK_ID",
    "allowed_matrix", "attention", "available_devices", "axes", "causal_mask", "fast_attention",
    "forbidden_by_reason", "is_hf_directory", "load", "load_checkpoint", "mask_reason_matrix", "padding_mask",
    "parse_name", "record_axes", "record_name",
    "record_to_dataframe", "repeat_kv", "resolve_device", "save_checkpoint", "subsequent_mask",
]
