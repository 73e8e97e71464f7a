"""What this app knows about each transformers family, declared (never read out of source code), and the probe
that finds a loaded model's attention modules: the modules that call the registered attention function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from ..core.names import RecordName, in_forward_order
from .interface import ModuleSpec, key_input_name

CROSS_NAMES = ("encoder_attn", "EncDecAttention", "crossattention", "cross_attn")  # cross-attention module names
OUT_PROJ_NAMES = ("o_proj", "out_proj", "c_proj", "o", "out_lin")


@dataclass(frozen=True)
class VisionLayout:
    """Where an image model's patches lie in its sequence: the tokens before them, then the patches row by row."""

    prefix: tuple[str, ...] = ("[CLS]",)  # the labels of the tokens before the patches, in order
    registers: str | None = None  # a config field: that many register tokens ("reg0", "reg1"...) after the prefix
    tower: str | None = None  # a two-tower model (CLIP, SigLIP): the transformers class of its vision tower, read alone

    def labels(self, config) -> tuple[str, ...]:
        """The labels before the patches, for this model's config."""
        n = int(getattr(config, self.registers, 0) or 0) if self.registers else 0
        return self.prefix + tuple(f"reg{i}" for i in range(n))


@dataclass(frozen=True)
class Family:
    """Declared facts of one family: remarks per stage, and where its final norm and output head are (for the
    logit lens: attribute paths on the loaded model; ``None`` = the family has no final norm); for an image model,
    where its patches are (``vision``)."""

    notes: dict[str, str] = field(default_factory=dict)
    final_norm: dict[str, str | None] = field(default_factory=dict)  # stack -> attribute path
    head: str | None = None  # the module mapping a (normed) hidden state to logits
    head_scale: str | None = None  # T5: "d_model^-0.5" when the embeddings are tied
    logits_bias: str | None = None  # BART: final_logits_bias
    softcap: str | None = None  # config field of a final logit softcap (Gemma 2)
    vision: VisionLayout | None = None  # an image model (read with its preprocessor_config.json): its sequence


_ROPE = {"q": "after the rotary position embedding (RoPE)", "k": "after RoPE"}
_LLAMA_LIKE = dict(final_norm={"decoder": "model.norm"}, head="lm_head")
FAMILIES: dict[str, Family] = {
    "llama": Family(notes=_ROPE, **_LLAMA_LIKE),
    "mistral": Family(notes={"q": "after RoPE", "k": "after RoPE"}, **_LLAMA_LIKE),
    "qwen2": Family(notes={"q": "after RoPE", "k": "after RoPE"}, **_LLAMA_LIKE),
    "qwen3": Family(notes={"q": "after per-head RMS norm (QK-norm) and RoPE", "k": "after QK-norm and RoPE"},
                    **_LLAMA_LIKE),
    "gemma2": Family(notes={"q": "after RoPE", "k": "after RoPE", "adjusted": "softcap · tanh(scaled / softcap)"},
                     softcap="final_logit_softcapping", **_LLAMA_LIKE),
    "gemma3_text": Family(notes={"q": "after QK-norm and RoPE", "k": "after QK-norm and RoPE"},
                          softcap="final_logit_softcapping", **_LLAMA_LIKE),
    "gemma3": Family(notes={"q": "after QK-norm and RoPE", "k": "after QK-norm and RoPE"},
                     softcap="final_logit_softcapping", **_LLAMA_LIKE),
    "gpt2": Family(final_norm={"decoder": "transformer.ln_f"}, head="lm_head"),
    "gpt_neox": Family(notes={"q": "after partial RoPE", "k": "after partial RoPE"},
                       final_norm={"decoder": "gpt_neox.final_layer_norm"}, head="lm_head"),
    "opt": Family(final_norm={"decoder": "model.decoder.final_layer_norm"}, head="lm_head"),
    "t5": Family(notes={"scaled": "T5 does not scale: scaled = scores", "adjusted": "scores + relative position bias"},
                 final_norm={"decoder": "decoder.final_layer_norm", "encoder": "encoder.final_layer_norm"},
                 head="lm_head", head_scale="d_model^-0.5"),
    "bart": Family(final_norm={"decoder": None}, head="lm_head", logits_bias="final_logits_bias"),
    "bert": Family(notes={"output": "the dense layer of BertSelfOutput, before its residual and LayerNorm"},
                   final_norm={"encoder": None}, head="cls"),
    "roberta": Family(notes={"output": "the dense layer of RobertaSelfOutput, before its residual and LayerNorm"},
                      final_norm={"encoder": None}, head="lm_head"),
    "distilbert": Family(final_norm={"encoder": None}, head="distilbert_head"),
    "modernbert": Family(final_norm={"encoder": "model.final_norm"}, head="modernbert_head"),
    # image models: ViTModel / ViTForImageClassification, DeiT (a distillation token after [CLS]), the vision towers
    # of CLIP and SigLIP (CLIPVisionModel, SiglipVisionModel: SigLIP has no [CLS]; its attention-pooling head is
    # torch's nn.MultiheadAttention, outside the trace), DINOv2 and DINOv2 with registers (Darcet et al. 2023)
    "vit": Family(vision=VisionLayout()),
    "deit": Family(vision=VisionLayout(("[CLS]", "[DIST]"))),
    "clip_vision_model": Family(vision=VisionLayout()),
    "siglip_vision_model": Family(vision=VisionLayout(())),
    "clip": Family(vision=VisionLayout(tower="CLIPVisionModel")),  # CLIPModel's directory: its vision tower
    "siglip": Family(vision=VisionLayout((), tower="SiglipVisionModel")),
    "dinov2": Family(vision=VisionLayout()),
    "dinov2_with_registers": Family(vision=VisionLayout(registers="num_register_tokens")),
}


