"""An image model's attention read per query over the picture: one head's row, the mean over heads, or rollout up
to a layer; and the knockout of chosen patches. (Each token's norms and the high-norm rule: model.analysis.tokens.)

Read from one traced call: ``names`` are its encoder self-attentions bottom to top (``encoder.{l}.self_attn``), a
query is a sequence position, and the patches are ``result.patch_positions`` (row-major over
``result.patch_grid``). Rollout is model.analysis.rollout's (Abnar & Zuidema): the residual counted as half of
each layer, heads averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .rollout import rollout

HOW = ("head", "mean", "rollout")  # one head's weights, the mean over heads, rollout up to the layer


def query_row(trace, names: Sequence[str], layer: int, how: str | int, query: int) -> np.ndarray:
    """(T,) float32 what query ``query`` reads at layer index ``layer`` of ``names``: one head's weights (``how``
    an int), their mean over heads ("mean"), or its row of rollout through layers 0..layer ("rollout")."""
    name = names[layer]
    if isinstance(how, (int, np.integer)) and not isinstance(how, bool):
        return np.asarray(trace.row(name, int(how), int(query)).weights, dtype=np.float32)
    if how == "mean":
        return head_rows(trace, name, query).mean(0)
    if how == "rollout":
        layers = [np.asarray(trace[n].numpy().weights, dtype=np.float64)[0] for n in names[:layer + 1]]
        return rollout(layers)[int(query)].astype(np.float32)
    raise ValueError(f"how must be a head index or one of {HOW[1:]}, got {how!r}")


def head_rows(trace, name: str, query: int) -> np.ndarray:
    """(H, T) float32 every head's weights for one query (one row per head: a lazy trace computes only those)."""
    H = trace.shape(name).n_heads
    return np.stack([np.asarray(trace.row(name, h, int(query)).weights, dtype=np.float32) for h in range(H)])


def patch_knockouts(names: Sequence[str], n_heads: int, n_tokens: int, positions: Sequence[int],
                    heads: Sequence[int] | None = None) -> dict[str, dict[int, np.ndarray]]:
    """The knockouts that take the tokens at ``positions`` (patches) out of every query's keys, in each of
    ``names`` and ``heads`` (default: all): what the rest of the picture can still read without them. Each row
    renormalises over the keys left (model.core.interventions)."""
    positions = sorted({int(p) for p in positions})
    bad = [p for p in positions if not 0 <= p < n_tokens]
    if bad:
        raise ValueError(f"positions {bad} outside 0..{n_tokens - 1}")
    cells = np.zeros((n_tokens, n_tokens), dtype=bool)
    cells[:, positions] = True
    heads = range(n_heads) if heads is None else heads
    return {str(name): {int(h): cells for h in heads} for name in names}


__all__ = ["HOW", "head_rows", "patch_knockouts", "query_row"]
