"""One attention record as a long DataFrame: a row per (head, query, key), with tokens, every stage and the mask's
reason (see ``Trace.to_dataframe`` for the columns)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..core.attention import AttentionRecord, to_numpy
from ..core.names import RecordName
from ..core.reasons import mask_reason_matrix


def record_to_dataframe(rec: AttentionRecord, name: str, src_tokens: Sequence[str] | None = None,
                        tgt_tokens: Sequence[str] | None = None, batch_index: int = 0) -> pd.DataFrame:
    """Long DataFrame of one record (see ``Trace.to_dataframe`` for the columns)."""
    n = RecordName.parse(name)
    weights = to_numpy(rec.weights)[batch_index]  # (H, Tq, Tk)
    H, Tq, Tk = weights.shape
    q_tokens = src_tokens if n.query_stack == "encoder" else tgt_tokens
    k_tokens = src_tokens if n.key_stack == "encoder" else tgt_tokens
    q_tokens = list(q_tokens)[:Tq] if q_tokens is not None else [str(i) for i in range(Tq)]
    k_tokens = list(k_tokens)[:Tk] if k_tokens is not None else [str(i) for i in range(Tk)]
    reason = mask_reason_matrix(rec, batch_index)
    head, qpos, kpos = np.meshgrid(np.arange(H), np.arange(Tq), np.arange(Tk), indexing="ij")
    return pd.DataFrame({
        "stack": n.stack, "layer": n.layer, "sublayer": n.sublayer, "kind": n.kind,
        "head": head.ravel(),
        "query_pos": qpos.ravel(), "query_token": np.asarray(q_tokens, dtype=object)[qpos.ravel()],
        "key_pos": kpos.ravel(), "key_token": np.asarray(k_tokens, dtype=object)[kpos.ravel()],
        "score": to_numpy(rec.scores)[batch_index].ravel(),
        "scaled": to_numpy(rec.scaled)[batch_index].ravel(),
        "masked_score": to_numpy(rec.masked)[batch_index].ravel(),
        "weight": weights.ravel(),
        "masked": (reason != "").ravel(),
        "mask_reason": reason.ravel(),
    })


__all__ = ["record_to_dataframe"]
