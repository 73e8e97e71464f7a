"""The contract between a model and the rest of the app: what a pipeline (a loaded model) is, and what one traced
call returns.

Two kinds implement ``Pipeline``: the project's own transformer (``model.own.pipeline.TransformerPipeline``) and
models in the Hugging Face layout run by transformers (``model.hf.HFPipeline``). Each implements, once: tokenizing
(``tokenize_source`` / ``tokenize_target``), the decoder's start, token labels and text, record shapes, one forward
under a per-call ``Recorder``, plain greedy decoding and the unembedding (for the logit lens). Everything a call
can do (capture in full or lazily, ablations, knockouts, patching, hidden states, batches of a corpus) is written
once, in ``model.call``, on top of these.

Vision models (``ImagePipeline``: the project's ViT, ``model.own.pipeline.VisionPipeline``, and transformers' ViT,
DeiT, CLIP / SigLIP vision towers and DINOv2, ``model.hf.vision.HFVisionPipeline``) read an image instead of a text:
``image_input`` turns it into the pixels the model takes and the labels of its sequence (an ``ImageEncoding``), and
the same traced call runs them (``model.call.run(pipe, image)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .capture.trace import Trace
from .core.attention import RecordShape
from .core.encoding import Encoding
from .core.names import RecordName
from .core.recording import Recording

ARCHS = ("encoder-decoder", "decoder-only", "encoder-only")
MODALITIES = ("text", "image")  # what a model reads


class CaptureBudgetError(ValueError):
    """A traced call (or a record of it) that would not fit the memory budget; raised before computing it."""


@dataclass(frozen=True)
class ModelInfo:
    """What the app needs to know about a loaded model, whatever its family."""

    arch: str  # "encoder-decoder", "decoder-only" or "encoder-only"
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
    stages: tuple[str, ...] = ("scores", "scaled", "masked", "weights")  # the (query, key) stages its records have
    notes: dict[str, str] = field(default_factory=dict)  # per-stage remarks ("q": "after RoPE", ...)
    has_head: bool = True  # the model outputs token logits (False: a bare encoder such as BertModel)
    vocab_size: int = 0  # output classes of an image classifier
    modality: str = "text"  # what model.call.run reads: "text", or "image" (a vision model)
    classes: tuple[str, ...] = ()  # an image classifier's class names, in the order of its logits

    @property
    def has_encoder(self) -> bool:
        return self.n_encoder_layers > 0

    @property
    def has_decoder(self) -> bool:
        return self.n_decoder_layers > 0

    @property
    def has_cross(self) -> bool:
        return self.arch == "encoder-decoder"

    @property
    def output_stack(self) -> str:
        """The stack whose positions the logits are for."""
        return "encoder" if self.arch == "encoder-only" else "decoder"

    def kinds(self) -> list[str]:
        """The attention kinds this model has, in forward order."""
        return list(dict.fromkeys(RecordName.parse(n).kind for n in self.record_names))

    def names_of_kind(self, kind: str) -> list[str]:
        return [n for n in self.record_names if RecordName.parse(n).kind == kind]


def patch_label(row: int, col: int) -> str:
    """The label of the patch at (row, col) of the grid, from 0: "r3c5"."""
    return f"r{row}c{col}"


@dataclass(frozen=True)
class ImageEncoding:
    """An image as a vision model reads it: the pixels it takes, and one label per position of its sequence."""

    pixels: torch.Tensor  # (C, H, W) float: the image processor's output, what the patch embedding reads
    encoding: Encoding  # the sequence: ids are the positions 0..T-1, tokens their labels ("[CLS]", "[DIST]", "reg0",
    #                     "r0c0", "r0c1", ...); ``special`` is True at every position that is not a patch
    patch_grid: tuple[int, int]  # (rows, cols) of patches
    patch_positions: tuple[int, ...]  # the sequence position of patch (r, c) at index r * cols + c (row-major)
    patch_size: int  # pixels per patch side, in ``pixels``
    image_size: tuple[int, int]  # (height, width) of the image as given, before the processor
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # the processor's normalisation: pixels = (value * scale - mean) / std
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: float = 1 / 255  # the rescale factor applied to 0..255 values before normalising

    @classmethod
    def of(cls, pixels: torch.Tensor, prefix: tuple[str, ...] | list[str], patch_size: int,
           image_size: tuple[int, int], **normalisation) -> ImageEncoding:
        """The sequence [prefix tokens] + the patches row by row, for ``pixels`` (C, H, W) cut into squares of
        ``patch_size`` (the rows and columns that fit)."""
        rows, cols = int(pixels.shape[1]) // patch_size, int(pixels.shape[2]) // patch_size
        labels = list(prefix) + [patch_label(r, c) for r in range(rows) for c in range(cols)]
        n = len(prefix)
        encoding = Encoding(ids=list(range(len(labels))), tokens=labels, offsets=[(0, 0)] * len(labels),
                            truncated=False, n_text_tokens=rows * cols, special=[i < n for i in range(len(labels))])
        return cls(pixels=pixels, encoding=encoding, patch_grid=(rows, cols),
                   patch_positions=tuple(range(n, n + rows * cols)), patch_size=patch_size,
                   image_size=(int(image_size[0]), int(image_size[1])), **normalisation)

    def seen(self) -> np.ndarray:
        """(H, W, 3) uint8: the image as the model saw it (resized and cropped by the processor), for overlays."""
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        values = (self.pixels.float().cpu() * std + mean) / self.scale
        return values.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


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
    trace: Trace | None  # every attention record of the call, batch size 1 (None: nothing captured)
    n_prompt: int = 0  # decoder-only: how many tokens of ``target`` were given (the rest were generated)
    stopped: str = ""  # why generation ended: "eos", "limit" (length cap) or "time" (decoding time cap); "" if none
    mode: str = "full"  # how the trace was captured: "full", "lazy" or "none"
    estimate_bytes: int = 0  # what a full capture of this call would hold
    seconds: float = 0.0  # decoding + tracing time
    hidden: dict[str, torch.Tensor] | None = None  # stack -> (layers + 1, T, d_model) residual streams, if asked
    final_hidden: torch.Tensor | None = None  # (T, d_model) the output stack's last hidden state (no head: its output)
    contexts: dict[str, torch.Tensor] | None = None  # name -> (H, Tq, d_v) each head's context, if asked (patching)
    image: ImageEncoding | None = None  # an image's call: the pixels the model read, the patch grid, the labels
    probability: float | None = None  # an image classifier: the probability of its prediction (output_text)

    @property
    def patch_grid(self) -> tuple[int, int] | None:
        """(rows, cols) of the image's patches; None for a text."""
        return None if self.image is None else self.image.patch_grid

    @property
    def patch_positions(self) -> tuple[int, ...] | None:
        """The sequence position of each patch, row-major (the others are [CLS], [DIST] or registers, as
        ``source.tokens`` labels them); None for a text."""
        return None if self.image is None else self.image.patch_positions

    @property
    def stopped_at_eos(self) -> bool:
        """True when the model ended its output with its end-of-sequence token."""
        return self.stopped == "eos"

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

    def axes(self, name: str) -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) of one record: encoder self = source x source, decoder self = target x
        target, cross = target (queries) x source (keys)."""
        n = RecordName.parse(name)
        return self.tokens_for(n.query_stack), self.tokens_for(n.key_stack)


@dataclass(frozen=True)
class ForwardOutput:
    """What one forward of a pipeline returns."""

    logits: torch.Tensor | None  # (B, T, V) of the output stack (B, P, V with logits_at); None without an output head
    last_hidden: torch.Tensor | None = None  # (B, T, d_model) the output stack's last hidden state, when no head


class Pipeline(ABC):
    """A loaded model behind the contract (see the module docstring). Loaded once, shared by every session and
    thread, never mutated after loading: everything a call keeps lives in its Recorder."""

    info: ModelInfo
    meta: dict[str, Any]
    path: str | None
    pad_id: int  # the id batches are padded with (never attended to)
    eos_ids: frozenset[int]  # ids that end generation

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    def arch(self) -> str:
        return self.info.arch

    @abstractmethod
    def tokenize_source(self, text: str) -> Encoding:
        """The encoder's input (encoder-only and encoder-decoder models), specials included, truncated to fit."""

    @abstractmethod
    def tokenize_target(self, text: str) -> Encoding:
        """The decoder's input for ``text``: a decoder-only model's text, or an encoder-decoder's target shifted
        right ([decoder start] + target tokens)."""

    @abstractmethod
    def decoder_start(self) -> list[int]:
        """The decoder input that generation starts from (encoder-decoder models)."""

    @abstractmethod
    def encoding_from_ids(self, ids: list[int], prompt: Encoding | None = None) -> Encoding:
        """The Encoding of a decoder input given as ids (generated; ``prompt``: the given part)."""

    @abstractmethod
    def token_label(self, token_id: int) -> str:
        """A readable label of one id."""

    @abstractmethod
    def detokenize(self, ids: list[int]) -> str:
        """Ids -> text, special tokens dropped."""

    @abstractmethod
    def record_shape(self, name: str, src_len: int, tgt_len: int, batch: int = 1) -> RecordShape:
        """The sizes of one record of a call on these lengths, before running it."""

    @abstractmethod
    def forward(self, src: torch.Tensor | None, tgt: torch.Tensor | None, recorder: Recording | None, *,
                src_valid: torch.Tensor | None = None, tgt_valid: torch.Tensor | None = None,
                logits_at: torch.Tensor | None = None) -> ForwardOutput:
        """One forward of padded ids (B, S) / (B, T) under ``recorder`` (None: the fast path) -> the logits of the
        output stack (B, T, V), or for a model without an output head its last hidden state. ``*_valid``: bool
        (B, len), True = a real token (False = padding). ``logits_at``: (P,) positions of the output stack: the
        output head runs on those only -> (B, P, V) (patching needs a few positions of a 50k-token vocabulary).
        A vision model (``ImagePipeline``) also takes ``pixels=`` (B, C, H, W); ``src`` then holds the positions
        (the ids of ``ImageEncoding.encoding``) and an image classifier's logits are (B, 1, n_classes)."""

    def image_input(self, image: Any) -> ImageEncoding:
        """A vision model: an RGB ``PIL.Image.Image`` -> the pixels it reads, as its image processor makes them, and
        the labels of its sequence. A text model raises ValueError."""
        raise ValueError(f"this model ({self.info.family}) reads text, not images")

    @abstractmethod
    def greedy_batch(self, src_ids: list[list[int]] | None, prefixes: list[list[int]], n_new: int, deadline: float
               ) -> list[tuple[list[int], str]]:
        """Plain greedy decoding of a batch (key/value cache, nothing recorded or changed), at most ``n_new`` new
        tokens each -> per item (prefix + new ids, the end token excluded; why it stopped: "eos", "limit" or
        "time")."""

    @abstractmethod
    def unembed(self, stack: str, hidden: torch.Tensor) -> torch.Tensor:
        """The residual stream of ``stack`` (..., d_model) -> logits (..., V) through the model's own final norm
        and output head (the logit lens)."""

    def same_vocabulary(self, other: "Pipeline") -> bool:
        """Whether ``other`` reads and writes the same ids (so that one model's output can be traced through the
        other)."""
        return False


class ImagePipeline(Pipeline):
    """A pipeline that reads images (``info.modality == "image"``): ``image_input`` and ``forward(..., pixels=)``; its
    text side says so. Token ids are class ids: ``token_label`` names a class."""

    pad_id = 0  # positions are never padded (a batch of images shares one size)
    eos_ids = frozenset()

    def _reads_images(self, *_args, **_kwargs):
        raise ValueError(f"this model ({self.info.family}) reads images, not text: give run() a PIL image, an image "
                         "file's path or an (H, W, 3) uint8 array")

    tokenize_source = tokenize_target = decoder_start = encoding_from_ids = _reads_images

    def detokenize(self, ids: list[int]) -> str:
        return " ".join(self.token_label(i) for i in ids)

    def greedy_batch(self, src_ids, prefixes, n_new, deadline):
        raise ValueError("an image model does not generate")

    @abstractmethod
    def image_input(self, image: Any) -> ImageEncoding: ...


__all__ = ["ARCHS", "CaptureBudgetError", "ForwardOutput", "ImageEncoding", "ImagePipeline", "MODALITIES", "ModelInfo",
           "Pipeline", "RunResult", "patch_label"]
