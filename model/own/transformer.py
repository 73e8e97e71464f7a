"""The transformer of "Attention Is All You Need" (encoder-decoder, or decoder-only), returning a trace on request."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from ..core.attention import causal_mask, fast_attention, padding_mask
from ..core.masks import describe
from ..core.names import record_name
from ..core.recording import Recording
from .config import ModelConfig


class KVCache:
    """Keys and values of one attention module during one incremental decoding run (a per-call object, never
    stored on the module). ``static``: computed once from a fixed input (cross-attention over the encoder
    output); otherwise each step's keys are appended (decoder self-attention)."""

    def __init__(self, static: bool):
        self.static = static
        self.k: torch.Tensor | None = None  # (B, H, T_seen, d_k)
        self.v: torch.Tensor | None = None


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query/key/value/output projections.

    The key/value input may be narrower or wider than the query input (``d_kv_in``);
    only the projected query and key widths (d_k) must agree.
    """

    def __init__(self, d_model: int, n_heads: int, d_kv_in: int | None = None, bias: bool = True):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.d_k = d_model // n_heads
        d_kv_in = d_model if d_kv_in is None else d_kv_in
        self.W_query = nn.Linear(d_model, d_model, bias=bias)
        self.W_key = nn.Linear(d_kv_in, d_model, bias=bias)
        self.W_value = nn.Linear(d_kv_in, d_model, bias=bias)
        self.W_out = nn.Linear(d_model, d_model, bias=bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_k).transpose(1, 2)  # (B, H, T, d_k)

    def forward(self, query_input: torch.Tensor, key_input: torch.Tensor,
                padding_mask: torch.Tensor | None = None, causal_mask: torch.Tensor | None = None, *,
                recorder: Recording | None = None, name: str = "attention", query_valid: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """query_input (B, Tq, d_model), key_input (B, Tk, d_kv_in) -> output (B, Tq, d_model).

        ``recorder`` (a ``Recording``, see model.core.recording) decides what this call keeps under ``name`` and
        what it changes; without one, the fast path (SDPA, nothing kept). ``cache`` reuses keys and values while
        decoding.
        """
        q = self._split_heads(self.W_query(query_input))
        if cache is not None and cache.static and cache.k is not None:
            k, v = cache.k, cache.v
        else:
            k = self._split_heads(self.W_key(key_input))
            v = self._split_heads(self.W_value(key_input))
            if cache is not None:
                if not cache.static and cache.k is not None:
                    k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
                cache.k, cache.v = k, v
        if recorder is None:  # nothing to record, nothing to change: the fast path, no bookkeeping
            mask = padding_mask
            if causal_mask is not None:
                mask = causal_mask if mask is None else mask & causal_mask
            context = fast_attention(q, k, v, mask)
        else:
            # this model's causal mask is always the lower-right aligned one (causal_mask(T), sliced as with a cache)
            masks = describe(None, q.shape[2], k.shape[2],
                             padding=None if padding_mask is None else padding_mask[:, 0, 0, :],
                             causal=causal_mask is not None)
            context = recorder.attend(name, q, k, v, masks, query_input=query_input, key_input=key_input,
                                      query_valid=query_valid, out_proj=self.W_out, finish_later=True)
        B, Tq, _ = query_input.shape
        concat = context.transpose(1, 2).reshape(B, Tq, self.n_heads * self.d_k)  # (B, Tq, H * d_v)
        output = self.W_out(concat)
        if recorder is not None:
            recorder.finish(name, concat, output)
        return output


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

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.pre:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward (if any), each wrapped in residual + LayerNorm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads)
        self.feed_forward = FeedForward(config) if config.d_ff else None
        self.sublayers = nn.ModuleList([SublayerConnection(config) for _ in range(2 if config.d_ff else 1)])

    def forward(self, x, src_padding, recorder: Recording | None, index: int, src_valid=None):
        x = self.sublayers[0](x, lambda h: self.self_attn(
            h, h, src_padding, None, recorder=recorder, name=record_name("encoder", index, "self_attn"),
            query_valid=src_valid))
        if self.feed_forward is not None:
            x = self.sublayers[1](x, self.feed_forward)
        return x


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output (encoder-decoder only), feed-forward (if any)."""

    def __init__(self, config: ModelConfig, cross_attention: bool = True):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads)
        self.cross_attn = MultiHeadAttention(config.d_model, config.n_heads) if cross_attention else None
        self.feed_forward = FeedForward(config) if config.d_ff else None
        n = 1 + int(cross_attention) + int(bool(config.d_ff))
        self.sublayers = nn.ModuleList([SublayerConnection(config) for _ in range(n)])

    def forward(self, x, memory, src_padding, tgt_padding, tgt_causal, recorder: Recording | None, index: int,
                tgt_valid=None, cache: tuple[KVCache, KVCache] | None = None):
        """``cache``: (self-attention cache, cross-attention cache) while decoding one token at a time."""
        x = self.sublayers[0](x, lambda h: self.self_attn(
            h, h, tgt_padding, tgt_causal, recorder=recorder, name=record_name("decoder", index, "self_attn"),
            query_valid=tgt_valid, cache=None if cache is None else cache[0]))
        if self.cross_attn is not None:
            # queries from the decoder, keys and values from the final encoder output
            x = self.sublayers[1](x, lambda h: self.cross_attn(
                h, memory, src_padding, None, recorder=recorder, name=record_name("decoder", index, "cross_attn"),
                query_valid=tgt_valid, cache=None if cache is None else cache[1]))
        if self.feed_forward is not None:
            x = self.sublayers[-1](x, self.feed_forward)
        return x


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

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T) ids at positions start..start+T-1 -> (B, T, d_model)."""
        end = start + ids.shape[1]
        if end > self.max_len:
            raise ValueError(f"sequence of {end} tokens is longer than max_len={self.max_len}")
        table = self.positions.weight if self.positions is not None else self.sinusoid
        return self.dropout(self.tokens(ids) * self.scale + table[start:end])  # (B, T, d_model)


class Transformer(nn.Module):
    """``forward(src_ids, tgt_ids, recorder)`` returns logits. Encoder-decoder as in the paper; with
    ``config.arch == "decoder-only"`` there is no encoder (pass ``src_ids=None``) and no cross-attention."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        enc_dec = not config.decoder_only
        self.src_embed = Embedding(config.src_vocab_size, config) if enc_dec else None
        self.tgt_embed = Embedding(config.tgt_vocab_size, config)
        self.encoder_layers = nn.ModuleList([EncoderLayer(config) for _ in range(config.n_encoder_layers)])
        self.decoder_layers = nn.ModuleList([DecoderLayer(config, cross_attention=enc_dec)
                                             for _ in range(config.n_decoder_layers)])
        # pre-LN leaves the residual stream un-normalised: one final LayerNorm per stack
        pre = config.norm == "pre"
        self.encoder_norm = nn.LayerNorm(config.d_model) if pre and enc_dec else nn.Identity()
        self.decoder_norm = nn.LayerNorm(config.d_model) if pre else nn.Identity()
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

    def encode(self, src_ids: torch.Tensor, recorder: Recording | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) ids -> (memory (B, S, d_model), src padding mask (B, 1, 1, S))."""
        if self.config.decoder_only:
            raise ValueError("a decoder-only model has no encoder")
        src_padding = padding_mask(src_ids, self.config.pad_id)
        src_valid = src_ids != self.config.pad_id  # (B, S) real query positions, for mean ablation
        x = self.src_embed(src_ids)
        if recorder is not None:
            recorder.record_hidden("encoder", x)
        for i, layer in enumerate(self.encoder_layers):
            x = layer(x, src_padding, recorder, i, src_valid=src_valid)
            if recorder is not None:
                recorder.record_hidden("encoder", x)
        return self.encoder_norm(x), src_padding

    def decode(self, tgt_ids: torch.Tensor, memory: torch.Tensor | None, src_padding: torch.Tensor | None,
               recorder: Recording | None = None, logits_at: torch.Tensor | None = None,
               head: bool = True) -> torch.Tensor:
        """(B, T) decoder input ids (starting with [BOS]) -> logits (B, T, V); ``logits_at`` (P,): at those
        positions only, (B, P, V); ``head=False``: the residual stream (B, T, d_model) that ``unembed`` reads."""
        T = tgt_ids.shape[1]
        tgt_padding = padding_mask(tgt_ids, self.config.pad_id)
        tgt_causal = causal_mask(T, device=tgt_ids.device)
        tgt_valid = tgt_ids != self.config.pad_id
        x = self.tgt_embed(tgt_ids)
        if recorder is not None:
            recorder.record_hidden("decoder", x)
        for i, layer in enumerate(self.decoder_layers):
            x = layer(x, memory, src_padding, tgt_padding, tgt_causal, recorder, i, tgt_valid=tgt_valid)
            if recorder is not None:
                recorder.record_hidden("decoder", x)
        if not head:
            return x
        return self.unembed(x if logits_at is None else x[:, logits_at])

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's residual stream (..., d_model) -> logits (..., V): final norm (pre-LN) and generator."""
        return self.generator(self.decoder_norm(x))

    def forward(self, src_ids: torch.Tensor | None, tgt_ids: torch.Tensor, recorder: Recording | None = None,
                logits_at: torch.Tensor | None = None, head: bool = True) -> torch.Tensor:
        """src_ids (B, S) (None for decoder-only), tgt_ids (B, T) -> logits (B, T, V), or (B, P, V) at the positions
        ``logits_at`` (``head=False``: the decoder's last residual stream, (B, T, d_model), before ``unembed``).
        Padding masks come from ``config.pad_id``; the decoder also gets the causal mask.

        ``recorder`` (one call's, see model.core.recording) keeps what that call asked for and applies its
        interventions; None: the fast path, nothing kept or changed. The traced call is ``model.call.run``.
        """
        if self.config.decoder_only:
            memory = src_padding = None
        else:
            if src_ids is None:
                raise ValueError("an encoder-decoder model needs src_ids")
            memory, src_padding = self.encode(src_ids, recorder)
        return self.decode(tgt_ids, memory, src_padding, recorder, logits_at, head)

    @torch.inference_mode()
    def greedy(self, src_ids: torch.Tensor | None, prefix: torch.Tensor, limit: int,
               stop_id: int | None, deadline: float | None = None) -> tuple[list[list[int]], bool]:
        """Greedy decoding with a key/value cache: each step runs the decoder on one new token.

        prefix (B, P) decoder input ids to start from ([BOS], or a decoder-only prompt); stops when every row has
        produced ``stop_id``, the sequence reaches ``limit`` tokens, or ``time.perf_counter()`` passes
        ``deadline``. Returns (each row's ids, prefix included and the stop token excluded; True if cut by time).
        (Decoding under interventions is ``model.call.greedy_ids``: it runs the whole prefix at each step.)
        """
        cfg = self.config
        B = prefix.shape[0]
        memory = src_padding = None
        if not cfg.decoder_only:
            memory, src_padding = self.encode(src_ids)
        caches = [(KVCache(static=False), KVCache(static=True)) for _ in self.decoder_layers]
        recorder = None
        seq = prefix
        limit = max(limit, prefix.shape[1])
        done = torch.zeros(B, dtype=torch.bool, device=prefix.device)
        lengths = torch.full((B,), limit, dtype=torch.long, device=prefix.device)
        new, start = prefix, 0
        timed_out = False
        while seq.shape[1] < limit:
            if deadline is not None and time.perf_counter() > deadline:
                timed_out = True
                lengths[~done] = seq.shape[1]
                break
            # the new tokens see every cached key; the causal mask only matters within the prefix
            x = self.tgt_embed(new, start=start)
            causal = causal_mask(seq.shape[1], device=seq.device)[..., start:, :]
            pad = padding_mask(seq, cfg.pad_id)
            for i, layer in enumerate(self.decoder_layers):
                x = layer(x, memory, src_padding, pad, causal, recorder, i, cache=caches[i])
            nxt = self.unembed(x[:, -1:])[:, -1].argmax(-1)
            if stop_id is not None:
                finished_now = ~done & (nxt == stop_id)
                lengths[finished_now] = seq.shape[1]
                done |= finished_now
                if bool(done.all()):
                    break
            start = seq.shape[1]
            new = torch.where(done, cfg.pad_id, nxt)[:, None]
            seq = torch.cat([seq, new], dim=1)
        return [seq[i, : int(lengths[i])].tolist() for i in range(B)], timed_out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
