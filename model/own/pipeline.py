"""The project's own models as pipelines (the contract: model.api.Pipeline): the transformer (text) and the vision
transformer (images)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..api import ForwardOutput, ImageEncoding, ImagePipeline, ModelInfo, Pipeline
from ..call import CallMethods, pad_batch
from ..capture.recorder import Recorder
from ..core.attention import RecordShape
from ..core.encoding import Encoding
from ..core.names import RecordName
from .config import ModelConfig, VisionConfig
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from .transformer import Transformer
from .vit import VisionTransformer


class TransformerPipeline(CallMethods, Pipeline):
    """A loaded checkpoint of this project: config, tokenizers, model (eval, frozen) and meta, on one device."""

    pad_id = PAD_ID
    eos_ids = frozenset({EOS_ID})

    def __init__(self, config: ModelConfig, model: Transformer, src_tokenizer: Tokenizer,
                 tgt_tokenizer: Tokenizer, meta: dict[str, Any] | None = None, path: str | None = None):
        self.config, self.model = config, model
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        self.meta = meta or {}
        self.path = path
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.info = ModelInfo(
            arch=config.arch, family="transformer (this project)", n_encoder_layers=config.n_encoder_layers,
            n_decoder_layers=config.n_decoder_layers, n_heads=config.n_heads, n_kv_heads=config.n_heads,
            d_model=config.d_model, d_k=config.d_k, max_len=config.max_len, dtype=dtype,
            parameters=model.num_parameters(), record_names=tuple(model.record_names()),
            vocab_size=config.tgt_vocab_size)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def tokenize_source(self, text: str) -> Encoding:
        """Source text -> tokens + [EOS], truncated to max_len (``.truncated`` tells)."""
        return self.src_tokenizer.tokenize(text, max_len=self.config.max_len, eos=True)

    def tokenize_target(self, text: str) -> Encoding:
        """Target text -> [BOS] + tokens (the decoder input), truncated to max_len."""
        return self.tgt_tokenizer.tokenize(text, max_len=self.config.max_len, bos=True)

    def decoder_start(self) -> list[int]:
        return [BOS_ID]

    def encoding_from_ids(self, ids: list[int], prompt: Encoding | None = None) -> Encoding:
        tokens = [self.tgt_tokenizer.id_to_token(i) for i in ids]
        special = [i < 4 for i in ids]
        if prompt is not None:
            return Encoding(ids=list(ids), tokens=tokens, offsets=list(prompt.offsets) + [(0, 0)] * (
                len(ids) - len(prompt.ids)), truncated=prompt.truncated, n_text_tokens=prompt.n_text_tokens,
                special=special)
        return Encoding(ids=list(ids), tokens=tokens, offsets=[(0, 0)] * len(ids), truncated=False,
                        n_text_tokens=len(ids) - 1, special=special)

    def token_label(self, token_id: int) -> str:
        return self.tgt_tokenizer.id_to_token(token_id)

    def detokenize(self, ids: list[int]) -> str:
        return self.tgt_tokenizer.detokenize(ids)

    def record_shape(self, name: str, src_len: int, tgt_len: int, batch: int = 1) -> RecordShape:
        n = RecordName.parse(name)
        tq = src_len if n.query_stack == "encoder" else tgt_len
        tk = src_len if n.key_stack == "encoder" else tgt_len
        d, H = self.config.d_model, self.config.n_heads
        size = 2 if self.info.dtype in ("float16", "bfloat16") else 4
        return RecordShape(batch=batch, n_heads=H, n_kv_heads=H, tq=tq, tk=tk, d_k=d // H, d_v=d // H,
                           d_query_in=d, d_key_in=d, d_out=d, adjusted=False, element_size=size)

    def forward(self, src, tgt, recorder: Recorder | None, *, src_valid=None, tgt_valid=None,
                logits_at=None) -> ForwardOutput:
        # padding comes from pad_id: the batch is padded with it (src_valid / tgt_valid agree)
        return ForwardOutput(logits=self.model(src, tgt, recorder, logits_at=logits_at))

    def greedy_batch(self, src_ids, prefixes, n_new, deadline):
        """Batched greedy decoding with the model's key/value cache (prefixes of one length)."""
        if len({len(p) for p in prefixes}) > 1:
            return [self.greedy_batch(None if src_ids is None else [s], [p], n_new, deadline)[0]
                    for s, p in zip(src_ids or [None] * len(prefixes), prefixes, strict=True)]
        src = None if src_ids is None else pad_batch(src_ids, PAD_ID, self.device)[0]
        prefix = pad_batch(prefixes, PAD_ID, self.device)[0]
        limit = prefix.shape[1] + n_new
        rows, timed_out = self.model.greedy(src, prefix, limit, EOS_ID, deadline=deadline)
        out = []
        for ids in rows:
            why = "time" if timed_out and len(ids) < limit else ("limit" if len(ids) >= limit else "eos")
            out.append((ids, why))
        return out

    def unembed(self, stack: str, hidden: torch.Tensor) -> torch.Tensor:
        if stack != "decoder":
            raise ValueError("this model's output head reads the decoder")
        return self.model.unembed(hidden.to(self.device))

    def same_vocabulary(self, other: Pipeline) -> bool:
        return isinstance(other, TransformerPipeline) and other.tgt_tokenizer.to_str() == self.tgt_tokenizer.to_str()