def family(model_type: str) -> Family | None:
    return FAMILIES.get(model_type)


def _layer_of(path: str) -> int | None:
    numbers = re.findall(r"\.(\d+)(?:\.|$)", "." + path)
    return int(numbers[0]) if numbers else None  # the block index (T5's blocks hold numbered sub-layers)


def name_modules(model: nn.Module, seen: list[nn.Module], arch: str, model_type: str) -> dict[nn.Module, ModuleSpec]:
    """Name every module that called the attention function in the probe, in the project's scheme, from its path
    in the model: ``encoder.{i}.self_attn``, ``decoder.{i}.self_attn``, ``decoder.{i}.cross_attn``."""
    paths = {id(m): p for p, m in model.named_modules()}
    parents = {}
    for module in model.modules():
        for child in module.children():
            parents[id(child)] = module
    specs: dict[nn.Module, ModuleSpec] = {}
    for module in dict.fromkeys(seen):  # each module once, in call order
        path = paths.get(id(module))
        layer = None if path is None else _layer_of(path)
        if path is None or layer is None:
            raise NotImplementedError(f"{model_type}: an attention module outside a numbered block "
                                      f"({path or type(module).__name__}); this architecture is not supported")
        parts = path.split(".")
        cross = any(p in CROSS_NAMES for p in parts) or bool(getattr(module, "is_cross_attention", False))
        if arch == "encoder-decoder":
            stack = "decoder" if any("decoder" in p.lower() for p in parts) else "encoder"
        else:
            stack = "decoder" if arch == "decoder-only" else "encoder"
        name = str(RecordName(stack, layer, "cross_attn" if cross else "self_attn"))
        if any(s.name == name for s in specs.values()):
            raise NotImplementedError(f"{model_type}: two attention modules map to {name} ({path}); this "
                                      f"architecture is not supported")
        out_proj = next((getattr(module, a) for a in OUT_PROJ_NAMES if isinstance(getattr(module, a, None),
                                                                                  nn.Module)), None)
        parent = parents.get(id(module))
        if out_proj is None and parent is not None:  # BERT-style: the output dense layer sits beside it
            out = getattr(parent, "output", None)
            out_proj = getattr(out, "dense", None) if isinstance(getattr(out, "dense", None), nn.Module) else None
        specs[module] = ModuleSpec(name=name, model_type=model_type, out_proj=out_proj,
                                   key_input=key_input_name(module) if cross else None)
    if not specs:
        raise NotImplementedError(f"{model_type}: no module calls transformers' attention interface; this "
                                  "architecture cannot be traced")
    return specs


def ordered(specs: dict[nn.Module, ModuleSpec]) -> list[str]:
    return in_forward_order(s.name for s in specs.values())


__all__ = ["FAMILIES", "Family", "VisionLayout", "family", "name_modules", "ordered"]
