"""transformers' attention, computed by this project's ``attention()`` and recorded per call.

``ATTENTION_NAME`` is registered in transformers' AttentionInterface (the attention function) and in its
AttentionMaskInterface (a mask function that always materialises the full boolean mask: padding, causal and
sliding window, True = may attend). A model loaded with ``attn_implementation=ATTENTION_NAME`` then calls
``inspector_attention`` for every attention; within a ``call_context`` (one traced call) that function **is** the
model's attention, so every recorded number is the number the model used. Outside a traced call it hands over
to transformers' own SDPA function.

What the function needs besides its arguments comes from the per-call context: the pipeline's module specs
(which attention a module is), which positions are real tokens, and the projections' inputs, handed over by a
forward pre-hook that each attention module got once at load (it writes into the current call's context only).
The output head got one too: a call that runs the head itself (a block of positions at a time) takes its input.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from ..core.attention import attention
from ..core.masks import MaskSpec, describe
from ..core.names import RecordName
from ..core.recording import Recording

ATTENTION_NAME = "attention_inspector"

# Keyword arguments that never change the attention numbers (bookkeeping passed down by the models).
BOOKKEEPING = {"position_ids", "use_cache", "cache_position", "output_attentions", "encoder_hidden_states",
               "past_key_values", "past_key_value", "layer_head_mask", "head_mask", "output_hidden_states",
               "return_dict", "is_causal", "sliding_window", "position_bias", "softcap", "cu_seq_lens_q",
               "cu_seq_lens_k", "max_length_q", "max_length_k", "deterministic", "output_router_logits",
               "target_dtype"}
KEY_INPUTS = ("key_value_states", "encoder_hidden_states")  # where a cross-attention module takes its keys' input


@dataclass(frozen=True)
class ModuleSpec:
    """How one attention module of a loaded model is named and read (set once at load, never changed)."""

    name: str  # trace name, e.g. "decoder.3.self_attn"
    model_type: str  # for error messages
    out_proj: Callable[[torch.Tensor], torch.Tensor] | None  # the output projection W_o (None: not recorded)
    key_input: str | None  # cross-attention: the forward argument holding the keys' and values' input


@dataclass
class CallContext:
    """One call into a transformers model: its recorder (None: a probe), which attention each module is, which
    positions of each stack are real tokens, and what the modules' pre-hooks handed over."""

    recorder: Recording | None
    specs: Mapping[nn.Module, ModuleSpec]
    valid: dict[str, torch.Tensor]  # "encoder" / "decoder" -> bool (B, T): True = a real token, not padding
    inputs: dict[int, tuple[torch.Tensor | None, torch.Tensor | None]] = field(default_factory=dict)
    seen: list[nn.Module] = field(default_factory=list)  # modules that called the attention function, in order
    keep_head_input: bool = False  # the call runs the output head itself: the model's head runs on no position
    head_input: torch.Tensor | None = None  # (B, T, d) what the model's output head was handed


_CALL: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("hf_call", default=None)


@contextlib.contextmanager
def call_context(recorder: Recording | None, specs: Mapping[nn.Module, ModuleSpec],
                valid: dict[str, torch.Tensor], keep_head_input: bool = False) -> Iterator[CallContext]:
    """Within this block (in this thread or task only), attention calls are recorded by ``recorder`` (None: only
    which modules call the attention function is noted, for the load-time probe). ``keep_head_input``: the output
    head's input is handed to the call, and the head itself runs on no position (``head_input_hook``)."""
    context = CallContext(recorder=recorder, specs=specs, valid=valid, keep_head_input=keep_head_input)
    token = _CALL.set(context)
    try:
        yield context
    finally:
        _CALL.reset(token)


def input_hook(key_input: str | None) -> Callable:
    """A forward pre-hook (with kwargs) handing the module's hidden states (and its keys' input) to the current
    call, if any: what the module's projections are applied to, not a recomputation."""
    def hook(module: nn.Module, args: tuple, kwargs: dict):
        call = _CALL.get()
        if call is None or call.recorder is None:
            return None
        hidden = args[0] if args else kwargs.get("hidden_states")
        keys = None
        if key_input is not None:
            keys = kwargs.get(key_input)
            if keys is None and len(args) > 1:
                try:
                    keys = inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments.get(key_input)
                except TypeError:
                    keys = None
        call.inputs[id(module)] = (hidden if isinstance(hidden, torch.Tensor) else None,
                                   keys if isinstance(keys, torch.Tensor) else None)
        return None
    return hook


def head_input_hook(module: nn.Module, args: tuple, kwargs: dict):
    """A forward pre-hook (with kwargs) on a model's output head: in a call that runs the head itself (a block of
    positions at a time, model.capture.logits), hand over what the head reads, (B, T, d), and give the model's head
    none of its positions (its logits come out (B, 0, V)); any other time, nothing."""
    call = _CALL.get()
    if call is None or not call.keep_head_input or not args or not isinstance(args[0], torch.Tensor):
        return None
    call.head_input = args[0]
    return (args[0].narrow(-2, 0, 0), *args[1:]), kwargs


