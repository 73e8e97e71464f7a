"""A compact encoder-decoder transformer that records every attention stage, exactly as computed."""

from .attention import (
                        AttentionRecord,
                        MultiHeadAttention,
                        attention,
                        causal_mask,
                        fast_attention,
                        padding_mask,
                        subsequent_mask,
)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ModelConfig
from .inference import CaptureBudgetError, Pipeline, RunResult, available_devices, load, resolve_device
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, Encoding, Tokenizer
from .trace import Trace, parse_name, record_name, record_to_dataframe
from .transformer import ModelOutput, Transformer

__all__ = [
    "AttentionRecord", "BOS_ID", "CaptureBudgetError", "CheckpointError", "EOS_ID", "Encoding", "ModelConfig",
    "ModelOutput",
    "MultiHeadAttention", "PAD_ID", "Pipeline", "RunResult", "SPECIAL_TOKENS", "Tokenizer", "Trace",
    "Transformer", "UNK_ID", "attention", "available_devices", "causal_mask", "fast_attention", "load",
    "load_checkpoint", "padding_mask", "parse_name", "record_name", "record_to_dataframe", "resolve_device",
    "save_checkpoint", "subsequent_mask",
]