def pixels_of(image, config: VisionConfig) -> torch.Tensor:
    """An RGB PIL image -> (C, H, W) float pixels as the ViT reads them: resized to image_size x image_size
    (bilinear, as transformers' ViT processor does), scaled to [0, 1], normalised by the config's mean and std."""
    from PIL import Image

    size = (config.image_size, config.image_size)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    values = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())  # (H, W, 3)
    x = values.permute(2, 0, 1).float() / 255  # (C, H, W) in [0, 1]
    mean = torch.tensor(config.pixel_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(config.pixel_std, dtype=torch.float32)[:, None, None]
    return (x - mean) / std


class VisionPipeline(CallMethods, ImagePipeline):
    """A loaded vision checkpoint of this project: config, model (eval, frozen) and meta, on one device."""

    def __init__(self, config: VisionConfig, model: VisionTransformer, meta: dict[str, Any] | None = None,
                 path: str | None = None):
        self.config, self.model = config, model
        self.meta = meta or {}
        self.path = path
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.info = ModelInfo(
            arch="encoder-only", family="vision transformer (this project)", n_encoder_layers=config.n_encoder_layers,
            n_decoder_layers=0, n_heads=config.n_heads, n_kv_heads=config.n_heads, d_model=config.d_model,
            d_k=config.d_k, max_len=config.seq_len, dtype=dtype, parameters=model.num_parameters(),
            record_names=tuple(model.record_names()), vocab_size=config.n_classes, modality="image",
            classes=config.class_names)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def image_input(self, image) -> ImageEncoding:
        cfg = self.config
        return ImageEncoding.of(pixels_of(image, cfg), ("[CLS]",), cfg.patch_size, (image.height, image.width),
                                mean=cfg.pixel_mean, std=cfg.pixel_std)

    def token_label(self, token_id: int) -> str:
        return self.config.class_names[token_id]

    def record_shape(self, name: str, src_len: int, tgt_len: int, batch: int = 1) -> RecordShape:
        d, H = self.config.d_model, self.config.n_heads
        size = 2 if self.info.dtype in ("float16", "bfloat16") else 4
        return RecordShape(batch=batch, n_heads=H, n_kv_heads=H, tq=src_len, tk=src_len, d_k=d // H, d_v=d // H,
                           d_query_in=d, d_key_in=d, d_out=d, adjusted=False, element_size=size)

    def forward(self, src, tgt, recorder: Recorder | None, *, src_valid=None, tgt_valid=None, logits_at=None,
                pixels=None) -> ForwardOutput:
        if pixels is None:
            raise ValueError("a vision model's forward needs pixels")
        logits = self.model(pixels.to(self.device), recorder)  # (B, n_classes)
        return ForwardOutput(logits=logits[:, None, :])  # one output for the whole image: (B, 1, n_classes)

    def unembed(self, stack: str, hidden: torch.Tensor) -> torch.Tensor:
        """Any position's residual stream through the final norm and the classifier (a class lens)."""
        if stack != "encoder":
            raise ValueError("this model's classifier reads the encoder")
        return self.model.unembed(hidden.to(self.device))

    def same_vocabulary(self, other: Pipeline) -> bool:
        return isinstance(other, VisionPipeline) and other.config.class_names == self.config.class_names


__all__ = ["TransformerPipeline", "VisionPipeline", "pixels_of"]
