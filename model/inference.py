"""Inference API: ``load(path)`` -> a Pipeline with ``generate`` and ``run`` (a traced call).

Two kinds of Pipeline share this interface: the project's own transformer (here) and models in the Hugging Face
layout run by transformers (``model.hf``). ``load`` picks the right one from the directory.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .capture import Ablations
from .checkpoint import load_checkpoint
from .config import ModelConfig
from .runtime import threads_for
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Encoding, Tokenizer
from .trace import Trace, parse_name, record_bytes
from .transformer import Transformer

KINDS = ("encoder-decoder", "decoder-only", "encoder-only")
DECODE_SECONDS = 30.0  # greedy decoding stops after this long (a huge model on a slow machine) and says so


class CaptureBudgetError(ValueError):
    """A traced call whose records would not fit the memory budget; raised before running it."""


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


@dataclass(frozen=True)
class ModelInfo:
    """What the app needs to know about a loaded model, whatever its family."""

    kind: str  # "encoder-decoder", "decoder-only" or "encoder-only"
    family: str  # "transformer (this project)", or transformers' model_type ("gpt2", "llama", ...)
    n_encoder_layers: int
    n_decoder_layers: int
    n_heads: int  # query heads per attention
    n_kv_heads: int  # key/value heads (fewer than n_heads: grouped-query attention)
    d_model: int
    d_k: int  # per-head query/key width
    max_len: int  # longest sequence the model reads (tokens, specials included)
    dtype: str  # "float32", "bfloat16", "float16"
    parameters: int
    record_names: tuple[str, ...]  # every name a full trace holds, in forward order
    notes: dict[str, str] = field(default_factory=dict)  # per-stage remarks ("q": "after RoPE", ...)

    @property
    def has_encoder(self) -> bool:
        return self.n_encoder_layers > 0

    @property
    def has_decoder(self) -> bool:
        return self.n_decoder_layers > 0

    @property
    def has_cross(self) -> bool:
        return self.kind == "encoder-decoder"


@dataclass(frozen=True)
class RunResult:
    """One traced call: the tokens on each axis, the model's output and the trace."""

    source: Encoding | None  # the encoder's input (keys of cross-attention); None for a decoder-only model
    target: Encoding | None  # the decoder's input ([BOS] + target, or the decoder-only text); None: encoder-only
    output_ids: list[int]  # argmax prediction at each position of the last stack (what position i predicts)
    output_tokens: list[str]  # the same as strings
    output_text: str  # generated text, or the teacher-forced predictions decoded
    generated: bool  # True when (part of) the decoder input was generated greedily here
    logits: torch.Tensor | None  # (T, V) logits of that call, on the CPU (None: a model without an output head)
    trace: Trace  # every attention record of the call, batch size 1
    n_prompt: int = 0  # decoder-only: how many tokens of ``target`` were given (the rest were generated)
    stopped: str = ""  # why generation ended: "eos", "limit" (length cap) or "time" (decoding time cap); "" if none

    @property
    def stopped_at_eos(self) -> bool:
        """True when the model ended its output with its end-of-sequence token."""
        return self.stopped == "eos"

    @property
    def probs(self) -> torch.Tensor | None:
        """(T, V) softmax of the logits, computed when asked (T x V floats: use ``probs_at`` for one position)."""
        return None if self.logits is None else torch.softmax(self.logits, -1)

    def probs_at(self, position: int) -> torch.Tensor | None:
        """(V,) the next-token distribution at one position (softmax of that row of the logits)."""
        return None if self.logits is None else torch.softmax(self.logits[position], -1)

    def generated_token_probabilities(self) -> list[float]:
        """The probability the model gave each token it generated here (and its end-of-sequence token, when it
        stopped there), from this call's own logits; empty when nothing was generated."""
        if not self.generated or self.logits is None or self.target is None:
            return []
        start = self.n_prompt if self.n_prompt else 1  # first generated position of the decoder input
        ids = list(self.target.ids[start:])
        positions = list(range(start - 1, len(self.target.ids) - 1))
        if self.stopped == "eos" and self.output_ids:
            ids.append(self.output_ids[-1])
            positions.append(len(self.target.ids) - 1)
        logp = torch.log_softmax(self.logits[positions], -1)  # only the rows needed
        return [float(logp[n, i].exp()) for n, i in enumerate(ids)]

    def tokens_for(self, stack: str) -> list[str]:
        enc = self.source if stack == "encoder" else self.target
        return [] if enc is None else list(enc.tokens)


def axes(name: str, result: RunResult) -> tuple[list[str], list[str]]:
    """(query tokens, key tokens) of one trace name: encoder self = source x source, decoder self = target x
    target, cross = target (queries) x source (keys)."""
    stack, _, kind = parse_name(name)
    q = result.tokens_for(stack)
    k = result.tokens_for("encoder") if kind == "cross_attn" else q
    return q, k


