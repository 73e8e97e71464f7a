"""The encoder-decoder transformer of "Attention Is All You Need", returning a trace on request."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from .attention import AttentionRecord, MultiHeadAttention, causal_mask, padding_mask
from .config import ModelConfig
from .trace import Trace, record_name


class FeedForward(nn.Module):
    """Position-wise FFN: Linear(d_model, d_ff) -> activation -> Linear(d_ff, d_model)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.linear1 = nn.Linear(config.d_model, config.d_ff)
        self.linear2 = nn.Linear(config.d_ff, config.d_model)
        self.activation = nn.ReLU() if config.activation == "relu" else nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))


class SublayerConnection(nn.Module):
    """Residual around a sub-layer with LayerNorm after ("post", the paper) or before ("pre")."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.pre = config.norm == "pre"

    def forward(self, x: torch.Tensor, sublayer) -> tuple[torch.Tensor, AttentionRecord | None]:
        """``sublayer(x) -> (y, record)``; returns (new residual stream, record)."""
        if self.pre:
            y, record = sublayer(self.norm(x))
            return x + self.dropout(y), record
        y, record = sublayer(x)
        return self.norm(x + self.dropout(y)), record


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each wrapped in residual + LayerNorm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads)
        self.feed_forward = FeedForward(config)
        self.sublayers = nn.ModuleList([SublayerConnection(config) for _ in range(2)])

    def forward(self, x, src_padding, capture=False):
        x, record = self.sublayers[0](x, lambda h: self.self_attn(h, h, src_padding, None, capture))
        x, _ = self.sublayers[1](x, lambda h: (self.feed_forward(h), None))
        return x, record


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output (optional), feed-forward."""

    def __init__(self, config: ModelConfig, cross_attention: bool = True):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads)
        self.cross_attn = MultiHeadAttention(config.d_model, config.n_heads) if cross_attention else None
        self.feed_forward = FeedForward(config)
        self.sublayers = nn.ModuleList([SublayerConnection(config) for _ in range(3 if cross_attention else 2)])

    def forward(self, x, memory, src_padding, tgt_padding, tgt_causal, capture=()):
        """``capture``: the kinds to record, a subset of ("self_attn", "cross_attn")."""
        records = {}
        x, records["self_attn"] = self.sublayers[0](
            x, lambda h: self.self_attn(h, h, tgt_padding, tgt_causal, "self_attn" in capture))
        if self.cross_attn is not None:
            # queries from the decoder, keys and values from the final encoder output
            x, records["cross_attn"] = self.sublayers[1](
                x, lambda h: self.cross_attn(h, memory, src_padding, None, "cross_attn" in capture))
        x, _ = self.sublayers[-1](x, lambda h: (self.feed_forward(h), None))
        return x, records


