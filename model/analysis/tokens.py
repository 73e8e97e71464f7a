"""Per-token norms from a trace: the high-norm tokens of "Vision Transformers Need Registers" (Darcet et al., 2023).

Large ViTs grow a few tokens, usually over background patches, whose vectors have a norm far above the rest and
which soak up attention (every head's rows pile onto them), so attention maps look like noise. Registers (extra
tokens the model may use as scratch space) take that role off the patches. Every number here comes from one
attention record of the call: its values ``v``, its output and its weights; nothing is captured for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..capture.trace import Trace
from ..core.names import RecordName

OUTLIER_FACTOR = 4.0  # a token whose norm is over this many times the median is a high-norm token


@dataclass(frozen=True)
class TokenNorms:
    """Per position of one attention's keys (self-attention: every token), shapes (T,)."""

    name: str  # the record they come from, e.g. "encoder.11.self_attn"
    value: np.ndarray  # the L2 norm of the token's value vector, every key/value head side by side
    output: np.ndarray | None  # the L2 norm of the attention's output at the token (None: the record has no output)
    received: np.ndarray  # the attention weight the token receives, summed over queries, mean over heads

    def outliers(self, factor: float = OUTLIER_FACTOR, of: str = "value") -> list[int]:
        """Positions whose ``of`` norm ("value" or "output") is over ``factor`` times the median: high-norm
        tokens."""
        norms = self.value if of == "value" else self.output
        if norms is None or not len(norms):
            return []
        median = float(np.median(norms))
        return [int(i) for i in np.flatnonzero(norms > factor * median)] if median > 0 else []


def token_norms(trace: Trace, name: str, batch_index: int = 0) -> TokenNorms:
    """The norms of one self-attention's tokens (values, outputs) and the attention each receives, from the trace."""
    if RecordName.parse(name).is_cross:
        raise ValueError(f"{name}: token norms are defined for self-attention (queries and keys are the same tokens)")
    rec = trace[name]
    v = rec.v[batch_index].float()  # (H_kv, T, d_v)
    value = v.transpose(0, 1).reshape(v.shape[1], -1).norm(dim=-1)  # (T,)
    output = None if rec.output is None else rec.output[batch_index].float().norm(dim=-1)  # (T,)
    received = rec.weights[batch_index].float().sum(dim=-2).mean(dim=0)  # (H, Tq, Tk) -> (Tk,)
    return TokenNorms(name=name, value=_numpy(value), output=None if output is None else _numpy(output),
                      received=_numpy(received))


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


__all__ = ["OUTLIER_FACTOR", "TokenNorms", "token_norms"]
