"""Model configurations: the transformer's and the vision transformer's, frozen dataclasses validated when built."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

POSITIONAL_KINDS = ("learned", "sinusoidal")
NORM_PLACEMENTS = ("post", "pre")
ACTIVATIONS = ("relu", "gelu")
TRANSFORMER_ARCHS = ("encoder-decoder", "decoder-only")  # this project's transformer (model.api.ARCHS: any model)


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the transformer (encoder-decoder as in the paper, or decoder-only)."""

    src_vocab_size: int  # number of source tokens (encoder embedding rows)
    tgt_vocab_size: int  # number of target tokens (decoder embedding rows and output classes)
    pad_id: int = 0  # padding token id, shared by source and target; never attended to
    bos_id: int = 1  # begin-of-sequence id: the first decoder input ("shifted right")
    eos_id: int = 2  # end-of-sequence id: ends the source and stops generation
    d_model: int = 128  # width of every residual stream (the paper's d_model)
    n_heads: int = 4  # attention heads per layer; d_k = d_v = d_model // n_heads
    n_encoder_layers: int = 2  # N for the encoder stack (0 for decoder-only)
    n_decoder_layers: int = 2  # N for the decoder stack
    d_ff: int = 512  # hidden width of each position-wise feed-forward block; 0 = attention-only (no FFN)
    dropout: float = 0.1  # on embeddings and sub-layer outputs (never on recorded attention weights)
    max_len: int = 128  # longest sequence (source or target, specials included) the model accepts
    positional: str = "learned"  # "learned" position embedding, or fixed "sinusoidal" encoding
    norm: str = "post"  # LayerNorm placement: "post" (as in the paper) or "pre"
    activation: str = "relu"  # feed-forward non-linearity: "relu" (paper) or "gelu"
    arch: str = "encoder-decoder"  # or "decoder-only": no encoder, no cross-attention, one vocabulary (tgt)

    def __post_init__(self) -> None:
        problems = []
        if self.arch not in TRANSFORMER_ARCHS:
            raise ValueError(f"invalid ModelConfig: arch must be one of {TRANSFORMER_ARCHS}, got {self.arch!r}")
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "max_len"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.d_ff) or self.d_ff < 0:
            problems.append(f"d_ff must be an integer >= 0 (0 = no feed-forward), got {self.d_ff!r}")
        if not _is_int(self.n_decoder_layers) or self.n_decoder_layers < 1:
            problems.append(f"n_decoder_layers must be an integer >= 1, got {self.n_decoder_layers!r}")
        if self.arch == "encoder-decoder" and (not _is_int(self.n_encoder_layers) or self.n_encoder_layers < 1):
            problems.append(f"n_encoder_layers must be an integer >= 1, got {self.n_encoder_layers!r}")
        if self.arch == "decoder-only":
            if self.n_encoder_layers != 0:
                problems.append(f"a decoder-only model has n_encoder_layers = 0, got {self.n_encoder_layers!r}")
            if self.src_vocab_size != self.tgt_vocab_size:
                problems.append("a decoder-only model has one vocabulary: src_vocab_size must equal tgt_vocab_size")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"invalid ModelConfig: d_model ({self.d_model}) must be divisible by n_heads "
                f"({self.n_heads}) so that each head gets d_model // n_heads dimensions"
            )
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        if len(set(ids.values())) != 3:
            raise ValueError(f"invalid ModelConfig: pad/bos/eos ids must be distinct, got {ids}")
        for name, value in ids.items():
            if not _is_int(value) or not 0 <= value < min(self.src_vocab_size, self.tgt_vocab_size):
                raise ValueError(
                    f"invalid ModelConfig: {name}={value!r} is outside both vocabularies "
                    f"(sizes {self.src_vocab_size}, {self.tgt_vocab_size})"
                )
        if not (isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
                and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"invalid ModelConfig: dropout must be in [0, 1), got {self.dropout!r}")
        if self.max_len < 2:
            raise ValueError(f"invalid ModelConfig: max_len must be >= 2 (room for BOS/EOS), got {self.max_len}")
        for name, allowed in (("positional", POSITIONAL_KINDS), ("norm", NORM_PLACEMENTS),
                              ("activation", ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"invalid ModelConfig: {name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def decoder_only(self) -> bool:
        return self.arch == "decoder-only"

    @property
    def d_k(self) -> int:
        """Per-head query/key (and value) width."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a dict (e.g. config.json); unknown keys are an error, not silently dropped."""
        check_keys(cls, data)
        return cls(**data)


def check_keys(cls, data: Any) -> None:
    """ValueError unless ``data`` is a dict with no key that is not a field of dataclass ``cls`` and every field
    without a default (a config.json read from disk: a typo is an error, never silently dropped)."""
    if not isinstance(data, dict):
        raise ValueError(f"config must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown config keys: {unknown}")
    missing = sorted(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in data)
    if missing:
        raise ValueError(f"missing config keys: {missing}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


VISION_ARCH = "vit"  # config.json's arch of this project's vision transformer


@dataclass(frozen=True)
class VisionConfig:
    """Hyper-parameters of the vision transformer (ViT, Dosovitskiy et al. 2020): the image cut into square patches,
    one token per patch after a learned [CLS] token, the transformer's encoder layers, a classifier on [CLS]."""

    class_names: tuple[str, ...]  # the classes, in the order of the output logits
    image_size: int = 64  # side of the square image the model reads, in pixels
    patch_size: int = 8  # side of a square patch: (image_size // patch_size)^2 patches, one token each
    channels: int = 3  # colour channels (RGB)
    pixel_mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # per channel: a pixel in [0, 1] minus this, over pixel_std,
    pixel_std: tuple[float, ...] = (0.5, 0.5, 0.5)  # is what the patch embedding reads
    d_model: int = 64  # width of every residual stream
    n_heads: int = 4  # attention heads per layer; d_k = d_v = d_model // n_heads
    n_encoder_layers: int = 4  # encoder layers
    d_ff: int = 128  # hidden width of each feed-forward block; 0 = attention-only
    dropout: float = 0.0  # on embeddings and sub-layer outputs (never on recorded attention weights)
    norm: str = "pre"  # LayerNorm placement: "pre" (as in ViT) or "post"
    activation: str = "gelu"  # feed-forward non-linearity: "gelu" (as in ViT) or "relu"
    arch: str = VISION_ARCH  # what config.json says this checkpoint is

    def __post_init__(self) -> None:
        problems = []
        for name in ("image_size", "patch_size", "channels", "d_model", "n_heads", "n_encoder_layers"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.d_ff) or self.d_ff < 0:
            problems.append(f"d_ff must be an integer >= 0 (0 = no feed-forward), got {self.d_ff!r}")
        names = self.class_names
        if (not isinstance(names, tuple) or not names or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)):
            problems.append(f"class_names must be distinct non-empty strings, at least one, got {names!r}")
        for name in ("pixel_mean", "pixel_std"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != self.channels or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                problems.append(f"{name} must hold {self.channels!r} finite numbers, got {value!r}")
        if isinstance(self.pixel_std, tuple) and any(isinstance(v, (int, float)) and v <= 0 for v in self.pixel_std):
            problems.append(f"pixel_std must be positive, got {self.pixel_std!r}")
        if self.arch != VISION_ARCH:
            problems.append(f"arch must be {VISION_ARCH!r}, got {self.arch!r}")
        if problems:
            raise ValueError("invalid VisionConfig: " + "; ".join(problems))
        if self.image_size % self.patch_size:
            raise ValueError(f"invalid VisionConfig: image_size ({self.image_size}) must be a multiple of patch_size "
                             f"({self.patch_size})")
        if self.d_model % self.n_heads:
            raise ValueError(f"invalid VisionConfig: d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        if not (isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
                and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"invalid VisionConfig: dropout must be in [0, 1), got {self.dropout!r}")
        for name, allowed in (("norm", NORM_PLACEMENTS), ("activation", ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"invalid VisionConfig: {name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of patches."""
        side = self.image_size // self.patch_size
        return side, side

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def seq_len(self) -> int:
        """Tokens the encoder reads: [CLS] and one per patch."""
        return 1 + self.n_patches

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def d_k(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VisionConfig":
        """Build from a dict (config.json; its lists become tuples); unknown or missing keys are an error."""
        check_keys(cls, data)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
