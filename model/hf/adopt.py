"""A transformers model the user already holds, traced for one call and handed back exactly as it was.

``adopted(model, tokenizer)`` is a context manager: inside it the model runs this app's attention (its
``config._attn_implementation`` set through transformers' ``set_attn_implementation``), in eval mode, with the
input pre-hooks a load adds (model.hf.interface.input_hook), behind an HFPipeline built by the same probe and
checks as a load from disk. On the way out, whatever happened inside, the hooks are taken off and the attention
implementation of every config and each module's training flag are put back; parameters and buffers are never
written (the call runs under ``torch.inference_mode``) and ``requires_grad`` is never touched.

The tokenizer the user holds is a transformers fast tokenizer (``PreTrainedTokenizerFast``, in transformers 5 the
``TokenizersBackend``) or a bare HF ``tokenizers.Tokenizer``; a copy of its backend is wrapped in the app's
TextTokenizer (which turns truncation and padding off: on the copy, never on the user's object).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import transformers
from tokenizers import Tokenizer as HFTokenizer
from torch import nn

from ..api import RunResult
from ..safe.errors import CheckpointError
from .interface import ATTENTION_NAME
from .loader import max_positions
from .pipeline import HFPipeline
from .tokens import TextTokenizer


class AdoptError(ValueError):
    """A model object (or its tokenizer) that this app cannot trace as it is; the message says what and why."""


def text_tokenizer(tokenizer, max_len: int) -> TextTokenizer:
    """The app's TextTokenizer over a copy of a fast tokenizer's backend (the user's object is left alone)."""
    backend = tokenizer if isinstance(tokenizer, HFTokenizer) else getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, HFTokenizer):
        raise AdoptError(
            f"{type(tokenizer).__name__} has no fast (HF tokenizers) backend: give a fast tokenizer "
            "(AutoTokenizer.from_pretrained(..., use_fast=True), or PreTrainedTokenizerFast(tokenizer_object=...))")
    return TextTokenizer(HFTokenizer.from_str(backend.to_str()), max_len)


def implementations(config) -> dict:
    """A config's attention implementation and its sub-configs', nested as ``set_attn_implementation`` takes
    them ({"": "sdpa", "text_config": {"": "sdpa"}, ...})."""
    out = {"": config._attn_implementation}
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None:
            out[key] = implementations(sub)
    return out


def configs_of(model: nn.Module) -> list:
    """Every config object the model's attention implementation lives in: each PreTrainedModel's config and
    their sub-configs (each once)."""
    found: dict[int, object] = {}

    def walk(config) -> None:
        if config is None or id(config) in found:
            return
        found[id(config)] = config
        for key in getattr(config, "sub_configs", {}) or {}:
            walk(getattr(config, key, None))

    for module in model.modules():
        if isinstance(module, transformers.PreTrainedModel):
            walk(module.config)
    return list(found.values())


def _restore(model, saved: dict, held: list[tuple[object, object]]) -> None:
    """The attention implementations back: through transformers' API, then any config it resolved differently
    (an implementation that was None, a sub-config without a module) set back to exactly what it held."""
    try:
        model.set_attn_implementation(saved)
    finally:
        for config, value in held:
            if config._attn_implementation_internal != value:
                config._attn_implementation_internal = value


@contextlib.contextmanager
def adopted(model, tokenizer, label: str | None = None) -> Iterator[HFPipeline]:
    """``model`` (a transformers PreTrainedModel) with ``tokenizer`` as a pipeline for the duration of the block;
    afterwards the model is as it was (attention implementation, hooks, training flags; parameters and buffers
    untouched). AdoptError when it cannot be traced (the model is restored then too)."""
    if not isinstance(model, transformers.PreTrainedModel):
        raise AdoptError(f"{type(model).__name__} is not a transformers PreTrainedModel: give (model, tokenizer) "
                         "with a model from transformers, a path, or a pipeline from model.load")
    max_len = max_positions(model.config, {"model_max_length": getattr(tokenizer, "model_max_length", None)})
    tok = text_tokenizer(tokenizer, max_len)
    vocab = model.get_input_embeddings().weight.shape[0]
    if tok.max_id >= vocab:
        raise AdoptError(f"the tokenizer maps a token to id {tok.max_id}, outside the model's {vocab}-token "
                         "vocabulary: is it this model's tokenizer?")
    label = label or f"{type(model).__name__} (in memory)"
    saved = implementations(model.config)
    held = [(c, c._attn_implementation_internal) for c in configs_of(model)]
    training = [(m, m.training) for m in model.modules()]
    hooks: list = []
    try:
        model.set_attn_implementation(ATTENTION_NAME)
        if model.config._attn_implementation != ATTENTION_NAME:  # transformers declined (it logs why)
            raise AdoptError(f"{type(model).__name__} cannot switch its attention implementation (it does not call "
                             "transformers' AttentionInterface), so its attention cannot be traced")
        model.eval()  # dropout off for the call; each module's flag is put back below
        try:
            pipe = HFPipeline.around(model, tok, max_len, label, hooks)
        except CheckpointError as e:
            raise AdoptError(str(e)) from None
        yield pipe
    finally:
        for handle in hooks:
            handle.remove()
        _restore(model, saved, held)
        for module, flag in training:
            module.training = flag


DETACHED_LOGITS_BYTES = 256 * 2**20  # a result traced from an adopted model keeps its (T, V) logits up to this


def detached(result: RunResult) -> RunResult:
    """``result`` with nothing that reads the adopted model again: its logits kept whole (up to
    DETACHED_LOGITS_BYTES; above, their top logits only: a whole row then says it cannot be computed), so that a
    change the user makes to their model later does not change the numbers of a call made before. A lazy trace's
    outputs read copies of the output projections (HFPipeline.around)."""
    kept = result.logits
    if kept is None or kept.head is None:
        return result
    T, V = kept.shape
    whole = kept.rows() if kept.whole is None and T * V * 4 <= DETACHED_LOGITS_BYTES else kept.whole
    return dataclasses.replace(result, logits=dataclasses.replace(kept, whole=whole, head=None, head_input=None))


__all__ = ["AdoptError", "DETACHED_LOGITS_BYTES", "adopted", "configs_of", "detached", "implementations",
           "text_tokenizer"]
