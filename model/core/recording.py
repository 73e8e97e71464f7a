"""What a model's forward calls on the recorder of its call: the seam between the modules that compute and the
capture that records (``model.capture.recorder.Recorder`` implements it; a forward without one takes the fast path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from .masks import MaskSpec


class Recording(Protocol):
    """Handed to a forward for one call; the module computes, the recording keeps and changes (never the module)."""

    keep_hidden: bool  # whether the residual stream after each block is wanted

    def attend(self, name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masks: MaskSpec, *,
               scale: float | None = None, bias: torch.Tensor | None = None, softcap: float | None = None,
               query_input: torch.Tensor | None = None, key_input: torch.Tensor | None = None,
               query_valid: torch.Tensor | None = None, out_proj: Callable[[torch.Tensor], torch.Tensor] | None = None,
               fast: Callable[[], torch.Tensor] | None = None, finish_later: bool = False) -> torch.Tensor:
        """Run the attention ``name`` -> the context (B, H, Tq, d_v) the model goes on with."""

    def finish(self, name: str, concat: torch.Tensor, output: torch.Tensor) -> None:
        """The concat and output the module computed from that context."""

    def record_hidden(self, stack: str, x: torch.Tensor) -> None:
        """The residual stream of ``stack`` at the next depth."""


__all__ = ["Recording"]