def key_input_name(module: nn.Module) -> str | None:
    """The forward argument of a cross-attention module that holds the keys' input (from its signature)."""
    params = inspect.signature(module.forward).parameters
    return next((p for p in KEY_INPUTS if p in params), None)


def _tensor_or_none(x, B: int, T: int) -> torch.Tensor | None:
    return x if isinstance(x, torch.Tensor) and x.dim() == 3 and tuple(x.shape[:2]) == (B, T) else None


def inspector_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                        **kwargs) -> tuple[torch.Tensor, None]:
    """The attention function registered in transformers: query (B, H, Tq, d), key/value (B, H_kv, Tk, d)
    -> (output (B, Tq, H, d_v), None)."""
    call = _CALL.get()
    spec = None if call is None else call.specs.get(module)
    if call is not None and call.recorder is None:
        call.seen.append(module)
    if call is None or call.recorder is None or spec is None:
        if kwargs.get("softcap") is not None:  # SDPA cannot softcap: compute it exactly, unrecorded
            mask = _bool_mask(attention_mask)
            if mask is None and _is_causal(module, kwargs) and query.shape[2] > 1:
                Tq, Tk = query.shape[2], key.shape[2]
                mask = MaskSpec(tq=Tq, tk=Tk, causal=True).allowed(range(Tq), range(Tk), query.device)
            rec = attention(query, key, value, mask, scale=scaling, softcap=kwargs["softcap"],
                            bias=kwargs.get("position_bias"))
            return rec.context.transpose(1, 2).contiguous(), None
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    unknown = sorted(k for k, v in kwargs.items() if k not in BOOKKEEPING and v is not None)
    if unknown:
        raise NotImplementedError(
            f"{spec.model_type}: its attention passes {unknown}, which this app does not compute; it refuses to "
            f"show numbers that would differ from the model's")
    if dropout and module.training:
        raise NotImplementedError(f"{spec.model_type}: attention dropout is active (the model is in training mode)")
    B, _, Tq, d_k = query.shape
    Tk = key.shape[2]
    scale = scaling if scaling is not None else d_k ** -0.5  # transformers' eager default
    mask = _bool_mask(attention_mask)
    bias = kwargs.get("position_bias")
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        extra = torch.where(mask, attention_mask, torch.zeros((), dtype=attention_mask.dtype,
                                                               device=attention_mask.device))
        if bool(extra.ne(0).any()):  # an additive mask that also carries a bias (ALiBi-style)
            bias = extra if bias is None else bias + extra

    name = RecordName.parse(spec.name)
    key_valid = call.valid.get(name.key_stack)
    padding = None if key_valid is None or key_valid.shape[1] != Tk else key_valid
    window = kwargs.get("sliding_window")
    window = int(window) if isinstance(window, int) and window > 0 else None
    causal = _is_causal(module, kwargs) and not name.is_cross
    # the mask as facts (padding, causal, window); the model's own mask, checked against them, is kept only when
    # it says more (a T x T tensor at long inputs is what this avoids)
    masks = describe(mask, Tq, Tk, padding=padding, causal=causal and (Tq > 1 or Tk > 1), window=window)
    hidden, keys = call.inputs.get(id(module), (None, None))
    query_input = _tensor_or_none(hidden, B, Tq)
    key_input = query_input if not name.is_cross else _tensor_or_none(keys, B, Tk)
    query_valid = call.valid.get(name.query_stack)
    if query_valid is not None and query_valid.shape[1] != Tq:
        query_valid = None

    def fast() -> torch.Tensor:
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=scaling,
                                        **kwargs)
        return out.transpose(1, 2)

    context = call.recorder.attend(
        spec.name, query, key, value, masks, scale=scale, bias=bias, softcap=kwargs.get("softcap"),
        query_input=query_input, key_input=key_input, query_valid=query_valid, out_proj=spec.out_proj,
        fast=None if kwargs.get("softcap") is not None else fast)
    return context.transpose(1, 2).contiguous(), None  # (B, Tq, H, d_v), as transformers' functions return it


def _is_causal(module: nn.Module, kwargs: dict) -> bool:
    flag = kwargs.get("is_causal")
    return bool(getattr(module, "is_causal", False) if flag is None else flag)


def _bool_mask(attention_mask) -> torch.Tensor | None:
    """The model's mask as bool (True = may attend); None when the model passed none (a plain causal or a full
    attention: the facts describe it)."""
    if attention_mask is None:
        return None
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2  # additive float mask: 0 allowed, min forbidden


def mask_function(*args, **kwargs):
    """transformers' SDPA mask function: a boolean mask where one is needed (padding, a sliding window), none for a
    plain causal or full attention (which the attention function then describes from the module)."""
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(ATTENTION_NAME, inspector_attention)
AttentionMaskInterface.register(ATTENTION_NAME, mask_function)

__all__ = ["ATTENTION_NAME", "CallContext", "ModuleSpec", "mask_function", "head_input_hook", "input_hook",
           "inspector_attention", "key_input_name", "call_context"]
