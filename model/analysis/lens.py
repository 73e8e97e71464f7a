"""The logit lens (nostalgebraist, 2020): the residual stream after each block read through the model's own final
norm and output head, as if the model stopped there.

Depth 0 is the embeddings, depth i the output of block i - 1, and the last depth (the number of blocks) the model's
output itself: the call's own logits. Depths before it go through ``pipe.unembed`` (the family's final norm and
head: GPT-2's ln_f, Llama's norm, BERT's MLM head, T5's final layer norm and rescaled head...). The last depth never
does: transformers' last hidden state already has the final norm applied for GPT-2, Llama, T5 and most others (norm
twice is not the model), and the logits are what the model computed.

Small inputs keep every log-probability, (depths, T, V). Above ``FULL_BYTES`` the lens keeps, per depth and
position, the top-k tokens and the tracked token's log-probability, computed a block of rows at a time (never
(depths x T x V) at once); a whole row, or another token's log-probability everywhere, is computed on demand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..capture.logits import KeptLogits
from ..runtime import lane_for

FULL_BYTES = 64 * 2**20  # below this the whole (depths, T, V) float32 array of log-probabilities is kept
CHUNK_BYTES = 64 * 2**20  # rows of logits (and their log-softmax) unembedded at once
TOP_K = 10


@dataclass(frozen=True)
class LogitLens:
    """The logit lens of one call's output stack. Depth 0 = embeddings, depth i = after block i - 1, the last depth =
    the model's output (its logits)."""

    stack: str  # "decoder" (decoder-only and encoder-decoder models) or "encoder" (encoder-only)
    token_ids: np.ndarray  # (T,) the tracked token at each position: the model's final prediction there, or given
    token_log_probs: np.ndarray  # (depths, T) its log-probability at each depth and position
    top_ids: np.ndarray  # (depths, T, k) the k most likely tokens at each depth and position
    top_log_probs: np.ndarray  # (depths, T, k) their log-probabilities
    log_probs: np.ndarray | None  # (depths, T, V) every log-probability, when it fits FULL_BYTES; else None
    seconds: float  # computing it
    _pipe: Any = field(repr=False, compare=False, default=None)
    _hidden: torch.Tensor | None = field(repr=False, compare=False, default=None)  # (depths, T, d_model)
    _logits: KeptLogits | None = field(repr=False, compare=False, default=None)  # the model's output (its call's)

    @property
    def n_depths(self) -> int:
        return int(self.token_log_probs.shape[0])

    @property
    def depth_labels(self) -> list[str]:
        """"embeddings", "block 0", ..., "output" (the last block's output through the model's head)."""
        n = self.n_depths
        return ["embeddings"] + [f"block {i}" for i in range(n - 2)] + [f"block {n - 2} (output)"]

    def row(self, depth: int, position: int) -> np.ndarray:
        """(V,) log-probabilities at one depth and position (computed on demand when not kept)."""
        if self.log_probs is not None:
            return self.log_probs[depth, position]
        if depth == self.n_depths - 1:
            return torch.log_softmax(self._logits.row(position), -1).numpy()
        with torch.inference_mode():
            logits = self._pipe.unembed(self.stack, self._hidden[depth, position][None])
        return torch.log_softmax(logits.float(), -1)[0].cpu().numpy()

    def log_probs_of(self, token_id: int) -> np.ndarray:
        """(depths, T) the log-probability of one token at every depth and position (a token the user typed)."""
        if self.log_probs is not None:
            return self.log_probs[..., int(token_id)]
        return _lens_pass(self._pipe, self.stack, self._hidden, self._logits,
                          np.full(self._hidden.shape[1], int(token_id)), top_k=0)[0]


