"""An image model's attention read per query over the picture: one head's row, the mean over heads, or rollout up
to a layer; the knockout of chosen patches; and the tokens whose norm stands out (registers, high-norm tokens).

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
# A token is flagged when its norm is more than this many times the median patch's. Relative to the picture's own
# patches, so the rule does not depend on a model's scale; ordinary patches stay within a small factor of their
# median, while the high-norm tokens Darcet et al. (2024, "Vision Transformers Need Registers") describe form a
# separate mode far above them. The page draws every norm, so a reader sees the tokens near the line too.
HIGH_NORM_RATIO = 3.0


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


def high_norm(norms: np.ndarray, patch_positions: Sequence[int], ratio: float = HIGH_NORM_RATIO
              ) -> tuple[np.ndarray, float]:
    """(flagged bool (T,), threshold): the tokens whose norm is over ``ratio`` times the median norm of the
    patches (any token may be flagged: [CLS], a register, a patch)."""
    n = np.asarray(norms, dtype=np.float64)
    patches = n[np.asarray(patch_positions, dtype=np.int64)]
    threshold = float(ratio * np.median(patches)) if patches.size else float("inf")
    return n > threshold, threshold


def received(trace, name: str) -> np.ndarray:
    """(T,) the weight each key receives, averaged over heads and query rows: where the attention goes (a sink, a
    register)."""
    T = trace.shape(name).tk
    return trace.columns(name, range(T)).mean(axis=(0, 1)).astype(np.float32)


def value_norms(record) -> np.ndarray:
    """(T,) the norm of each token's value vector, all key/value heads together: ||v_j|| of the values a weight
    multiplies (Kobayashi et al. 2020: a large weight on a small value moves little)."""
    v = np.asarray(record.v, dtype=np.float64)[0]  # (H_kv, T, d_v)
    return np.sqrt((v ** 2).sum(axis=(0, 2))).astype(np.float32)


__all__ = ["HIGH_NORM_RATIO", "HOW", "head_rows", "high_norm", "patch_knockouts", "query_row", "received",
           "value_norms"]
