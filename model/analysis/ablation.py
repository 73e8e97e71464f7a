"""What a head contributes: the same input run again with heads ablated (passed in the call), and the difference.

The original token at a position is the one the original run predicted there (its argmax). Effects per position:
its probability and logit before and after, and KL(before || after) of the whole next-token distribution. A model
without an output head (a bare encoder such as BertModel) predicts no tokens: there the effect is measured on its
final hidden states, per position the cosine between the vector before and after and the size of the change.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..call import intervened_outputs
from ..capture.logits import KeptLogits
from ..core.names import RecordName

LOGITS_BUDGET_BYTES = 256 * 2**20  # batched ablation runs are chunked so their logits stay under this


@dataclass(frozen=True)
class AblationEffect:
    """Per position of the output axis: the original token's probability and logit before/after, and the KL."""

    token_ids: np.ndarray  # (T,) the original run's prediction at each position
    p_before: np.ndarray  # (T,)
    p_after: np.ndarray  # (T,)
    logit_before: np.ndarray  # (T,)
    logit_after: np.ndarray  # (T,)
    kl: np.ndarray  # (T,) KL(p_before || p_after) in nats
    argmax_after: np.ndarray  # (T,) the ablated run's prediction

    @property
    def changed(self) -> np.ndarray:
        """(T,) True where the ablated run predicts another token."""
        return self.argmax_after != self.token_ids


def effect_of(logits_before: torch.Tensor | KeptLogits, logits_after: torch.Tensor) -> AblationEffect:
    """(T, V) logits of the original (or the logits its call kept: rows computed a block at a time) and of the
    ablated run on the same input -> AblationEffect."""
    if isinstance(logits_before, KeptLogits):
        parts = [_effect(z, logits_after[first:stop]) for first, stop, z in logits_before.each_block()]
        return AblationEffect(*(np.concatenate([getattr(p, f.name) for p in parts])
                                for f in dataclasses.fields(AblationEffect)))
    return _effect(logits_before, logits_after)


def _effect(logits_before: torch.Tensor, logits_after: torch.Tensor) -> AblationEffect:
    lb, la = logits_before.float(), logits_after.float()
    ids = lb.argmax(-1)
    logp_b, logp_a = torch.log_softmax(lb, -1), torch.log_softmax(la, -1)
    kl = (logp_b.exp() * (logp_b - logp_a)).sum(-1).clamp_min(0)
    take = ids[:, None]
    return AblationEffect(token_ids=ids.numpy(), p_before=logp_b.gather(-1, take)[:, 0].exp().numpy(),
                          p_after=logp_a.gather(-1, take)[:, 0].exp().numpy(),
                          logit_before=lb.gather(-1, take)[:, 0].numpy(), logit_after=la.gather(-1, take)[:, 0].numpy(),
                          kl=kl.numpy(), argmax_after=la.argmax(-1).numpy())


@dataclass(frozen=True)
class HiddenEffect:
    """Per position of a model without an output head: how its final hidden state changed under an ablation."""

    cosine: np.ndarray  # (T,) cos(h_before, h_after): 1 = the same direction
    norm_before: np.ndarray  # (T,) |h_before|
    norm_after: np.ndarray  # (T,) |h_after|
    change: np.ndarray  # (T,) |h_after − h_before| / |h_before|: the size of the change, relative

    @property
    def changed_most(self) -> int:
        """The position whose hidden state moved the most (relative change)."""
        return int(np.argmax(self.change)) if self.change.size else 0


def hidden_effect_of(hidden_before: torch.Tensor, hidden_after: torch.Tensor) -> HiddenEffect:
    """(T, d) final hidden states of the original and the ablated run on the same input -> HiddenEffect."""
    hb, ha = hidden_before.double(), hidden_after.double()
    nb, na = hb.norm(dim=-1), ha.norm(dim=-1)
    tiny = torch.finfo(torch.float64).tiny
    cosine = (hb * ha).sum(-1) / (nb * na).clamp_min(tiny)
    change = (ha - hb).norm(dim=-1) / nb.clamp_min(tiny)
    return HiddenEffect(cosine=cosine.clamp(-1, 1).numpy(), norm_before=nb.numpy(), norm_after=na.numpy(),
                        change=change.numpy())


def _per_chunk(result) -> int:
    """Ablated runs per batched pass: their logits (or final hidden states), log-softmax and temporaries within
    LOGITS_BUDGET_BYTES."""
    width = result.logits.shape[1] if result.logits is not None else result.final_hidden.shape[1]
    T = result.logits.shape[0] if result.logits is not None else result.final_hidden.shape[0]
    return max(1, int(LOGITS_BUDGET_BYTES // max(T * width * 4 * 3, 1)))


def _ranked(rows: list[dict], by: str) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(by, ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def rank_heads(pipe, result, mode: str = "zero", names: list[str] | None = None, *,
               progress: Callable[[int, object], None] | None = None) -> tuple[pd.DataFrame, float]:
    """Ablate every head alone on ``result``'s input (one batched pass per attention, chunked to a memory budget;
    attentions x heads runs of the input in all) and rank by the mean KL over positions; for a model without an
    output head, by the mean relative change of its final hidden states. Returns (table sorted by effect, seconds).
    ``progress(runs done, (the table of the heads so far, seconds))`` after each pass; it may raise to stop there
    (model.jobs)."""
    if result.logits is None and result.final_hidden is None:
        raise ValueError("this call kept neither logits nor final hidden states: nothing to measure")
    hidden = result.logits is None
    started = time.perf_counter()
    names = list(names or pipe.info.record_names)
    per_chunk = _per_chunk(result)
    by = "mean_change" if hidden else "mean_kl"
    # (T, V) once for every head while it fits half the budget; else the kept logits, a block at a time per head
    small = not hidden and result.logits.shape[0] * result.logits.shape[1] * 4 <= LOGITS_BUDGET_BYTES // 2
    before = result.logits.rows() if small else result.logits
    rows: list[dict] = []
    for name in names:
        heads = list(range(pipe.info.n_heads))
        n = RecordName.parse(name)
        for start in range(0, len(heads), per_chunk):
            chunk = heads[start: start + per_chunk]
            outs = intervened_outputs(pipe, result, [{"ablations": {name: {h: mode}}} for h in chunk])  # (N, T, V|d)
            for h, after in zip(chunk, outs, strict=True):
                row = {"attention": name, "stack": n.stack, "layer": n.layer, "kind": n.kind, "head": h}
                if hidden:
                    eff = hidden_effect_of(result.final_hidden, after)
                    row.update({"mean_change": float(eff.change.mean()), "max_change": float(eff.change.max()),
                                "mean_cosine": float(eff.cosine.mean()), "min_cosine": float(eff.cosine.min())})
                else:
                    eff = effect_of(before, after)
                    row.update({"mean_kl": float(eff.kl.mean()), "max_kl": float(eff.kl.max()),
                                "mean_p_drop": float((eff.p_before - eff.p_after).mean()),
                                "changed_predictions": int(eff.changed.sum())})
                rows.append(row)
            del outs
            if progress is not None:
                progress(len(rows), (_ranked(rows, by), time.perf_counter() - started))
    return _ranked(rows, by), time.perf_counter() - started
