"""HFPipeline: a transformers model as a pipeline (the contract: model.api.Pipeline)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..api import ForwardOutput, ModelInfo, Pipeline
from ..call import CallMethods
from ..capture.recorder import Recorder
from ..core.attention import RecordShape
from ..core.encoding import Encoding
from ..core.names import RecordName
from ..safe.errors import CheckpointError
from .families import family, name_modules, ordered
from .interface import ModuleSpec, call_context, head_input_hook, input_hook
from .loader import load_model
from .tokens import TextTokenizer
from .vision import HFVisionPipeline, vision_family

if TYPE_CHECKING:
    from ..safe.paths import PathPolicy

PROBE_TEXT = "Hello world"


def _attr(obj, path: str | None):
    for part in (path or "").split("."):
        if not part:
            continue
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class HFPipeline(CallMethods, Pipeline):
    """A model in the Hugging Face layout, run by transformers with every attention computed by ``attention()``."""

    def __init__(self, path: str | Path, device: torch.device, policy: PathPolicy | None = None):
        path = Path(path)
        try:
            model, config, tokenizer, dtype, n_params, max_len = load_model(path, device, policy)
        except NotImplementedError as e:  # an architecture this app cannot trace exactly
            raise CheckpointError(f"{path}: {e}") from None
        self._setup(model, config, tokenizer, dtype, n_params, max_len, path, hooks=[])

    @classmethod
    def around(cls, model, tokenizer: TextTokenizer, max_len: int, label: str, hooks: list) -> "HFPipeline":
        """A pipeline around a model already built and switched to this app's attention (model.hf.adopt does both,
        for one call): the same probe and checks as a load. The pre-hooks it adds go into ``hooks`` (their handles),
        so that the caller can take them off again, even when a check fails half-way."""
        self = cls.__new__(cls)
        floats = [p for p in model.parameters() if p.is_floating_point()]
        dtype = max({p.dtype for p in floats}, key=lambda d: sum(p.numel() for p in floats if p.dtype == d)) \
            if floats else torch.float32
        n_params = sum(p.numel() for p in model.parameters())
        self._setup(model, model.config, tokenizer, dtype, n_params, max_len, Path(label), hooks=hooks)
        # a lazy trace computes an attention's output later with its W_o: from a copy, so that a result outlives
        # the user's later changes to their model (a loaded model is the app's own and never changes)
        self.specs = {m: dataclasses.replace(spec, out_proj=copy.deepcopy(spec.out_proj))
                      for m, spec in self.specs.items()}
        return self

    def _setup(self, model, config, tokenizer: TextTokenizer, dtype: torch.dtype, n_params: int, max_len: int,
               path: Path, hooks: list) -> None:
        """What a pipeline knows of its model: sizes, special ids, the probe that names its attention modules, the
        pre-hooks (their handles appended to ``hooks``), the coverage check."""
        self.model, self.tokenizer = model, tokenizer
        self._config = config
        self.path = str(path)
        model_type = str(config.model_type)
        self.family = family(model_type)
        text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
        n_heads = int(getattr(text_cfg, "num_attention_heads", 0) or getattr(text_cfg, "num_heads", 0)
                      or getattr(text_cfg, "n_head", 0) or getattr(text_cfg, "n_heads", 0))
        d_model = int(getattr(text_cfg, "hidden_size", 0) or getattr(text_cfg, "d_model", 0)
                      or getattr(text_cfg, "n_embd", 0) or getattr(text_cfg, "dim", 0))
        n_kv = int(getattr(text_cfg, "num_key_value_heads", None) or n_heads)
        d_k = int(getattr(text_cfg, "head_dim", None) or getattr(text_cfg, "d_kv", None) or d_model // max(n_heads, 1))
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        eos = eos if eos is not None else getattr(config, "eos_token_id", None)
        self.eos_ids = frozenset(int(e) for e in (eos if isinstance(eos, (list, tuple)) else
                                                  ([] if eos is None else [eos])))
        pad = getattr(config, "pad_token_id", None)
        self.pad_id = int(pad) if isinstance(pad, int) and pad >= 0 else 0
        start = getattr(config, "decoder_start_token_id", None)
        if start is None and gen is not None:
            start = getattr(gen, "decoder_start_token_id", None)
        self.decoder_start_id = start
        arch = "encoder-decoder" if getattr(config, "is_encoder_decoder", False) else None
        vocab = int(model.get_input_embeddings().weight.shape[0])
        if arch == "encoder-decoder":
            if start is None:
                raise CheckpointError(f"{path / 'config.json'}: an encoder-decoder model needs decoder_start_token_id")
            if not isinstance(start, int) or not 0 <= start < vocab:
                raise CheckpointError(f"{path / 'config.json'}: decoder_start_token_id = {start!r} is outside the "
                                      f"model's {vocab}-token vocabulary")
        try:
            seen = self._probe(arch)
            if arch is None:
                arch = "decoder-only" if any(getattr(m, "is_causal", False) for m in seen) else "encoder-only"
            self.specs: dict[nn.Module, ModuleSpec] = name_modules(model, seen, arch, model_type)
        except NotImplementedError as e:
            raise CheckpointError(f"{path}: {e}") from None
        for module, spec in self.specs.items():  # once, at load: hand each call the projections' inputs
            hooks.append(module.register_forward_pre_hook(input_hook(spec.key_input), with_kwargs=True))
        head_module = self._head_module()
        if head_module is not None:  # and the output head's input, to a call that runs the head itself
            hooks.append(head_module.register_forward_pre_hook(head_input_hook, with_kwargs=True))
        self._head_apart = False  # probed below (_check_coverage): the call may run this model's head itself
        names = ordered(self.specs)
        n_enc = len({RecordName.parse(n).layer for n in names if n.startswith("encoder.")})
        n_dec = len({RecordName.parse(n).layer for n in names if n.startswith("decoder.")})
        has_head = bool(getattr(model, "get_output_embeddings", lambda: None)() is not None)
        # probed from the signature: transformers' heads that can run on some positions only
        self._keeps_logits = "logits_to_keep" in inspect.signature(type(model).forward).parameters
        self.info = ModelInfo(arch=arch, family=model_type, n_encoder_layers=n_enc, n_decoder_layers=n_dec,
                              n_heads=n_heads, n_kv_heads=n_kv, d_model=d_model, d_k=d_k, max_len=max_len,
                              dtype=str(dtype).removeprefix("torch."), parameters=n_params, record_names=tuple(names),
                              notes=dict(self.family.notes) if self.family else {}, has_head=has_head,
                              vocab_size=vocab)
        self.meta: dict[str, Any] = {"task": f"{model_type} ({arch})", "family": model_type,
                                     "name_or_path": str(getattr(config, "_name_or_path", "") or "")}
        try:
            self._check_coverage()
        except NotImplementedError as e:  # an argument the function does not compute (attention sinks...)
            raise CheckpointError(f"{path}: {e}") from None

    # ---- the contract -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize_source(self, text: str) -> Encoding:
        """The encoder's input (encoder-only and encoder-decoder models), with the model's special tokens."""
        return self.tokenizer.tokenize(text)

    def tokenize_target(self, text: str) -> Encoding:
        """The decoder's input: the text itself for a decoder-only model; for an encoder-decoder model the target
        shifted right ([decoder start] + target tokens, without the final end-of-sequence token)."""
        if self.arch == "decoder-only":
            return self.tokenizer.tokenize(text)
        enc = self.tokenizer.tokenize(text, max_len=self.info.max_len)
        ids = list(enc.ids)
        if ids and ids[-1] in self.eos_ids:
            ids = ids[:-1]
        return self.tokenizer.encoding([self.decoder_start_id] + ids[: self.info.max_len - 1],
                                       truncated=enc.truncated, n_text_tokens=enc.n_text_tokens)

    def decoder_start(self) -> list[int]:
        return [int(self.decoder_start_id)]

    def encoding_from_ids(self, ids: list[int], prompt: Encoding | None = None) -> Encoding:
        if prompt is None:
            return self.tokenizer.encoding(ids)
        return self.tokenizer.encoding(ids, truncated=prompt.truncated, n_text_tokens=prompt.n_text_tokens,
                                       offsets=list(prompt.offsets) + [(0, 0)] * (len(ids) - len(prompt.ids)))

    def token_label(self, token_id: int) -> str:
        return self.tokenizer.label(token_id)

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.detokenize(ids)

    def record_shape(self, name: str, src_len: int, tgt_len: int, batch: int = 1) -> RecordShape:
        n = RecordName.parse(name)
        tq = src_len if n.query_stack == "encoder" else tgt_len
        tk = src_len if n.key_stack == "encoder" else tgt_len
        info = self.info
        size = 2 if info.dtype in ("float16", "bfloat16") else 4
        return RecordShape(batch=batch, n_heads=info.n_heads, n_kv_heads=info.n_kv_heads, tq=tq, tk=tk,
                           d_k=info.d_k, d_v=info.d_k, d_query_in=info.d_model, d_key_in=info.d_model,
                           d_out=info.d_model, adjusted="adjusted" in info.stages, element_size=size)

    def forward(self, src, tgt, recorder: Recorder | None, *, src_valid=None, tgt_valid=None,
                logits_at=None, run_head=True) -> ForwardOutput:
        valid, kwargs = {}, {"use_cache": False, "return_dict": True}
        apart = not run_head and logits_at is None and self._head_apart
        keep = logits_at is not None and self._keeps_logits
        if keep:  # transformers' own option: the head runs on those positions only
            kwargs["logits_to_keep"] = torch.as_tensor(logits_at, dtype=torch.long, device=self.device)
        want_hidden = recorder is not None and recorder.keep_hidden
        if self.arch == "decoder-only":
            tgt_valid = torch.ones_like(tgt, dtype=torch.bool) if tgt_valid is None else tgt_valid
            valid["decoder"] = tgt_valid
            kwargs.update(input_ids=tgt, attention_mask=tgt_valid.long())
        else:
            src_valid = torch.ones_like(src, dtype=torch.bool) if src_valid is None else src_valid
            valid["encoder"] = src_valid
            kwargs.update(input_ids=src, attention_mask=src_valid.long())
            if self.arch == "encoder-decoder":
                tgt_valid = torch.ones_like(tgt, dtype=torch.bool) if tgt_valid is None else tgt_valid
                valid["decoder"] = tgt_valid
                kwargs.update(decoder_input_ids=tgt, decoder_attention_mask=tgt_valid.long())
        if want_hidden:
            kwargs["output_hidden_states"] = True
        with call_context(recorder if recorder is not None else Recorder(capture=False), self.specs, valid,
                          keep_head_input=apart) as call:
            out = self.model(**kwargs)
        if want_hidden:
            for stack, field_name in (("encoder", "encoder_hidden_states"), ("decoder", "decoder_hidden_states")):
                states = getattr(out, field_name, None)
                if states is not None:
                    for h in states:
                        recorder.record_hidden(stack, h)
            states = getattr(out, "hidden_states", None)
            if states is not None and self.arch != "encoder-decoder":
                for h in states:
                    recorder.record_hidden(self.info.output_stack, h)
        if apart and call.head_input is not None:  # the head ran on no position: the call runs it
            return ForwardOutput(logits=None, head_input=call.head_input)
        logits = getattr(out, "logits", None)
        if logits is not None and logits.dim() == 3:
            if logits_at is not None and not keep:  # a head without logits_to_keep: computed in full, then cut
                logits = logits[:, torch.as_tensor(logits_at, dtype=torch.long, device=logits.device)]
            return ForwardOutput(logits=logits)
        last = getattr(out, "last_hidden_state", None)
        if last is not None and logits_at is not None:
            last = last[:, torch.as_tensor(logits_at, dtype=torch.long, device=last.device)]
        return ForwardOutput(logits=None, last_hidden=last)

    @torch.inference_mode()
    def greedy_batch(self, src_ids, prefixes, n_new, deadline):
        """transformers' own key/value cache, nothing recorded; one sequence at a time."""
        out = []
        for i, prefix in enumerate(prefixes):
            src = None if src_ids is None else src_ids[i]
            out.append(self._greedy_one(src, list(prefix), n_new, deadline))
        return out

    def _greedy_one(self, src, prefix, n_new, deadline):
        seq, new, past = list(prefix), list(prefix), None
        encoder_outputs = None
        if self.arch == "encoder-decoder":
            encoder_outputs = self.model.get_encoder()(input_ids=self._tensor(src),
                                                       attention_mask=torch.ones(1, len(src), device=self.device))
        for _ in range(n_new):
            if time.perf_counter() > deadline:
                return seq, "time"
            if self.arch == "encoder-decoder":
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

    def unembed(self, stack: str, hidden: torch.Tensor) -> torch.Tensor:
        """The family's final norm (declared in model.hf.families) and output head on a residual stream."""
        fam = self.family
        if fam is None or fam.head is None or stack not in fam.final_norm:
            raise NotImplementedError(f"{self.info.family}: the logit lens does not know this family's final norm "
                                      "and output head")
        x = hidden.to(self.device, dtype=next(self.model.parameters()).dtype)
        path = fam.final_norm[stack]  # None: the family has no final norm (not the model itself)
        norm = None if path is None else _attr(self.model, path)
        if path is not None and norm is None:
            raise NotImplementedError(f"{self.info.family}: no {path} in this model")
        if norm is not None:
            x = norm(x)
        if fam.head_scale and getattr(self._config, "tie_word_embeddings", False):
            x = x * (self.info.d_model ** -0.5)
        return self._head(x)

    def output_head(self, head_input: torch.Tensor) -> torch.Tensor:
        """What the family's output head module was handed (after the final norm, and T5's rescaling) -> logits,
        through the same modules and operations as the model's forward (bias and softcap included)."""
        if not self._head_apart:
            raise NotImplementedError(f"{self.info.family}: the call does not run this model's output head itself")
        return self._head(head_input.to(self.device))

    def _head_module(self) -> nn.Module | None:
        """The module the family's head starts with (the one the output head's pre-hook sits on), if declared."""
        fam = self.family
        if fam is None or fam.head is None:
            return None
        path = {"distilbert_head": "vocab_transform", "modernbert_head": "head"}.get(fam.head, fam.head)
        module = _attr(self.model, path)
        return module if isinstance(module, nn.Module) else None

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """The family's output head from its first module on: the head, a final logits bias, a softcap."""
        fam = self.family
        if fam.head == "distilbert_head":
            m = self.model
            x = m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(x))))
        elif fam.head == "modernbert_head":
            x = self.model.decoder(self.model.head(x))
        else:
            head = _attr(self.model, fam.head)
            if head is None:
                raise NotImplementedError(f"{self.info.family}: this model has no output head ({fam.head})")
            x = head(x)
        if fam.logits_bias:
            bias = _attr(self.model, fam.logits_bias)
            if bias is not None:
                x = x + bias
        if fam.softcap:
            cap = getattr(self._config.get_text_config() if hasattr(self._config, "get_text_config") else
                          self._config, fam.softcap, None)
            if cap:
                x = torch.tanh(x / cap) * cap
        return x

    def same_vocabulary(self, other: Pipeline) -> bool:
        return isinstance(other, HFPipeline) and other.tokenizer.hf.to_str() == self.tokenizer.hf.to_str() and \
            other.decoder_start_id == self.decoder_start_id

    # ---- loading ------------------------------------------------------------------------------------------------
    def _tensor(self, ids: list[int]) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=self.device)

    def _probe_ids(self, arch: str | None) -> tuple[list[int] | None, list[int] | None]:
        if arch == "encoder-decoder":
            return self.tokenizer.tokenize(PROBE_TEXT).ids, [int(self.decoder_start_id)]
        ids = self.tokenizer.tokenize(PROBE_TEXT).ids
        return ids, None

    @torch.inference_mode()
    def _probe(self, arch: str | None) -> list[nn.Module]:
        """One forward on a short text with no recorder: which modules call the attention function."""
        src, tgt = self._probe_ids(arch)
        kwargs = {"input_ids": self._tensor(src), "use_cache": False, "return_dict": True}
        if tgt is not None:
            kwargs["decoder_input_ids"] = self._tensor(tgt)
        with call_context(None, {}, {}) as call:
            self.model(**kwargs)
        return list(call.seen)

    def _check_coverage(self) -> None:
        """A traced call on a short text: every named attention runs exactly once through the function; the
        stages its records have (an ``adjusted`` one where a bias or softcap applies)."""
        src, tgt = self._probe_ids(self.arch)
        if self.arch == "decoder-only":
            src, tgt = None, src
        recorder = Recorder(capture=True)
        with torch.inference_mode():
            self.forward(None if src is None else self._tensor(src), None if tgt is None else self._tensor(tgt),
                         recorder)
        if sorted(recorder.calls) != sorted(self.info.record_names):
            raise CheckpointError(
                f"{self.path}: {self.info.family} computes attention outside transformers' attention interface "
                f"(ran {sorted(set(recorder.calls))}, expected {list(self.info.record_names)}); it cannot be traced")
        if any(r.adjusted is not None for r in recorder.records.values()):
            self.info = dataclasses.replace(self.info, stages=("scores", "scaled", "adjusted", "masked", "weights"))
        self._head_apart = self._probe_head_apart(src, tgt)

    @torch.inference_mode()
    def _probe_head_apart(self, src: list[int] | None, tgt: list[int] | None) -> bool:
        """Whether a call may run this model's output head itself: the head's pre-hook is handed its input, and the
        family's head on that input gives the forward's own logits, bitwise (else the call keeps whole logits)."""
        if self._head_module() is None:
            return False
        src_t, tgt_t = (None if ids is None else self._tensor(ids) for ids in (src, tgt))
        self._head_apart = True
        try:
            logits = self.forward(src_t, tgt_t, None).logits
            apart = self.forward(src_t, tgt_t, None, run_head=False)
            return apart.head_input is not None and logits is not None and \
                torch.equal(self._head(apart.head_input), logits)
        except (NotImplementedError, RuntimeError, TypeError, ValueError, IndexError, AttributeError):
            return False
        finally:
            self._head_apart = False


def load_hf(path: str | Path, device: torch.device, policy: PathPolicy | None = None) -> Pipeline:
    """Open a Hugging Face layout directory (offline, safetensors only, no remote code): an HFPipeline, or for an
    image model (model.hf.families declares which) an HFVisionPipeline."""
    if vision_family(path, policy) is not None:
        return HFVisionPipeline(path, device, policy)
    return HFPipeline(path, device, policy)


__all__ = ["HFPipeline", "TextTokenizer", "load_hf"]
