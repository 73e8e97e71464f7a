"""Statistics of attention weights per query row, computed a block of rows at a time, and per head from them.

One definition for every place that needs them: a full trace (all rows in one block), the first pass of a lazy
trace (blocks of rows, never a whole T x T), the Statistics view and the corpus atlas. Masked keys never count;
a row with no allowed key is left out of every mean.

Shapes: a block of weights (B, H, R, Tk) for R query rows; ``allowed`` bool broadcastable to it (True = may
attend); row statistics (B, H, R); ``column_mass`` (B, H, Tk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch

LOCAL_WINDOWS = (4, 16, 64, 256)  # local share: the weight within this many positions of the query
SHARES = ("entropy_norm", "max_weight", "first_share", "sink_share", "sep_share", "self_share", "prev_token",
          "induction", *(f"local_{w}" for w in LOCAL_WINDOWS))  # the statistics between 0 and 1

STAT_DEFINITIONS = {
    "entropy": "mean over query rows of -Σ_j α_ij ln α_ij (nats), allowed keys only",
    "entropy_norm": "entropy divided by ln(number of allowed keys), per row, then averaged (rows with one key "
                    "left out): 0 = all weight on one key, 1 = uniform",
    "distance": "mean over query rows of Σ_j α_ij |i − j|: how far back (or ahead) a head looks, in tokens "
                "(self-attention only)",
    "max_weight": "mean over query rows of max_j α_ij",
    "first_share": "mean weight on the first key (BOS / [CLS] / the first token): an attention sink",
    "sink_share": "the share of all the head's weight that lands on its most-attended key, whichever it is (the "
                  "attention sink; its position is sink_key)",
    "sep_share": "mean total weight on special tokens after the first ([SEP], [EOS], </s>, ...)",
    "self_share": "mean weight of a token on itself, α_ii (self-attention only)",
    "prev_token": "mean weight on the previous token, α_i,i−1, over rows i ≥ 1 (self-attention only)",
    "induction": "at each token seen before, the mean total weight on the tokens that followed its earlier "
                 "occurrences (decoder self-attention, inputs that repeat)",
    **{f"local_{w}": f"mean weight on the keys within {w} positions of the query, |i − j| < {w} (self-attention "
                     f"only)" for w in LOCAL_WINDOWS},
}
HUMAN_NAMES = {
    "entropy": "entropy (nats)", "entropy_norm": "entropy, normalised", "distance": "mean distance (tokens)",
    "max_weight": "max weight", "first_share": "weight on the first token", "sink_share": "sink share",
    "sep_share": "weight on separators", "self_share": "weight on itself", "prev_token": "previous-token score",
    "induction": "induction score", **{f"local_{w}": f"local share (±{w})" for w in LOCAL_WINDOWS},
}
SELF_ONLY = ("distance", "self_share", "prev_token", *(f"local_{w}" for w in LOCAL_WINDOWS))


@dataclass
class RowStats:
    """Per batch item, head and query row (B, H, Tq) float32 statistics of one attention's weights.

    ``lse`` is each row's log-sum-exp over its allowed keys (-inf when none): the softmax's normaliser, kept so
    that a window of columns can be normalised without the rest of the row.
    """

    lse: torch.Tensor
    n_keys: torch.Tensor  # allowed keys per row (0: the row is left out)
    entropy: torch.Tensor
    max_weight: torch.Tensor
    first: torch.Tensor
    sep: torch.Tensor
    self_weight: torch.Tensor | None  # None for cross-attention
    prev: torch.Tensor | None
    distance: torch.Tensor | None
    local: dict[int, torch.Tensor] | None
    induction: torch.Tensor  # NaN where the row has no induction target
    column_mass: torch.Tensor  # (B, H, Tk): total weight each key receives from the real query rows
    query_valid: torch.Tensor  # (B, Tq) bool: real query positions (not padding)
    q_positions: torch.Tensor = field(default=None)  # (Tq,) each query's position on the key axis

    def item(self, b: int, tq: int | None = None, tk: int | None = None) -> "RowStats":
        """One batch item, cut to its real lengths."""
        def cut(t, last_is_keys=False):
            if t is None:
                return None
            if t.dim() == 3:
                return t[b:b + 1, :, :(tk if last_is_keys else tq)]
            return t[b:b + 1, :tq]
        return RowStats(
            lse=cut(self.lse), n_keys=cut(self.n_keys), entropy=cut(self.entropy), max_weight=cut(self.max_weight),
            first=cut(self.first), sep=cut(self.sep), self_weight=cut(self.self_weight), prev=cut(self.prev),
            distance=cut(self.distance), local=None if self.local is None else {w: cut(v) for w, v in
                                                                                 self.local.items()},
            induction=cut(self.induction), column_mass=cut(self.column_mass, True), query_valid=cut(self.query_valid),
            q_positions=None if self.q_positions is None else self.q_positions[:tq])

    def nbytes(self) -> int:
        total = 0
        for f in fields(self):
            v = getattr(self, f.name)
            for t in (v.values() if isinstance(v, dict) else [v]):
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total


def induction_targets(ids: Sequence[int], ignore: Sequence[int] = (), most: int | None = None) -> list[list[int]]:
    """For each position i: the positions j + 1 where ids[j] == ids[i] for an earlier j < i (the token that came
    after each earlier occurrence). Empty when the token has not occurred before (or is in ``ignore``). ``most``
    keeps only the latest occurrences (a token repeated thousands of times in a long text)."""
    seen: dict[int, list[int]] = {}
    out: list[list[int]] = []
    skip = set(ignore)
    for i, t in enumerate(ids):
        earlier = seen.get(t, [])
        if most is not None:
            earlier = earlier[-most:]
        out.append([j + 1 for j in earlier if j + 1 <= i] if t not in skip else [])
        seen.setdefault(t, []).append(i)
    return out


@dataclass(frozen=True)
class KeyFacts:
    """What the statistics need to know about the key axis of one batch item."""

    special: Sequence[bool] | None = None  # per key: a special token (separator shares)
    induction: list[list[int]] | None = None  # per query row: its induction target keys (decoder self-attention)


def _n_keys(weights: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    B, H, R, Tk = weights.shape
    if allowed is None:
        return torch.full((B, H, R), Tk, dtype=torch.float32, device=weights.device)
    return torch.broadcast_to(allowed.sum(-1, dtype=torch.int32), (B, H, R)).to(torch.float32)


def _lse(max_weight: torch.Tensor, logits_max: torch.Tensor, n_keys: torch.Tensor) -> torch.Tensor:
    """Each row's log-sum-exp from the softmax itself: max weight = exp(max - lse). (B, H, R) float64, -inf for a
    row with no allowed key."""
    with torch.no_grad():  # in float64: rows with large logits (|x| ~ 50) lose 3e-6 to float32 rounding here
        lse = logits_max[..., 0].double() - torch.log(max_weight.double())
    return torch.where(n_keys > 0, lse, torch.full_like(lse, float("-inf")))


def row_lse(weights: torch.Tensor, allowed: torch.Tensor | None, logits_max: torch.Tensor) -> torch.Tensor:
    """(B, H, R) float64: the log-sum-exp of each row of a block, exactly as ``row_statistics`` gives it (a first
    pass that leaves the statistics for later keeps the same normaliser)."""
    w = weights if weights.dtype in (torch.float32, torch.float64) else weights.float()
    return _lse(w.amax(-1), logits_max, _n_keys(w, allowed))


def row_statistics(weights: torch.Tensor, allowed: torch.Tensor | None, q_positions: torch.Tensor, *,
                   self_attention: bool, logits_max: torch.Tensor | None = None,
                   keys: Sequence[KeyFacts] | None = None, query_rows: slice | None = None,
                   query_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Statistics of one block of rows. ``weights`` (B, H, R, Tk); ``q_positions`` (R,) long: each row's
    position on the key axis; ``logits_max`` (B, H, R, 1): the row maxima of the softmax input (for ``lse``);
    ``keys``: per batch item, its KeyFacts; ``query_rows``: which rows of the whole axis this block is (induction
    targets are indexed by the absolute row); ``query_valid`` (B, R): real query rows (padding rows give no column
    mass). Returns (B, H, R) tensors, and ``column_mass`` (B, H, Tk)."""
    B, H, R, Tk = weights.shape
    w = weights if weights.dtype in (torch.float32, torch.float64) else weights.float()
    n_keys = _n_keys(w, allowed)
    out: dict[str, torch.Tensor] = {"n_keys": n_keys}
    max_weight = w.amax(-1)
    out["max_weight"] = max_weight
    out["entropy"] = -torch.special.xlogy(w, w).sum(-1)
    if logits_max is not None:
        out["lse"] = _lse(max_weight, logits_max, n_keys)
    out["first"] = w[..., 0]
    key_idx = torch.arange(Tk, device=w.device)
    qp = q_positions.to(w.device)
    inside = (qp >= 0) & (qp < Tk)
    qpc = qp.clamp(0, Tk - 1)
    if self_attention:
        take = qpc.view(1, 1, R, 1).expand(B, H, R, 1)
        out["self_weight"] = torch.where(inside, w.gather(-1, take)[..., 0], torch.zeros((), dtype=w.dtype,
                                                                                          device=w.device))
        prev_ok = inside & (qp >= 1)
        prev = w.gather(-1, (qpc - 1).clamp_min(0).view(1, 1, R, 1).expand(B, H, R, 1))[..., 0]
        out["prev"] = torch.where(prev_ok, prev, torch.zeros((), dtype=w.dtype, device=w.device))
        dist = (qp[:, None] - key_idx[None, :]).abs().to(w.dtype)  # (R, Tk)
        out["distance"] = torch.einsum("bhrk,rk->bhr", w, dist)
        cum = w.cumsum(-1)
        for width in LOCAL_WINDOWS:
            hi = (qpc + width - 1).clamp(max=Tk - 1)
            lo = qpc - width  # keys lo+1 .. hi
            top = cum.gather(-1, hi.view(1, 1, R, 1).expand(B, H, R, 1))[..., 0]
            low = cum.gather(-1, lo.clamp_min(0).view(1, 1, R, 1).expand(B, H, R, 1))[..., 0]
            out[f"local_{width}"] = top - torch.where(lo >= 0, low, torch.zeros_like(low))
        del cum
    sep = torch.zeros((B, H, R), dtype=w.dtype, device=w.device)
    induction = torch.full((B, H, R), float("nan"), dtype=w.dtype, device=w.device)
    start = 0 if query_rows is None else (query_rows.start or 0)
    for b in range(B):
        facts = keys[b if len(keys) > 1 else 0] if keys else KeyFacts()
        if facts.special is not None:
            cols = [j for j in range(1, min(Tk, len(facts.special))) if facts.special[j]]
            if cols:
                sep[b] = w[b][..., cols].sum(-1)
        if facts.induction is not None:
            rows_, cols_ = [], []
            for r in range(R):
                targets = facts.induction[start + r] if start + r < len(facts.induction) else []
                for t in targets:
                    if t < Tk:
                        rows_.append(r)
                        cols_.append(t)
            if rows_:
                ri = torch.tensor(rows_, device=w.device)
                ci = torch.tensor(cols_, device=w.device)
                picked = w[b][:, ri, ci]  # (H, n)
                val = torch.zeros((H, R), dtype=w.dtype, device=w.device).index_add_(1, ri, picked)
                has = torch.zeros(R, dtype=torch.bool, device=w.device)
                has[ri] = True
                induction[b] = torch.where(has, val, induction[b])
    out["sep"] = sep
    out["induction"] = induction
    valid_rows = (n_keys > 0)
    if query_valid is not None:
        valid_rows = valid_rows & query_valid.to(w.device)[:, None, :]
    out["column_mass"] = torch.einsum("bhrk,bhr->bhk", w, valid_rows.to(w.dtype))
    return out


