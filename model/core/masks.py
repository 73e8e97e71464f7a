"""Masks described rather than materialised: which keys each query may attend to, by reason.

A (Tq, Tk) bool mask at 32k tokens is a gigabyte; what a model's mask says is almost always "real keys only"
(padding), "not the future" (causal, aligned at the lower right as with a cache) and "within the last w keys"
(sliding window). ``MaskSpec`` keeps those facts and computes any block of rows and columns on demand; a mask that
forbids something else keeps its tensor in ``other``. True = may attend, as everywhere in this project.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MaskSpec:
    """The mask of one attention call."""

    tq: int
    tk: int
    padding: torch.Tensor | None = None  # (B, Tk) bool: True = a real key (not padding)
    causal: bool = False  # key j allowed only if j <= i + (Tk - Tq): not in the future
    window: int | None = None  # key j allowed only if j > i + (Tk - Tq) - window (a sliding window)
    other: torch.Tensor | None = None  # (B|1, H|1, Tq, Tk) bool: the model's own mask, when the facts above do
    #                                   not explain it (it is then the whole mask, the facts only name reasons)

    @property
    def offset(self) -> int:
        """A query's position on the key axis is its row + offset (self-attention over a cache)."""
        return self.tk - self.tq

    @property
    def trivial(self) -> bool:
        """Every query may attend to every key."""
        return self.padding is None and not self.causal and self.window is None and self.other is None

    def key_range(self, rows: range) -> range:
        """The keys some row of ``rows`` may attend to (all of them, unless causal or windowed)."""
        start, stop = 0, self.tk
        if self.other is None:
            if self.causal and len(rows):
                stop = min(self.tk, rows.stop - 1 + self.offset + 1)
            if self.window is not None and len(rows):
                start = max(0, rows.start + self.offset - self.window + 1)
        return range(start, max(start, stop))

    def padding_view(self, cols: range) -> torch.Tensor | None:
        """(B, 1, 1, c) bool, True = a real key."""
        return None if self.padding is None else self.padding[:, None, None, cols.start:cols.stop]

    def _positions(self, rows: range, cols: range, device):
        q = torch.arange(rows.start, rows.stop, device=device)[:, None] + self.offset
        k = torch.arange(cols.start, cols.stop, device=device)[None, :]
        return q, k

    def causal_view(self, rows: range, cols: range, device=None) -> torch.Tensor | None:
        """(1, 1, r, c) bool, True = the key is not in the future."""
        if not self.causal:
            return None
        q, k = self._positions(rows, cols, device)
        return (k <= q)[None, None]

    def window_view(self, rows: range, cols: range, device=None) -> torch.Tensor | None:
        """(1, 1, r, c) bool, True = the key is inside the sliding window."""
        if self.window is None:
            return None
        q, k = self._positions(rows, cols, device)
        return (k > q - self.window)[None, None]

    def allowed(self, rows: range, cols: range, device=None) -> torch.Tensor | None:
        """(B|1, H|1, r, c) bool, True = may attend; None when every cell of the block may."""
        if self.other is not None:
            m = self.other
            m = m[:, :, rows.start:rows.stop] if m.shape[2] > 1 else m
            return m[..., cols.start:cols.stop] if m.shape[3] > 1 else m
        out = None
        for part in (self.padding_view(cols), self.causal_view(rows, cols, device),
                     self.window_view(rows, cols, device)):
            if part is not None:
                out = part if out is None else out & part
        if out is not None and bool(out.all()):
            return None
        return out

    def materialised(self, device=None) -> tuple[torch.Tensor | None, ...]:
        """(mask, padding (B, 1, 1, Tk), causal (1, 1, Tq, Tk), window (1, 1, Tq, Tk)) as tensors, for complete
        records of short inputs."""
        rows, cols = range(self.tq), range(self.tk)
        mask = self.other
        causal, window = self.causal_view(rows, cols, device), self.window_view(rows, cols, device)
        padding = self.padding_view(cols)
        if mask is None:
            for part in (padding, causal, window):
                if part is not None:
                    mask = part if mask is None else mask & part
        return mask, padding, causal, window

    def item(self, b: int, tq: int, tk: int) -> MaskSpec:
        """One batch element, cut to its real lengths."""
        other = self.other
        if other is not None:
            other = other[b:b + 1 if other.shape[0] > 1 else None][:, :, :tq if other.shape[2] > 1 else None, :tk]
        return MaskSpec(tq=tq, tk=tk, padding=None if self.padding is None else self.padding[b:b + 1, :tk],
                        causal=self.causal, window=self.window, other=other)

    def block_reasons(self, factor: int, batch_index: int = 0) -> dict[str, np.ndarray]:
        """{reason: (ceil(Tq/f), ceil(Tk/f)) bool}: the f x f blocks every cell of which that reason forbids (what
        an overview can say about a block; the model's own ``other`` mask is not summarised)."""
        rb, cb = -(-self.tq // factor), -(-self.tk // factor)
        q_min = np.arange(rb) * factor + self.offset
        q_max = np.minimum((np.arange(rb) + 1) * factor, self.tq) - 1 + self.offset
        k_min = np.arange(cb) * factor
        k_max = np.minimum((np.arange(cb) + 1) * factor, self.tk) - 1
        out = {}
        if self.causal:
            out["causal"] = k_min[None, :] > q_max[:, None]
        if self.window is not None:
            out["window"] = k_max[None, :] <= q_min[:, None] - self.window
        if self.padding is not None:
            pad = ~self.padding[batch_index if self.padding.shape[0] > 1 else 0].cpu().numpy()
            full = np.zeros(cb * factor, dtype=bool)
            full[:self.tk] = pad
            full[self.tk:] = True
            out["padding"] = np.broadcast_to(full.reshape(cb, factor).all(-1)[None, :], (rb, cb))
        if self.other is not None:  # cells the model's own mask forbids for no reason above
            forbidden = ~self.other[batch_index if self.other.shape[0] > 1 else 0, 0].cpu()
            forbidden = torch.broadcast_to(forbidden, (self.tq, self.tk))
            explained = None
            for part in (self.padding_view(range(self.tk)), self.causal_view(range(self.tq), range(self.tk)),
                         self.window_view(range(self.tq), range(self.tk))):
                if part is not None:
                    p = part[batch_index if part.shape[0] > 1 else 0, 0].cpu()
                    explained = ~p if explained is None else explained | ~p
            unexplained = forbidden if explained is None else forbidden & ~explained
            pad = (-self.tq) % factor, (-self.tk) % factor
            grid = torch.nn.functional.pad(unexplained.float(), (0, pad[1], 0, pad[0]), value=1.0)
            blocks = grid.reshape(rb, factor, cb, factor).amin((1, 3)) > 0
            out["other"] = blocks.numpy()
        return {r: m for r, m in out.items() if m.any()}

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.padding, self.other) if t is not None)


def describe(mask: torch.Tensor | None, tq: int, tk: int, *, padding: torch.Tensor | None = None,
             causal: bool = False, window: int | None = None) -> MaskSpec:
    """A MaskSpec from the facts, checked against the model's own mask when there is one: if the mask forbids
    anything else (or allows what the facts forbid), it is kept whole in ``other``."""
    if padding is not None and bool(padding.all()):
        padding = None
    spec = MaskSpec(tq=tq, tk=tk, padding=padding, causal=causal, window=window)
    if mask is None:
        return spec
    implied = spec.allowed(range(tq), range(tk), mask.device)
    same = bool(mask.all()) if implied is None else bool((mask == implied).all())
    return spec if same else MaskSpec(tq=tq, tk=tk, padding=padding, causal=causal, window=window, other=mask)


__all__ = ["MaskSpec", "describe"]
