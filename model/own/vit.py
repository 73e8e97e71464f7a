"""The vision transformer (ViT, "An Image is Worth 16x16 Words"): the transformer's encoder over image patches.

The image is cut into square patches, each flattened and mapped to d_model by one linear layer (the paper's patch
embedding; a convolution with stride patch_size is the same map); a learned [CLS] token goes first and learned
positions are added. The encoder layers are the project's own ``EncoderLayer`` (so the same ``attention()`` computes
and records every head), and a linear classifier reads the final [CLS] state.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.names import record_name
from ..core.recording import Recording
from .config import VisionConfig
from .transformer import EncoderLayer


def patches_of(pixels: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, rows * cols, C * p * p): each patch flattened, in row-major order (position r * cols + c)."""
    B, C, H, W = pixels.shape
    p = patch_size
    x = pixels.unfold(2, p, p).unfold(3, p, p)  # (B, C, rows, cols, p, p)
    rows, cols = x.shape[2], x.shape[3]
    return x.permute(0, 2, 3, 1, 4, 5).reshape(B, rows * cols, C * p * p)  # (B, N, C * p * p)


class VisionTransformer(nn.Module):
    """``forward(pixels, recorder)`` -> class logits (B, n_classes). Pixels are normalised, (B, C, H, W)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.patch_embed = nn.Linear(config.channels * config.patch_size ** 2, d)  # W_patch: one patch -> d_model
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.positions = nn.Parameter(torch.zeros(1, config.seq_len, d))  # learned, [CLS] first
        self.dropout = nn.Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList([EncoderLayer(config) for _ in range(config.n_encoder_layers)])
        # pre-LN leaves the residual stream un-normalised: one final LayerNorm
        self.encoder_norm = nn.LayerNorm(d) if config.norm == "pre" else nn.Identity()
        self.head = nn.Linear(d, config.n_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.positions, std=0.02)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def record_names(self) -> list[str]:
        """Every name a full trace holds, in forward order."""
        return [record_name("encoder", i, "self_attn") for i in range(self.config.n_encoder_layers)]

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised pixels -> (B, 1 + N, d_model): [CLS], then each patch, plus positions."""
        cfg = self.config
        if tuple(pixels.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"this model reads (B, {cfg.channels}, {cfg.image_size}, {cfg.image_size}) pixels, got "
                             f"{tuple(pixels.shape)}")
        x = self.patch_embed(patches_of(pixels, cfg.patch_size))  # (B, N, d_model)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, d_model)
        return self.dropout(torch.cat([cls, x], dim=1) + self.positions)  # (B, 1 + N, d_model)

    def encode(self, pixels: torch.Tensor, recorder: Recording | None = None) -> torch.Tensor:
        """(B, C, H, W) -> the final residual stream (B, 1 + N, d_model), normalised (pre-LN)."""
        x = self.embed(pixels)
        if recorder is not None:
            recorder.record_hidden("encoder", x)
        for i, layer in enumerate(self.encoder_layers):
            x = layer(x, None, recorder, i)  # no padding: every position is a real token
            if recorder is not None:
                recorder.record_hidden("encoder", x)
        return self.encoder_norm(x)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """A residual stream (..., d_model) -> class logits (..., n_classes): final norm (pre-LN) and classifier."""
        return self.head(self.encoder_norm(x))

    def forward(self, pixels: torch.Tensor, recorder: Recording | None = None) -> torch.Tensor:
        """(B, C, H, W) normalised pixels -> logits (B, n_classes), read from the final [CLS] state.

        ``recorder`` (one call's, see model.core.recording) keeps what that call asked for and applies its
        interventions; None: the fast path. The traced call is ``model.call.run``.
        """
        return self.head(self.encode(pixels, recorder)[:, 0])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["VisionTransformer", "patches_of"]