def collect(blocks: list[dict[str, torch.Tensor]], query_valid: torch.Tensor, q_positions: torch.Tensor,
            self_attention: bool) -> RowStats:
    """RowStats from the per-block dictionaries of ``row_statistics`` (in row order), on the CPU."""
    def cat(key):
        if key not in blocks[0]:
            return None
        return torch.cat([b[key] for b in blocks], dim=-1).cpu()
    column_mass = blocks[0]["column_mass"]
    for b in blocks[1:]:
        column_mass = column_mass + b["column_mass"]
    lse = cat("lse")
    if lse is None:
        lse = torch.full_like(cat("entropy"), float("nan"))
    return RowStats(lse=lse, n_keys=cat("n_keys"), entropy=cat("entropy"), max_weight=cat("max_weight"),
                    first=cat("first"), sep=cat("sep"), self_weight=cat("self_weight"), prev=cat("prev"),
                    distance=cat("distance"),
                    local={w: cat(f"local_{w}") for w in LOCAL_WINDOWS} if self_attention else None,
                    induction=cat("induction"), column_mass=column_mass.cpu(), query_valid=query_valid.cpu(),
                    q_positions=q_positions.cpu())


def _mean(values: torch.Tensor, use: torch.Tensor) -> np.ndarray:
    """(H, R) values averaged over the True rows of each head -> (H,) float64 (NaN where a head has none)."""
    v = values.double()
    n = use.sum(-1)
    total = torch.where(use, torch.nan_to_num(v, nan=0.0), torch.zeros_like(v)).sum(-1)
    out = torch.where(n > 0, total / n.clamp_min(1), torch.full_like(total, float("nan")))
    return out.numpy()