def logit_lens(pipe, result, tokens: int | np.ndarray | None = None, *, top_k: int = TOP_K,
               full_bytes: int = FULL_BYTES, progress=None) -> LogitLens:
    """The logit lens of ``result``, a call run with ``hidden_states=True``, over its output stack. ``tokens``: the
    token to follow (one id for every position, or (T,) ids); default the model's final prediction at each
    position. ``progress(depths done, the lens so far)`` after each depth (the depths not done yet are NaN); it may
    raise to stop there (model.jobs)."""
    if result.logits is None or not pipe.info.has_head:
        raise ValueError("this model has no output head: the logit lens reads the residual stream through it")
    stack = pipe.info.output_stack
    if not result.hidden or stack not in result.hidden:
        raise ValueError("the logit lens needs the residual streams: run the call with hidden_states=True")
    started = time.perf_counter()
    hidden = result.hidden[stack]  # (depths, T, d_model)
    layers = pipe.info.n_decoder_layers if stack == "decoder" else pipe.info.n_encoder_layers
    if hidden.shape[0] != layers + 1:
        raise ValueError(f"expected {layers + 1} residual streams of the {stack} (embeddings and {layers} blocks), got "
                         f"{hidden.shape[0]}")
    logits = result.logits  # the call's (T, V), as it kept them
    T, V = logits.shape
    if tokens is None:
        ids = logits.argmax.numpy()
    else:
        ids = np.broadcast_to(np.asarray(tokens, dtype=np.int64), (T,)).copy()
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            raise ValueError(f"token ids must lie in the vocabulary 0..{V - 1}")
    keep_all = (layers + 1) * T * V * 4 <= full_bytes

    def lens_of(arrays) -> LogitLens:
        tracked, top_ids, top_lp, full = arrays
        return LogitLens(stack=stack, token_ids=ids, token_log_probs=tracked, top_ids=top_ids, top_log_probs=top_lp,
                         log_probs=full, seconds=time.perf_counter() - started, _pipe=pipe, _hidden=hidden,
                         _logits=logits)

    on_depth = None if progress is None else (lambda done, arrays: progress(done, lens_of(arrays)))
    return lens_of(_lens_pass(pipe, stack, hidden, logits, ids, top_k=min(top_k, V), keep_all=keep_all,
                              on_depth=on_depth))


def _lens_pass(pipe, stack: str, hidden: torch.Tensor, logits: KeptLogits, ids: np.ndarray, *, top_k: int,
               keep_all: bool = False, on_depth=None):
    """One pass over every depth and position, a block of rows at a time -> (tracked (depths, T), top ids and
    log-probs (depths, T, k), everything (depths, T, V) or None). ``on_depth(depths done, those arrays)`` after each
    depth (NaN where a depth is not done yet)."""
    depths, T, d = hidden.shape
    V = logits.shape[-1]
    tracked = np.full((depths, T), np.nan, dtype=np.float32)
    top_ids = np.zeros((depths, T, top_k), dtype=np.int64)
    top_lp = np.full((depths, T, top_k), np.nan, dtype=np.float32)
    full = np.zeros((depths, T, V), dtype=np.float32) if keep_all else None
    arrays = (tracked, top_ids, top_lp, full)
    ids_t = torch.as_tensor(ids, dtype=torch.long)
    rows_per_chunk = max(1, CHUNK_BYTES // (V * 4 * 3))  # logits, log-softmax and a temporary

    def take(depth: int, rows: slice, z: torch.Tensor) -> None:
        z = z.float().cpu()  # (rows, V) logits
        if full is not None:
            lp = torch.log_softmax(z, -1)
            full[depth, rows] = lp.numpy()
        else:  # log p = z - logsumexp(z): the top k and one column need no (rows, V) log-softmax
            lse = torch.logsumexp(z, -1, keepdim=True)
            lp = None
        pick = z.gather(-1, ids_t[rows, None]) if lp is None else lp.gather(-1, ids_t[rows, None])
        tracked[depth, rows] = (pick if lp is not None else pick - lse)[:, 0].numpy()
        if top_k:
            values, indices = (z if lp is None else lp).topk(top_k, dim=-1)
            top_ids[depth, rows] = indices.numpy()
            top_lp[depth, rows] = (values if lp is not None else values - lse).numpy()

    def run() -> None:
        with torch.inference_mode():
            for depth in range(depths - 1):
                for start in range(0, T, rows_per_chunk):
                    rows = slice(start, min(T, start + rows_per_chunk))
                    take(depth, rows, pipe.unembed(stack, hidden[depth, rows]))
                if on_depth is not None:
                    on_depth(depth + 1, arrays)
            for first, stop, z in logits.each_block():  # the last depth: the model's own logits
                take(depths - 1, slice(first, stop), z)

    lane_for(2.0 * d * V * depths * T, pipe.device).run(run)
    return arrays


__all__ = ["CHUNK_BYTES", "FULL_BYTES", "LogitLens", "TOP_K", "logit_lens"]
