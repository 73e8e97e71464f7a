"""HFPipeline: a transformers model behind the same interface as the project's own Pipeline."""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from ..capture import Ablations, Recorder, validate_ablations
from ..checkpoint import CheckpointError
from ..inference import DECODE_SECONDS, CaptureBudgetError, ModelInfo, RunResult
from ..runtime import threads_for
from ..tokenizer import Encoding
from ..trace import parse_name
from .capture import traced_call
from .loader import FAMILY_NOTES, load_model
from .tokens import TextTokenizer


def hf_record_bytes(info: ModelInfo, tq: int, tk: int, extra_matrices: int = 0, dtype_bytes: int = 4) -> int:
    """Upper bound on one record's bytes: vectors (inputs, q, k, v, context, concat, output) and the (H, Tq, Tk)
    matrices (scores, scaled, masked, weights, plus adjusted/bias for models that have them)."""
    H, Hkv, d, dk = info.n_heads, info.n_kv_heads, info.d_model, info.d_k
    vectors = tq * d * 3 + tk * d + H * tq * dk * 2 + 2 * Hkv * tk * dk
    return (vectors + (4 + extra_matrices) * H * tq * tk) * dtype_bytes + tq * tk


class HFPipeline:
    """A model in the Hugging Face layout, run by transformers with every attention computed by ``attention()``."""

    def __init__(self, path: str | Path, device: torch.device):
        path = Path(path)
        try:
            model, config, tokenizer, kind, names, dtype, n_params, max_len = load_model(path, device)
        except NotImplementedError as e:  # an architecture this app cannot trace exactly
            raise CheckpointError(f"{path}: {e}") from None
        self.model, self.hf_config, self.tokenizer = model, config, tokenizer
        self.path = str(path)
        self.kind = kind
        self.meta: dict[str, Any] = {"task": f"{config.model_type} ({kind})", "family": config.model_type}
        text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
        n_heads = int(getattr(text_cfg, "num_attention_heads", 0) or getattr(text_cfg, "num_heads", 0)
                      or getattr(text_cfg, "n_head", 0) or getattr(text_cfg, "n_heads", 0))
        d_model = int(getattr(text_cfg, "hidden_size", 0) or getattr(text_cfg, "d_model", 0)
                      or getattr(text_cfg, "n_embd", 0) or getattr(text_cfg, "dim", 0))
        n_kv = int(getattr(text_cfg, "num_key_value_heads", None) or n_heads)
        d_k = int(getattr(text_cfg, "head_dim", None) or getattr(text_cfg, "d_kv", None) or d_model // max(n_heads, 1))
        n_enc = len({n.split(".")[1] for n in names if n.startswith("encoder.")})
        n_dec = len({n.split(".")[1] for n in names if n.startswith("decoder.")})
        self.info = ModelInfo(kind=kind, family=str(config.model_type), n_encoder_layers=n_enc, n_decoder_layers=n_dec,
                              n_heads=n_heads, n_kv_heads=n_kv, d_model=d_model, d_k=d_k, max_len=max_len,
                              dtype=str(dtype).removeprefix("torch."), parameters=n_params, record_names=tuple(names),
                              notes=FAMILY_NOTES.get(str(config.model_type), {}))
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        eos = eos if eos is not None else getattr(config, "eos_token_id", None)
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
        start = getattr(config, "decoder_start_token_id", None)
        if start is None and gen is not None:
            start = getattr(gen, "decoder_start_token_id", None)
        self.decoder_start_id = start
        if kind == "encoder-decoder" and start is None:
            raise CheckpointError(f"{path / 'config.json'}: an encoder-decoder model needs decoder_start_token_id")
        try:
            self._check_coverage()
        except NotImplementedError as e:
            raise CheckpointError(f"{path}: {e}") from None

    # ---- shared interface ---------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def config(self):
        return self.info

    def id_to_token(self, i: int) -> str:
        return self.tokenizer.label(i)

    def encode_source(self, text: str) -> Encoding:
        """The encoder's input (encoder-only and encoder-decoder models), with the model's special tokens."""
        return self.tokenizer.encode(text)

    def encode_target(self, text: str) -> Encoding:
        """The decoder's input: the text itself for a decoder-only model; for an encoder-decoder model the target
        shifted right ([decoder start] + target tokens, without the final end-of-sequence token)."""
        if self.kind == "decoder-only":
            return self.tokenizer.encode(text)
        enc = self.tokenizer.encode(text, max_len=self.info.max_len)
        ids = list(enc.ids)
        if ids and ids[-1] in self.eos_ids:
            ids = ids[:-1]
        return self.tokenizer.encoding([self.decoder_start_id] + ids[: self.info.max_len - 1],
                                       truncated=enc.truncated, n_text_tokens=enc.n_text_tokens)

    def lengths(self, source_text: str | None, target_text: str | None,
                generated_ids: list[int] | None = None) -> tuple[int, int]:
        if self.kind == "decoder-only":
            return 0, len(generated_ids) if generated_ids is not None else len(self.encode_target(source_text).ids)
        S = len(self.encode_source(source_text).ids)
        if self.kind == "encoder-only":
            return S, 0
        T = len(generated_ids) if generated_ids is not None else (
            len(self.encode_target(target_text).ids) if target_text is not None else 1)
        return S, T

    def capture_bytes(self, src_len: int, tgt_len: int, batch: int = 1,
                      capture: bool | Collection[str] = True) -> int:
        names = self.info.record_names if capture is True else (() if capture is False else capture)
        shapes = {("encoder", "self_attn"): (src_len, src_len), ("decoder", "self_attn"): (tgt_len, tgt_len),
                  ("decoder", "cross_attn"): (tgt_len, src_len)}
        extra = 2 if self.info.family in ("t5", "gemma2") else 0
        size = 2 if self.info.dtype in ("float16", "bfloat16") else 4
        return batch * sum(hf_record_bytes(self.info, *shapes[parse_name(n)[0], parse_name(n)[2]], extra, size)
                           for n in names)

    # ---- running ------------------------------------------------------------------------------------------------
    def _tensor(self, ids: list[int]) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def _forward(self, src: list[int] | None, tgt: list[int] | None, recorder: Recorder, batch: int = 1):
        """One forward of the (batch-repeated) input within a traced call."""
        valid, kwargs = {}, {"use_cache": False, "return_dict": True}
        if self.kind == "decoder-only":
            ids = self._tensor(tgt).expand(batch, -1)
            valid["decoder"] = torch.ones_like(ids, dtype=torch.bool)
            kwargs.update(input_ids=ids, attention_mask=torch.ones_like(ids))
        else:
            ids = self._tensor(src).expand(batch, -1)
            valid["encoder"] = torch.ones_like(ids, dtype=torch.bool)
            kwargs.update(input_ids=ids, attention_mask=torch.ones_like(ids))
            if self.kind == "encoder-decoder":
                dec = self._tensor(tgt).expand(batch, -1)
                valid["decoder"] = torch.ones_like(dec, dtype=torch.bool)
                kwargs.update(decoder_input_ids=dec)
        flops = 2 * self.info.parameters * ids.shape[0] * (len(src or []) + len(tgt or []))
        with traced_call(recorder, valid) as call, threads_for(flops, self.device):
            out = self.model(**kwargs)
        return out, call

    def _check_coverage(self) -> None:
        """A first traced call on a short text: every named attention must run exactly once through the function."""
        src = self.encode_source("Hello world").ids if self.kind != "decoder-only" else None
        tgt = None
        if self.kind == "decoder-only":
            tgt = self.encode_target("Hello world").ids
        elif self.kind == "encoder-decoder":
            tgt = [self.decoder_start_id]
        _, call = self._forward(src, tgt, Recorder(capture=False))
        if sorted(call.calls) != sorted(self.info.record_names):
            raise CheckpointError(
                f"{self.path}: {self.info.family} computes attention outside transformers' attention interface "
                f"(ran {sorted(set(call.calls))}, expected {list(self.info.record_names)}); it cannot be traced")

    @torch.inference_mode()
    def ablated_logits(self, result: RunResult, ablations: list[dict]) -> torch.Tensor:
        """(N, T, V) logits of ``result``'s input run N times in one batch, item n with ``ablations[n]``."""
        out, _ = self._forward(None if result.source is None else result.source.ids,
                               None if result.target is None else result.target.ids,
                               Recorder(capture=False, ablations=list(ablations)), batch=len(ablations))
        return out.logits.float().cpu()

    @torch.inference_mode()
    def _greedy(self, src: list[int] | None, prefix: list[int], max_new_tokens: int | None,
                ablations=None) -> tuple[list[int], str]:
        """Greedy decoding with transformers' own key/value cache (nothing recorded); with ``ablations``, the whole
        prefix runs again at each step (a mean over positions needs all of them).

        Returns (prefix + generated ids, the end-of-sequence token excluded; why it stopped: eos/limit/time)."""
        room = self.info.max_len - len(prefix)
        n_new = room if max_new_tokens is None else min(room, max(0, max_new_tokens))
        deadline = time.perf_counter() + DECODE_SECONDS
        if ablations:
            seq = list(prefix)
            for _ in range(n_new):
                if time.perf_counter() > deadline:
                    return seq, "time"
                out, _ = self._forward(src, seq, Recorder(capture=False, ablations=ablations))
                nxt = int(out.logits[0, -1].argmax())
                if nxt in self.eos_ids:
                    return seq, "eos"
                seq.append(nxt)
            return seq, "limit"
        seq, new, past = list(prefix), list(prefix), None
        encoder_outputs = None
        if self.kind == "encoder-decoder":
            encoder_outputs = self.model.get_encoder()(input_ids=self._tensor(src),
                                                       attention_mask=torch.ones(1, len(src), device=self.device))
        for _ in range(n_new):
            if time.perf_counter() > deadline:
                return seq, "time"
            if self.kind == "encoder-decoder":
                out = self.model(encoder_outputs=encoder_outputs, decoder_input_ids=self._tensor(new),
                                 attention_mask=torch.ones(1, len(src), device=self.device), past_key_values=past,
                                 use_cache=True, return_dict=True)
            else:
                out = self.model(input_ids=self._tensor(new), past_key_values=past, use_cache=True, return_dict=True)
            past = out.past_key_values
            nxt = int(out.logits[0, -1].argmax())
            if nxt in self.eos_ids:
                return seq, "eos"
            seq.append(nxt)
            new = [nxt]
        return seq, "limit"

    def greedy(self, source_text: str, max_new_tokens: int | None = None) -> list[int]:
        """Greedy decoding: the decoder input ids (prefix + output). Encoder-only models have no decoder."""
        return self.decode(source_text, max_new_tokens)[0]

    def decode(self, source_text: str, max_new_tokens: int | None = None) -> tuple[list[int], str]:
        """Greedy decoding -> (decoder input ids, why it stopped: "eos", "limit" or "time")."""
        if self.kind == "encoder-only":
            raise ValueError("an encoder-only model does not generate")
        if self.kind == "decoder-only":
            return self._greedy(None, self.encode_target(source_text).ids, max_new_tokens)
        return self._greedy(self.encode_source(source_text).ids, [self.decoder_start_id], max_new_tokens)

    def generate(self, source_text: str | list[str], max_new_tokens: int | None = None) -> str | list[str]:
        texts = [source_text] if isinstance(source_text, str) else list(source_text)
        outs = []
        for text in texts:
            ids = self.greedy(text, max_new_tokens)
            start = len(self.encode_target(text).ids) if self.kind == "decoder-only" else 1
            outs.append(self.tokenizer.decode(ids[start:]))
        return outs[0] if isinstance(source_text, str) else outs

    def run(self, source_text: str, target_text: str | None = None, max_new_tokens: int | None = None,
            capture: bool | Collection[str] = True, max_capture_bytes: int | None = None,
            generated_ids: list[int] | None = None, *, lazy: bool = False, ablations: Ablations | None = None,
            max_lazy_cache_bytes: int | None = None) -> RunResult:
        """Trace one call (see Pipeline.run). Encoder-only: ``source_text`` is the text, ``result.source`` its
        tokens and ``result.logits`` the model's head over them (e.g. masked-LM logits). Decoder-only: the text is
        the decoder's input (``result.target``), extended greedily first when ``max_new_tokens`` is given."""
        names = self.info.record_names
        if not isinstance(capture, bool):
            unknown = sorted(set(capture) - set(names))
            if unknown:
                raise ValueError(f"cannot capture {unknown}: this model has {list(names)}")
        validate_ablations(ablations, names, {n: self.info.n_heads for n in names})
        source = target = None
        generated, stopped, n_prompt = False, "", 0
        if self.kind != "decoder-only":
            source = self.encode_source(source_text)
        if self.kind == "decoder-only":
            prompt = self.encode_target(source_text)
            n_prompt = len(prompt.ids)
            if generated_ids is not None or max_new_tokens:
                ids, stopped = (list(generated_ids), "") if generated_ids is not None else \
                    self._greedy(None, prompt.ids, max_new_tokens, ablations)
                generated = True
                target = self.tokenizer.encoding(ids, truncated=prompt.truncated, n_text_tokens=prompt.n_text_tokens,
                                                 offsets=list(prompt.offsets) + [(0, 0)] * (len(ids) - n_prompt))
            else:
                target = prompt
        elif self.kind == "encoder-decoder":
            if target_text is None:
                ids, stopped = (list(generated_ids), "") if generated_ids is not None else \
                    self._greedy(source.ids, [self.decoder_start_id], max_new_tokens, ablations)
                generated = True
                target = self.tokenizer.encoding(ids)
            else:
                target = self.encode_target(target_text)
        S = 0 if source is None else len(source.ids)
        T = 0 if target is None else len(target.ids)
        if max_capture_bytes is not None and not lazy:
            need = self.capture_bytes(S, T, 1, capture)
            if need > max_capture_bytes:
                raise CaptureBudgetError(
                    f"tracing ({S} source, {T} target) tokens would hold about {need / 2**20:.0f} MiB of attention "
                    f"records, over the {max_capture_bytes / 2**20:.0f} MiB budget: capture fewer records or "
                    f"shorten the text")
        recorder = Recorder(capture, lazy=lazy, ablations=ablations)
        out, _ = self._forward(None if source is None else source.ids, None if target is None else target.ids,
                               recorder)
        logits = getattr(out, "logits", None)
        axis = target if self.kind != "encoder-only" else source
        if logits is not None and logits.dim() == 3 and logits.shape[1] == len(axis.ids):
            logits = logits[0].float().cpu()
            out_ids = logits.argmax(-1).tolist()
        else:
            logits = None
            out_ids = []
        if generated and self.kind == "decoder-only":
            text = self.tokenizer.decode(target.ids[n_prompt:])
        elif generated:
            text = self.tokenizer.decode(target.ids[1:])
        else:
            text = self.tokenizer.decode(out_ids)
        if generated and not stopped:  # traced from given ids: did the model end there?
            stopped = "eos" if out_ids and out_ids[-1] in self.eos_ids else "limit"
        src_ids = None if source is None else self._tensor(source.ids)
        tgt_ids = None if target is None else self._tensor(target.ids)
        return RunResult(source=source, target=target, output_ids=out_ids,
                         output_tokens=[self.tokenizer.label(i) for i in out_ids], output_text=text,
                         generated=generated, logits=logits,
                         trace=recorder.trace(src_ids, tgt_ids, max_lazy_cache_bytes), n_prompt=n_prompt,
                         stopped=stopped)


def load_hf(path: str | Path, device: torch.device) -> HFPipeline:
    """Open a Hugging Face layout directory (offline, safetensors only, no remote code)."""
    return HFPipeline(path, device)


__all__ = ["HFPipeline", "TextTokenizer", "load_hf"]