class Pipeline:
    """A loaded checkpoint of this project: config, tokenizers, model (eval, frozen) and meta, on one device."""

    def __init__(self, config: ModelConfig, model: Transformer, src_tokenizer: Tokenizer,
                 tgt_tokenizer: Tokenizer, meta: dict[str, Any] | None = None, path: str | None = None):
        self.config, self.model = config, model
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        self.meta = meta or {}
        self.path = path
        self.kind = config.arch
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.info = ModelInfo(
            kind=config.arch, family="transformer (this project)", n_encoder_layers=config.n_encoder_layers,
            n_decoder_layers=config.n_decoder_layers, n_heads=config.n_heads, n_kv_heads=config.n_heads,
            d_model=config.d_model, d_k=config.d_k, max_len=config.max_len, dtype=dtype,
            parameters=model.num_parameters(), record_names=tuple(model.record_names()))

    @property
    def device(self) -> torch.device:
        return self.model.device

    def id_to_token(self, i: int) -> str:
        return self.tgt_tokenizer.id_to_token(i)

    def encode_source(self, text: str) -> Encoding:
        """Source text -> tokens + [EOS], truncated to max_len (``.truncated`` tells)."""
        return self.src_tokenizer.encode(text, max_len=self.config.max_len, eos=True)

    def encode_target(self, text: str) -> Encoding:
        """Target text -> [BOS] + tokens (the decoder input), truncated to max_len."""
        return self.tgt_tokenizer.encode(text, max_len=self.config.max_len, bos=True)

    def _pad(self, rows: list[list[int]]) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long, device=self.device)

    def _greedy(self, sources: list[Encoding] | None, prefixes: list[list[int]],
                max_new_tokens: int | None, ablations: Ablations | None = None) -> tuple[list[list[int]], bool]:
        """Greedy decoding (key/value cache) of a padded batch -> (decoder inputs (prefix + tokens, no [EOS]),
        True when the time cap DECODE_SECONDS cut it)."""
        longest = max(len(p) for p in prefixes)
        room = self.config.max_len - longest
        limit = longest + (room if max_new_tokens is None else min(room, max(0, max_new_tokens)))
        src = None if sources is None else self._pad([s.ids for s in sources])
        # left-aligned prefixes of one length only: decoder-only prompts are traced one at a time
        prefix = self._pad(prefixes)
        return self.model.greedy(src, prefix, limit, EOS_ID, deadline=time.perf_counter() + DECODE_SECONDS,
                                 ablations=ablations)

    def decode(self, source_text: str, max_new_tokens: int | None = None) -> tuple[list[int], str]:
        """Greedy decoding of one text -> (decoder input ids, why it stopped: "eos", "limit" or "time")."""
        if self.config.decoder_only:
            prefix = self.encode_target(source_text).ids
            rows, timed_out = self._greedy(None, [prefix], max_new_tokens)
        else:
            prefix = [BOS_ID]
            rows, timed_out = self._greedy([self.encode_source(source_text)], [prefix], max_new_tokens)
        room = self.config.max_len - len(prefix)
        limit = len(prefix) + (room if max_new_tokens is None else min(room, max(0, max_new_tokens)))
        ids = rows[0]
        return ids, "time" if timed_out else ("limit" if len(ids) >= limit else "eos")

    def greedy(self, source_text: str, max_new_tokens: int | None = None) -> list[int]:
        """Greedy decoding of one text -> the decoder input ids (prefix + output tokens, no [EOS]).

        Encoder-decoder: the prefix is [BOS] and ``source_text`` is the encoder's input. Decoder-only:
        ``source_text`` is the prompt. Pass the result to ``run(..., generated_ids=...)`` to trace it.
        """
        if self.config.decoder_only:
            return self._greedy(None, [self.encode_target(source_text).ids], max_new_tokens)[0][0]
        return self._greedy([self.encode_source(source_text)], [[BOS_ID]], max_new_tokens)[0][0]

    def generate(self, source_text: str | list[str], max_new_tokens: int | None = None) -> str | list[str]:
        """Greedy translation; stops at [EOS] or max length. A list of texts is decoded as one padded batch."""
        texts = [source_text] if isinstance(source_text, str) else list(source_text)
        if not texts:
            return []
        if self.config.decoder_only:
            rows = [self.greedy(t, max_new_tokens) for t in texts]
            outs = [self.tgt_tokenizer.decode(r[len(self.encode_target(t).ids):]) for r, t in zip(rows, texts,
                                                                                                 strict=True)]
        else:
            rows, _ = self._greedy([self.encode_source(t) for t in texts], [[BOS_ID]] * len(texts), max_new_tokens)
            outs = [self.tgt_tokenizer.decode(r) for r in rows]
        return outs[0] if isinstance(source_text, str) else outs

    def capture_bytes(self, src_len: int, tgt_len: int, batch: int = 1,
                      capture: bool | Collection[str] = True) -> int:
        """Estimated bytes a traced call keeps (every record, or only the named ones), before running it."""
        shapes = {("encoder", "self_attn"): (src_len, src_len), ("decoder", "self_attn"): (tgt_len, tgt_len),
                  ("decoder", "cross_attn"): (tgt_len, src_len)}
        names = self.info.record_names if capture is True else (() if capture is False else capture)
        total = 0
        for name in names:
            stack, _, kind = parse_name(name)
            total += record_bytes(self.config, *shapes[stack, kind], batch)
        return total

    def lengths(self, source_text: str | None, target_text: str | None,
                generated_ids: list[int] | None = None) -> tuple[int, int]:
        """(source tokens, decoder tokens) a call would trace, before running it."""
        S = 0 if self.config.decoder_only else len(self.encode_source(source_text or "").ids)
        if generated_ids is not None:
            T = len(generated_ids)
        elif self.config.decoder_only:
            T = len(self.encode_target(source_text or "").ids)
        else:
            T = len(self.encode_target(target_text or "").ids) if target_text is not None else 1
        return S, T

    def run(self, source_text: str, target_text: str | None = None, max_new_tokens: int | None = None,
            capture: bool | Collection[str] = True, max_capture_bytes: int | None = None,
            generated_ids: list[int] | None = None, *, lazy: bool = False, ablations: Ablations | None = None,
            max_lazy_cache_bytes: int | None = None) -> RunResult:
        """Trace one call.

        Encoder-decoder: generate greedily when ``target_text`` is None, else teacher-force it. Decoder-only:
        ``source_text`` is the text; with ``max_new_tokens`` it is first extended greedily and the whole sequence
        traced. ``capture``: True or the names to record; ``lazy``: record inputs, recompute records on demand.
        ``max_capture_bytes``: refuse a full capture above it (CaptureBudgetError, before running).
        ``generated_ids``: an earlier ``greedy(source_text)``, traced without decoding again.
        ``ablations``: {name: {head: "zero" | "mean"}} applied in this call.
        """
        return self.run_batch([source_text], None if target_text is None else [target_text], max_new_tokens,
                              capture, max_capture_bytes, None if generated_ids is None else [generated_ids],
                              lazy=lazy, ablations=ablations, max_lazy_cache_bytes=max_lazy_cache_bytes)[0]

    @torch.inference_mode()
    def run_batch(self, source_texts: list[str], target_texts: list[str] | None = None,
                  max_new_tokens: int | None = None, capture: bool | Collection[str] = True,
                  max_capture_bytes: int | None = None, generated_ids: list[list[int]] | None = None, *,
                  lazy: bool = False, ablations: Ablations | None = None,
                  max_lazy_cache_bytes: int | None = None) -> list[RunResult]:
        """``run`` for several texts in one padded forward; each result's trace is cut to its own lengths."""
        decoder_only = self.config.decoder_only
        sources = None if decoder_only else [self.encode_source(t) for t in source_texts]
        prompts = [self.encode_target(t) for t in source_texts] if decoder_only else None
        generated, timed_out = False, False
        if decoder_only:
            if generated_ids is not None:
                rows, generated = [list(r) for r in generated_ids], True
            elif max_new_tokens:
                decoded = [self._greedy(None, [p.ids], max_new_tokens, ablations) for p in prompts]
                rows, timed_out, generated = [d[0][0] for d in decoded], any(d[1] for d in decoded), True
            else:
                rows = [p.ids for p in prompts]
            targets = [self._encoding_from_ids(r, p) for r, p in zip(rows, prompts, strict=True)]
        elif target_texts is None:
            if generated_ids is not None and len(generated_ids) != len(sources):
                raise ValueError("need one generated id list per source text")
            if generated_ids is None:
                if ablations and len(sources) > 1:
                    raise ValueError("ablated generation runs one source at a time")
                rows, timed_out = self._greedy(sources, [[BOS_ID]] * len(sources), max_new_tokens, ablations)
            else:
                rows = [list(r) for r in generated_ids]
            if any(not r or r[0] != BOS_ID or len(r) > self.config.max_len for r in rows):
                raise ValueError(f"generated ids must start with [BOS] and fit max_len={self.config.max_len}")
            targets = [self._encoding_from_ids(r) for r in rows]
            generated = True
        else:
            if len(target_texts) != len(source_texts):
                raise ValueError("need one target text per source text")
            targets = [self.encode_target(t) for t in target_texts]
        S = 0 if decoder_only else max(len(s.ids) for s in sources)
        T = max(len(t.ids) for t in targets)
        if max_capture_bytes is not None and not lazy:
            need = self.capture_bytes(S, T, len(source_texts), capture)
            if need > max_capture_bytes:
                raise CaptureBudgetError(
                    f"tracing {len(source_texts)} x ({S} source, {T} target) tokens would hold about "
                    f"{need / 2**20:.0f} MiB of attention records, over the {max_capture_bytes / 2**20:.0f} MiB "
                    f"budget: capture fewer records (one layer or kind at a time) or shorten the text")
        src = None if decoder_only else self._pad([s.ids for s in sources])
        with threads_for(2 * self.info.parameters * len(targets) * (S + T), self.device):
            out = self.model(src, self._pad([t.ids for t in targets]), capture=capture, lazy=lazy,
                             ablations=ablations, max_lazy_cache_bytes=max_lazy_cache_bytes)
        results = []
        for i, t in enumerate(targets):
            s = None if sources is None else sources[i]
            logits = out.logits[i, : len(t.ids)].float().cpu()
            out_ids = logits.argmax(-1).tolist()
            n_prompt = len(prompts[i].ids) if decoder_only else 0
            if decoder_only:
                text = self.tgt_tokenizer.decode(t.ids[n_prompt:]) if generated else self.tgt_tokenizer.decode(
                    out_ids)
            else:
                text = (self.tgt_tokenizer.decode(t.ids[1:]) if target_texts is None
                        else self.tgt_tokenizer.decode(out_ids))
            stopped = ""
            if generated:
                ended = (out_ids[-1] == EOS_ID) if out_ids else False
                stopped = "eos" if ended else ("time" if timed_out else "limit")
            trace = None if out.trace is None else (
                out.trace if len(targets) == 1 else out.trace.item(i, None if s is None else len(s.ids), len(t.ids)))
            results.append(RunResult(
                source=s, target=t, output_ids=out_ids,
                output_tokens=[self.tgt_tokenizer.id_to_token(j) for j in out_ids], output_text=text,
                generated=generated, logits=logits, trace=trace,
                n_prompt=n_prompt, stopped=stopped))
        return results

    @torch.inference_mode()
    def ablated_logits(self, result: RunResult, ablations: list[dict]) -> torch.Tensor:
        """(N, T, V) logits of ``result``'s input run N times in one batch, item n with ``ablations[n]``."""
        N = len(ablations)
        tgt = torch.tensor([result.target.ids], device=self.device).expand(N, -1)
        src = None if result.source is None else torch.tensor([result.source.ids], device=self.device).expand(N, -1)
        tokens = N * (tgt.shape[1] + (0 if src is None else src.shape[1]))
        with threads_for(2 * self.info.parameters * tokens, self.device):
            return self.model(src, tgt, ablations=list(ablations)).logits.float().cpu()

    def _encoding_from_ids(self, ids: list[int], prompt: Encoding | None = None) -> Encoding:
        tokens = [self.tgt_tokenizer.id_to_token(i) for i in ids]
        if prompt is not None:
            return Encoding(ids=ids, tokens=tokens, offsets=list(prompt.offsets) + [(0, 0)] * (len(ids) -
                            len(prompt.ids)), truncated=prompt.truncated, n_text_tokens=prompt.n_text_tokens)
        return Encoding(ids=ids, tokens=tokens, offsets=[(0, 0)] * len(ids), truncated=False,
                        n_text_tokens=len(ids) - 1)


def is_hf_directory(path: str | Path) -> bool:
    """A Hugging Face layout directory: its config.json names a ``model_type`` (ours never does)."""
    from .checkpoint import read_json_file

    config = Path(path) / "config.json"
    try:
        data = read_json_file(config)
    except Exception:
        return False
    return isinstance(data, dict) and "model_type" in data


def load(path: str | Path, device: str | torch.device = "auto"):
    """Load a checkpoint directory onto ``device`` ("auto" = cuda, then mps, then cpu).

    This project's checkpoints give a ``Pipeline``; a Hugging Face directory (config.json with a model_type,
    model.safetensors, tokenizer.json) gives a ``model.hf.HFPipeline`` (transformers is imported only then).
    """
    dev = resolve_device(device)
    if is_hf_directory(path):
        from .hf import load_hf  # lazy: the app's cold start on its own models does not pay for transformers

        return load_hf(path, device=dev)
    config, model, src_tok, tgt_tok, meta = load_checkpoint(path, device=dev)
    return Pipeline(config, model, src_tok, tgt_tok, meta, str(path))
