"""What a head contributes: the same input run again with heads ablated (passed in the call), and the difference.

The original token at a position is the one the original run predicted there (its argmax). Effects per position:
its probability and logit before and after, and KL(before || after) of the whole next-token distribution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..call import intervened_outputs
from ..names import RecordName

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


def effect_of(logits_before: torch.Tensor, logits_after: torch.Tensor) -> AblationEffect:
    """(T, V) logits of the original and the ablated run on the same input -> AblationEffect."""
    lb, la = logits_before.float(), logits_after.float()
    ids = lb.argmax(-1)
    logp_b, logp_a = torch.log_softmax(lb, -1), torch.log_softmax(la, -1)
    kl = (logp_b.exp() * (logp_b - logp_a)).sum(-1).clamp_min(0)
    take = ids[:, None]
    return AblationEffect(token_ids=ids.numpy(), p_before=logp_b.gather(-1, take)[:, 0].exp().numpy(),
                          p_after=logp_a.gather(-1, take)[:, 0].exp().numpy(),
                          logit_before=lb.gather(-1, take)[:, 0].numpy(), logit_after=la.gather(-1, take)[:, 0].numpy(),
                          kl=kl.numpy(), argmax_after=la.argmax(-1).numpy())


def rank_heads(pipe, result, mode: str = "zero", names: list[str] | None = None) -> tuple[pd.DataFrame, float]:
    """Ablate every head alone on ``result``'s input (one batched pass per attention, chunked to a memory budget)
    and rank by the mean KL over positions. Returns (table sorted by effect, seconds)."""
    if result.logits is None:
        raise ValueError("this model has no output head: ablation effects are measured on its predictions")
    started = time.perf_counter()
    names = list(names or pipe.info.record_names)
    T, V = result.logits.shape
    per_chunk = max(1, int(LOGITS_BUDGET_BYTES // max(T * V * 4 * 3, 1)))  # logits, log-softmax, temporaries
    rows = []
    for name in names:
        heads = list(range(pipe.info.n_heads))
        for start in range(0, len(heads), per_chunk):
            chunk = heads[start: start + per_chunk]
            logits = intervened_outputs(pipe, result, [{"ablations": {name: {h: mode}}} for h in chunk])  # (N, T, V)
            n = RecordName.parse(name)
            for h, after in zip(chunk, logits, strict=True):
                eff = effect_of(result.logits, after)
                rows.append({"attention": name, "stack": n.stack, "layer": n.layer, "kind": n.kind, "head": h,
                             "mean_kl": float(eff.kl.mean()), "max_kl": float(eff.kl.max()),
                             "mean_p_drop": float((eff.p_before - eff.p_after).mean()),
                             "changed_predictions": int(eff.changed.sum())})
    table = pd.DataFrame(rows).sort_values("mean_kl", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table, time.perf_counter() - started