def head_statistics(stats: RowStats, batch_index: int = 0) -> dict[str, np.ndarray]:
    """Every statistic of STAT_DEFINITIONS per head, (H,) float64 arrays (absent when undefined for the record:
    self-attention-only ones on cross-attention; induction where no token repeats), plus ``sink_key`` (H,)."""
    b = batch_index
    n_keys = stats.n_keys[b]
    H = n_keys.shape[0]
    rows = (n_keys > 0) & stats.query_valid[b][None, :]
    out = {"entropy": _mean(stats.entropy[b], rows),
           "max_weight": _mean(stats.max_weight[b], rows),
           "first_share": _mean(stats.first[b], rows),
           "sep_share": _mean(stats.sep[b], rows)}
    norm_rows = rows & (n_keys > 1)
    with torch.no_grad():
        norm = stats.entropy[b].double() / torch.log(n_keys.double().clamp_min(2))
    out["entropy_norm"] = _mean(norm, norm_rows)
    if stats.distance is not None:
        out["distance"] = _mean(stats.distance[b], rows)
    mass = stats.column_mass[b].double()  # (H, Tk)
    n_rows = rows.sum(-1).double()
    top, where = mass.max(-1)
    out["sink_share"] = torch.where(n_rows > 0, top / n_rows.clamp_min(1), torch.full_like(top, float("nan"))).numpy()
    out["sink_key"] = where.numpy().astype(np.float64)
    if stats.self_weight is not None:
        out["self_share"] = _mean(stats.self_weight[b], rows)
        qp = stats.q_positions if stats.q_positions is not None else torch.arange(n_keys.shape[1])
        out["prev_token"] = _mean(stats.prev[b], rows & (qp >= 1)[None, :])
    induction = stats.induction[b]
    use = rows & ~torch.isnan(induction)
    if bool(use.any()):
        out["induction"] = _mean(induction, use)
    if stats.local is not None:
        for w, v in stats.local.items():
            out[f"local_{w}"] = _mean(v[b], rows)
    assert all(v.shape == (H,) for v in out.values())
    return out


__all__ = ["HUMAN_NAMES", "KeyFacts", "LOCAL_WINDOWS", "RowStats", "SELF_ONLY", "SHARES", "STAT_DEFINITIONS", "collect",
           "head_statistics", "induction_targets", "row_statistics"]