def sinusoidal_encoding(max_len: int, d_model: int) -> torch.Tensor:
    """(max_len, d_model) fixed encoding: sin on even dims, cos on odd dims (paper, section 3.5)."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
    return pe


class Embedding(nn.Module):
    """Token embedding * sqrt(d_model) + positional encoding, then dropout."""

    def __init__(self, vocab_size: int, config: ModelConfig):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, config.d_model)
        self.scale = math.sqrt(config.d_model)
        if config.positional == "learned":
            self.positions = nn.Embedding(config.max_len, config.d_model)
        else:
            self.positions = None
            self.register_buffer("sinusoid", sinusoidal_encoding(config.max_len, config.d_model), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.max_len = config.max_len

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        if T > self.max_len:
            raise ValueError(f"sequence of {T} tokens is longer than max_len={self.max_len}")
        pos = (self.positions.weight[:T] if self.positions is not None else self.sinusoid[:T])  # (T, d_model)
        return self.dropout(self.tokens(ids) * self.scale + pos)


@dataclass(frozen=True)
class ModelOutput:
    """What ``Transformer.forward`` returns."""

    logits: torch.Tensor  # (B, T_tgt, tgt_vocab_size)
    trace: Trace | None  # None unless capture=True


class Transformer(nn.Module):
    """Encoder-decoder transformer; ``forward(src_ids, tgt_ids, capture=True)`` also returns a Trace."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.src_embed = Embedding(config.src_vocab_size, config)
        self.tgt_embed = Embedding(config.tgt_vocab_size, config)
        self.encoder_layers = nn.ModuleList([EncoderLayer(config) for _ in range(config.n_encoder_layers)])
        self.decoder_layers = nn.ModuleList([DecoderLayer(config) for _ in range(config.n_decoder_layers)])
        # pre-LN leaves the residual stream un-normalised: one final LayerNorm per stack
        self.encoder_norm = nn.LayerNorm(config.d_model) if config.norm == "pre" else nn.Identity()
        self.decoder_norm = nn.LayerNorm(config.d_model) if config.norm == "pre" else nn.Identity()
        self.generator = nn.Linear(config.d_model, config.tgt_vocab_size)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def record_names(self) -> list[str]:
        """Every name a full trace holds, in forward order."""
        names = [record_name("encoder", i, "self_attn") for i in range(self.config.n_encoder_layers)]
        for i, layer in enumerate(self.decoder_layers):
            names.append(record_name("decoder", i, "self_attn"))
            if layer.cross_attn is not None:
                names.append(record_name("decoder", i, "cross_attn"))
        return names

    def _capture_set(self, capture: bool | Collection[str]) -> frozenset[str]:
        if isinstance(capture, bool):
            return frozenset(self.record_names()) if capture else frozenset()
        wanted = frozenset(capture)
        unknown = sorted(wanted - set(self.record_names()))
        if unknown:
            raise ValueError(f"cannot capture {unknown}: this model has {self.record_names()}")
        return wanted

    def encode(self, src_ids: torch.Tensor, capture: bool | Collection[str] = False):
        """(B, S) ids -> (memory (B, S, d_model), src padding mask (B, 1, 1, S), records)."""
        wanted = self._capture_set(capture)
        src_padding = padding_mask(src_ids, self.config.pad_id)
        x = self.src_embed(src_ids)
        records = {}
        for i, layer in enumerate(self.encoder_layers):
            name = record_name("encoder", i, "self_attn")
            x, records[name] = layer(x, src_padding, name in wanted)
        return self.encoder_norm(x), src_padding, {n: r for n, r in records.items() if r is not None}

    def decode(self, tgt_ids: torch.Tensor, memory: torch.Tensor, src_padding: torch.Tensor,
               capture: bool | Collection[str] = False):
        """(B, T) decoder input ids (starting with [BOS]) -> (logits (B, T, V), records)."""
        wanted = self._capture_set(capture)
        T = tgt_ids.shape[1]
        tgt_padding = padding_mask(tgt_ids, self.config.pad_id)
        tgt_causal = causal_mask(T, device=tgt_ids.device)
        x = self.tgt_embed(tgt_ids)
        records = {}
        for i, layer in enumerate(self.decoder_layers):
            kinds = {k for k in ("self_attn", "cross_attn") if record_name("decoder", i, k) in wanted}
            x, layer_records = layer(x, memory, src_padding, tgt_padding, tgt_causal, kinds)
            for kind, rec in layer_records.items():
                if rec is not None:
                    records[record_name("decoder", i, kind)] = rec
        return self.generator(self.decoder_norm(x)), records

    def forward(self, src_ids: torch.Tensor, tgt_ids: torch.Tensor,
                capture: bool | Collection[str] = False) -> ModelOutput:
        """src_ids (B, S), tgt_ids (B, T) -> ModelOutput(logits (B, T, V), trace or None).

        Padding masks come from ``config.pad_id``; the decoder also gets the causal mask.
        ``capture``: True records every attention; a collection of names (e.g. {"decoder.1.cross_attn"})
        records only those, for long inputs whose full trace would not fit a memory budget.
        """
        wanted = self._capture_set(capture)
        memory, src_padding, enc_records = self.encode(src_ids, wanted)
        logits, dec_records = self.decode(tgt_ids, memory, src_padding, wanted)
        trace = Trace({**enc_records, **dec_records}, src_ids, tgt_ids) if capture is not False else None
        return ModelOutput(logits=logits, trace=trace)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
