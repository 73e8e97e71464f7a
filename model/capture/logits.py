"""What a traced call keeps of its (T, V) logits: per position the top-k ids and logits, the log-sum-exp and the
log-probability of the chosen token (the next one of the input), and whole rows on demand.

The call runs the model's output head itself, on what the head reads (the last hidden state, (T, d_model): small),
a block of at most ``BLOCK_BYTES`` of logits at a time (about 650 positions of a 50k vocabulary: not fewer, as a
matrix product per block reads the whole output matrix again), reduces each block in place and drops it; it keeps
the head's input. ``rows(positions)`` runs the head again on a few rows around the ones asked for and checks them
against the kept top-k logits, bit for bit; where they differ (a matrix product that takes another path for fewer
rows), it runs the head on the call's own block (the same shape as the call: the same bits). The whole (T, V) is
kept only when small (``WHOLE_BYTES``), or when the pipeline cannot leave its head to the call (a family this app
does not know the head of): then it holds what the model's forward returned.

At T = 8,192 with a 32,000-token vocabulary the logits are 1,000 MiB of float32; this keeps 17 MiB (d_model 512).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from ..runtime import Lane

TOP_K = 10  # ids and logits kept per position (the decoding view's alternatives, the lens' top tokens)
WHOLE_BYTES = 4 * 2**20  # (T, V) float32 logits up to this are kept whole
BLOCK_BYTES = 128 * 2**20  # the most one block of (rows, V) float32 logits holds during the call
MIN_ROWS = 16  # rows of a recomputation: below this a CPU matrix product takes another path (other bits)


def block_rows(n: int, vocab_size: int) -> int:
    """Positions per block of the call's output head: ``n`` split evenly into blocks of at most ``BLOCK_BYTES``
    (a multiple of 16 rows when there are several)."""
    most = max(MIN_ROWS, BLOCK_BYTES // (4 * max(vocab_size, 1)) // MIN_ROWS * MIN_ROWS)
    if n <= most:
        return max(n, 1)
    per_block = -(-n // -(-n // most))  # n over the fewest blocks that fit, rounded up
    return -(-per_block // MIN_ROWS) * MIN_ROWS


def block_of(position: int, n: int, rows: int) -> tuple[int, int]:
    """The block of positions whose head pass computes ``position``: ``rows`` long (the last one ends at ``n`` and
    overlaps the one before), or all ``n`` positions when they are fewer."""
    if n <= rows:
        return 0, n
    start = min(position // rows * rows, n - rows)
    return start, start + rows


def blocks(n: int, rows: int) -> Iterator[tuple[int, int, int]]:
    """(start, stop, first): every block of ``n`` positions, ``first`` the first position it owns (the last block
    recomputes a few positions of the one before, so that every block has ``rows`` rows)."""
    for first in range(0, n, rows):
        start, stop = block_of(first, n, rows)
        yield start, stop, first


@dataclass(frozen=True)
class KeptLogits:
    """What one call kept of its (T, V) logits (see the module docstring). Rows on demand are float32, on the CPU."""

    top_ids: torch.Tensor  # (T, k) int64: the k largest logits' ids at each position, largest first
    top_logits: torch.Tensor  # (T, k) float32: those logits
    lse: torch.Tensor  # (T,) float32: each row's log-sum-exp, as its log_softmax used it (log p = logit - lse)
    chosen_ids: torch.Tensor  # (T,) int64: the input's next token at each position; at the last one, the prediction
    chosen_log_probs: torch.Tensor  # (T,) float32: log p(chosen), the row's log_softmax there
    vocab_size: int
    whole: torch.Tensor | None = None  # (T, V) float32: every logit, kept when small or when the head cannot rerun
    head_input: torch.Tensor | None = None  # (T, d_model) what the output head read (model dtype and device)
    rows_per_block: int = 1  # the call's blocks (block_of)
    head: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)
    lane: Lane | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(T, V), as the logits' shape."""
        return int(self.lse.shape[0]), self.vocab_size

    def __len__(self) -> int:
        return int(self.lse.shape[0])

    @property
    def argmax(self) -> torch.Tensor:
        """(T,) int64 the prediction at each position (the first of the largest logits, as argmax)."""
        return self.top_ids[:, 0]

    def top(self, position: int, k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` (<= TOP_K) most likely ids at one position and their probabilities."""
        k = min(k, self.top_ids.shape[1])
        return self.top_ids[position, :k], (self.top_logits[position, :k] - self.lse[position]).exp()

    def rows(self, positions: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """(P, V) float32 logits at ``positions`` (None: every position), the call's own bits."""
        T = len(self)
        positions = list(range(T)) if positions is None else [int(p) for p in torch.as_tensor(positions).reshape(-1)]
        if any(not -T <= p < T for p in positions):
            raise IndexError(f"positions must lie in 0..{T - 1}")
        positions = [p % T for p in positions]
        if self.whole is not None:
            return self.whole[positions]
        out = torch.empty(len(positions), self.vocab_size, dtype=torch.float32)
        by_block: dict[tuple[int, int], list[int]] = {}
        for n, p in enumerate(positions):
            by_block.setdefault(block_of(p, T, self.rows_per_block), []).append(n)
        for (start, stop), ns in by_block.items():
            want = [positions[n] for n in ns]
            if len(set(want)) <= MIN_ROWS < stop - start:  # a few rows of a big block: 16 rows around each
                by_window: dict[int, list[int]] = {}
                for n, p in zip(ns, want, strict=True):
                    by_window.setdefault(min(p // MIN_ROWS * MIN_ROWS, T - MIN_ROWS), []).append(n)
                done = True
                for w, wns in by_window.items():
                    z = self._run_head(w, w + MIN_ROWS)[[positions[n] - w for n in wns]]
                    done = done and self._same_as_kept(z, [positions[n] for n in wns])
                    out[wns] = z
                if done:
                    continue  # else another path for fewer rows (other bits): the call's own block below
            out[ns] = self._run_head(start, stop)[[p - start for p in want]]
        return out

    def row(self, position: int) -> torch.Tensor:
        """(V,) float32 logits at one position."""
        return self.rows([position])[0]

    def each_block(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(first, stop, (stop - first, V) logits) over every position, the call's blocks (never (T, V) at once)."""
        return self.each_block_from(0)

    def each_block_from(self, position: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``each_block`` from the block that holds ``position`` on (the head runs on none of the blocks before)."""
        for start, stop, first in blocks(len(self), self.rows_per_block):
            if stop <= position:
                continue
            z = self.whole[start:stop] if self.whole is not None else self._run_head(start, stop)
            yield first, stop, z[first - start:]

    def _same_as_kept(self, rows: torch.Tensor, positions: list[int]) -> bool:
        return bool(torch.equal(rows.gather(-1, self.top_ids[positions]), self.top_logits[positions]))

    def _run_head(self, start: int, stop: int) -> torch.Tensor:
        if self.head is None or self.head_input is None:
            raise ValueError("these logits were kept without their head's input: no row can be recomputed")

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return self.head(self.head_input[start:stop]).float().cpu()
        return run() if self.lane is None else self.lane.run(run)

    def nbytes(self) -> int:
        """What this record holds (the head's input counted with the storage it views)."""
        tensors = [self.top_ids, self.top_logits, self.lse, self.chosen_ids, self.chosen_log_probs, self.whole,
                   self.head_input]
        return sum(t.untyped_storage().nbytes() for t in tensors if t is not None)


def keep_logits(logits_of: Callable[[int, int], torch.Tensor], n: int, next_ids: Sequence[int], *,
                rows_per_block: int, keep_whole: bool, scratch: bool = False, top_k: int = TOP_K) -> dict:
    """One pass over the blocks of ``n`` positions (``logits_of(start, stop)`` -> (rows, V) logits) -> the fields of
    KeptLogits. ``next_ids``: the input's token after each position (the last position, or an encoder's, have none:
    their chosen token is the prediction). ``scratch``: each block is a new tensor this pass may overwrite."""
    lse = torch.empty(n, dtype=torch.float32)
    chosen_lp = torch.empty(n, dtype=torch.float32)
    chosen = torch.full((n,), -1, dtype=torch.long)
    chosen[:len(next_ids)] = torch.as_tensor(list(next_ids), dtype=torch.long)
    top_ids = top_logits = whole = None
    V = k = 0
    for start, stop, first in blocks(n, rows_per_block):
        z = logits_of(start, stop).float().cpu()[first - start:]  # (rows, V) the rows this block owns
        own = slice(first, stop)
        if top_ids is None:  # the vocabulary as the head gives it
            V = int(z.shape[-1])
            k = min(top_k, V)
            top_ids, top_logits = torch.empty(n, k, dtype=torch.long), torch.empty(n, k, dtype=torch.float32)
            whole = torch.empty(n, V, dtype=torch.float32) if keep_whole else None
        values, ids = z.topk(k, dim=-1)
        tie = values[:, 0] == values[:, 1] if k > 1 else torch.zeros(len(z), dtype=torch.bool)
        if tie.any():  # equal logits in first place: argmax's order (the lowest id first), as a stable sort gives
            values[tie], ids[tie] = (t[:, :k] for t in torch.sort(z[tie], -1, descending=True, stable=True))
        top_ids[own], top_logits[own] = ids, values
        picked = torch.where(chosen[own] < 0, ids[:, 0], chosen[own])
        chosen[own] = picked
        if whole is not None:
            whole[own] = z
        # one log_softmax pass for the chosen and the top token's log-probability; in place when the block is the
        # head's own output (one (rows, V) buffer, not two), the same bits
        lp = torch.log_softmax(z, -1, out=z) if scratch and z.is_contiguous() else torch.log_softmax(z, -1)
        chosen_lp[own] = lp.gather(-1, picked[:, None])[:, 0]
        # log_softmax is z - max - log(sum): at the top token z - max is 0, so there -lp is lse - max
        lse[own] = values[:, 0] - lp.gather(-1, ids[:, :1])[:, 0]
        del lp, z
    return dict(top_ids=top_ids, top_logits=top_logits, lse=lse, chosen_ids=chosen, chosen_log_probs=chosen_lp,
                vocab_size=V, whole=whole, rows_per_block=rows_per_block)


def kept_from_head(head: Callable[[torch.Tensor], torch.Tensor], head_input: torch.Tensor, vocab_size: int,
                   next_ids: Sequence[int], *, lane: Lane | None = None, whole_bytes: int | None = None
                   ) -> KeptLogits:
    """The call's logits computed by ``head`` on ``head_input`` (T, d_model) a block of positions at a time and
    kept as KeptLogits (whole when T x V float32 fits ``whole_bytes``; else the head's input, for rows on demand).
    ``vocab_size``: the model's (it sizes the blocks; the kept width is what the head gives)."""
    n = int(head_input.shape[0])
    rows = block_rows(n, vocab_size)
    keep_whole = n * vocab_size * 4 <= (WHOLE_BYTES if whole_bytes is None else whole_bytes)

    def logits_of(start: int, stop: int) -> torch.Tensor:
        return head(head_input[start:stop])

    with torch.inference_mode():
        fields = keep_logits(logits_of, n, next_ids, rows_per_block=rows, keep_whole=keep_whole, scratch=True)
    if keep_whole:
        return KeptLogits(**fields)
    return KeptLogits(**fields, head_input=head_input, head=head, lane=lane)


def kept_from_logits(logits: torch.Tensor, next_ids: Sequence[int]) -> KeptLogits:
    """The call's (T, V) logits, computed by the model's forward (a head the call cannot run apart), kept whole."""
    T, V = logits.shape
    logits = logits.float().cpu()
    with torch.inference_mode():
        fields = keep_logits(lambda start, stop: logits[start:stop], T, next_ids, rows_per_block=block_rows(T, V),
                             keep_whole=False)
    return KeptLogits(**{**fields, "whole": logits})


__all__ = ["BLOCK_BYTES", "KeptLogits", "MIN_ROWS", "TOP_K", "WHOLE_BYTES", "block_of", "block_rows", "blocks",
           "kept_from_head", "kept_from_logits", "keep_logits"]
