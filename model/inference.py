"""Inference API: ``load(path)`` -> Pipeline with ``generate`` and ``run`` (a traced call)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint
from .config import ModelConfig
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Encoding, Tokenizer
from .trace import Trace, parse_name, record_bytes
from .transformer import Transformer


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
class RunResult:
    """One traced call: the tokens on each axis, the model's output and the trace."""

    source: Encoding  # source tokens + [EOS]: the encoder axis (keys of cross-attention)
    target: Encoding  # [BOS] + target tokens: the decoder input axis (queries of the decoder)
    output_ids: list[int]  # argmax prediction at each decoder position (what position i predicts)
    output_tokens: list[str]  # the same as strings
    output_text: str  # generated text, or the teacher-forced predictions decoded
    generated: bool  # True when the target was generated greedily, False when teacher-forced
    logits: torch.Tensor  # (T, V) logits of that call, on the CPU
    probs: torch.Tensor  # (T, V) softmax of the logits
    trace: Trace  # every attention record of the call, batch size 1, on the model's device

    @property
    def stopped_at_eos(self) -> bool:
        """True when the model ended its output with [EOS] (False: generation hit the length limit)."""
        return bool(self.output_ids) and self.output_ids[-1] == EOS_ID


class Pipeline:
    """A loaded checkpoint: config, tokenizers, model (eval, frozen) and meta, on one device."""

    def __init__(self, config: ModelConfig, model: Transformer, src_tokenizer: Tokenizer,
                 tgt_tokenizer: Tokenizer, meta: dict[str, Any] | None = None, path: str | None = None):
        self.config, self.model = config, model
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        self.meta = meta or {}
        self.path = path

    @property
    def device(self) -> torch.device:
        return self.model.device

    def encode_source(self, text: str) -> Encoding:
        """Source text -> tokens + [EOS], truncated to max_len (``.truncated`` tells)."""
        return self.src_tokenizer.encode(text, max_len=self.config.max_len, eos=True)

    def encode_target(self, text: str) -> Encoding:
        """Target text -> [BOS] + tokens (the decoder input), truncated to max_len."""
        return self.tgt_tokenizer.encode(text, max_len=self.config.max_len, bos=True)

    def _pad(self, rows: list[list[int]]) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def _greedy(self, sources: list[Encoding], max_new_tokens: int | None) -> list[list[int]]:
        """Greedy decoding of a padded batch -> decoder inputs ([BOS] + tokens, no [EOS]) per row."""
        limit = self.config.max_len if max_new_tokens is None else min(self.config.max_len, 1 + max_new_tokens)
        src = self._pad([s.ids for s in sources])
        memory, src_padding, _ = self.model.encode(src)
        B = src.shape[0]
        tgt = torch.full((B, 1), BOS_ID, dtype=torch.long, device=self.device)
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        lengths = torch.full((B,), limit, dtype=torch.long, device=self.device)
        while tgt.shape[1] < limit:
            logits, _ = self.model.decode(tgt, memory, src_padding)
            nxt = logits[:, -1].argmax(-1)
            finished_now = ~done & (nxt == EOS_ID)
            lengths[finished_now] = tgt.shape[1]
            done |= finished_now
            if bool(done.all()):
                break
            tgt = torch.cat([tgt, torch.where(done, PAD_ID, nxt)[:, None]], dim=1)
        return [tgt[i, : int(lengths[i])].tolist() for i in range(B)]

    def greedy(self, source_text: str, max_new_tokens: int | None = None) -> list[int]:
        """Greedy decoding of one text -> the decoder input ids ([BOS] + output tokens, no [EOS]).

        Pass them to ``run(source_text, generated_ids=...)`` to trace that output without decoding again.
        """
        return self._greedy([self.encode_source(source_text)], max_new_tokens)[0]

    def generate(self, source_text: str | list[str], max_new_tokens: int | None = None) -> str | list[str]:
        """Greedy translation; stops at [EOS] or max length. A list of texts is decoded as one padded batch."""
        texts = [source_text] if isinstance(source_text, str) else list(source_text)
        if not texts:
            return []
        rows = self._greedy([self.encode_source(t) for t in texts], max_new_tokens)
        outs = [self.tgt_tokenizer.decode(r) for r in rows]
        return outs[0] if isinstance(source_text, str) else outs

    def capture_bytes(self, src_len: int, tgt_len: int, batch: int = 1,
                      capture: bool | Collection[str] = True) -> int:
        """Estimated bytes a traced call keeps (every record, or only the named ones), before running it."""
        shapes = {("encoder", "self_attn"): (src_len, src_len), ("decoder", "self_attn"): (tgt_len, tgt_len),
                  ("decoder", "cross_attn"): (tgt_len, src_len)}
        total = 0
        for name in self.model._capture_set(capture):
            stack, _, kind = parse_name(name)
            total += record_bytes(self.config, *shapes[stack, kind], batch)
        return total

    def run(self, source_text: str, target_text: str | None = None, max_new_tokens: int | None = None,
            capture: bool | Collection[str] = True, max_capture_bytes: int | None = None,
            generated_ids: list[int] | None = None) -> RunResult:
        """Trace one call: generate greedily when target_text is None, else teacher-force target_text.

        ``capture``: True for every attention, or the names to record. ``max_capture_bytes``: refuse
        (CaptureBudgetError, before the traced forward) when the estimate is above it.
        ``generated_ids``: the output of an earlier ``greedy(source_text)``, traced without decoding again.
        """
        return self.run_batch([source_text], None if target_text is None else [target_text], max_new_tokens,
                              capture, max_capture_bytes,
                              None if generated_ids is None else [generated_ids])[0]

    @torch.inference_mode()
    def run_batch(self, source_texts: list[str], target_texts: list[str] | None = None,
                  max_new_tokens: int | None = None, capture: bool | Collection[str] = True,
                  max_capture_bytes: int | None = None,
                  generated_ids: list[list[int]] | None = None) -> list[RunResult]:
        """``run`` for several texts in one padded forward; each result's trace is cut to its own lengths."""
        sources = [self.encode_source(t) for t in source_texts]
        if target_texts is None:
            if generated_ids is not None and len(generated_ids) != len(sources):
                raise ValueError("need one generated id list per source text")
            rows = self._greedy(sources, max_new_tokens) if generated_ids is None else generated_ids
            if any(not r or r[0] != BOS_ID or len(r) > self.config.max_len for r in rows):
                raise ValueError(f"generated ids must start with [BOS] and fit max_len={self.config.max_len}")
            targets = [self._encoding_from_ids(list(r)) for r in rows]
        else:
            if len(target_texts) != len(source_texts):
                raise ValueError("need one target text per source text")
            targets = [self.encode_target(t) for t in target_texts]
        S, T = max(len(s.ids) for s in sources), max(len(t.ids) for t in targets)
        if max_capture_bytes is not None:
            need = self.capture_bytes(S, T, len(sources), capture)
            if need > max_capture_bytes:
                raise CaptureBudgetError(
                    f"tracing {len(sources)} x ({S} source, {T} target) tokens would hold about "
                    f"{need / 2**20:.0f} MiB of attention records, over the {max_capture_bytes / 2**20:.0f} MiB "
                    f"budget: capture fewer records (one layer or kind at a time) or shorten the text")
        out = self.model(self._pad([s.ids for s in sources]), self._pad([t.ids for t in targets]), capture=capture)
        results = []
        for i, (s, t) in enumerate(zip(sources, targets, strict=True)):
            logits = out.logits[i, : len(t.ids)].float().cpu()
            out_ids = logits.argmax(-1).tolist()
            results.append(RunResult(
                source=s, target=t, output_ids=out_ids,
                output_tokens=[self.tgt_tokenizer.id_to_token(j) for j in out_ids],
                output_text=self.tgt_tokenizer.decode(t.ids[1:]) if target_texts is None
                else self.tgt_tokenizer.decode(out_ids),
                generated=target_texts is None, logits=logits, probs=torch.softmax(logits, -1),
                trace=out.trace.item(i, len(s.ids), len(t.ids)),
            ))
        return results

    def _encoding_from_ids(self, ids: list[int]) -> Encoding:
        tokens = [self.tgt_tokenizer.id_to_token(i) for i in ids]
        return Encoding(ids=ids, tokens=tokens, offsets=[(0, 0)] * len(ids), truncated=False,
                        n_text_tokens=len(ids) - 1)


def load(path: str | Path, device: str | torch.device = "auto") -> Pipeline:
    """Load a checkpoint directory onto ``device`` ("auto" = cuda, then mps, then cpu)."""
    dev = resolve_device(device)
    config, model, src_tok, tgt_tok, meta = load_checkpoint(path, device=dev)
    return Pipeline(config, model, src_tok, tgt_tok, meta, str(path))
