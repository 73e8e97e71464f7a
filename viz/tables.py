"""Tables and exports of a trace: long DataFrames, CSV and JSON bytes."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from model import record_to_dataframe


def selection_table(trace, name: str, head: int | None, src_tokens: Sequence[str], tgt_tokens: Sequence[str]
                    ) -> pd.DataFrame:
    """The current selection (one attention, one head or all heads) as a long table, one row per (query, key)."""
    df = record_to_dataframe(trace[name], name, src_tokens, tgt_tokens)
    if head is not None:
        df = df[df["head"] == head].reset_index(drop=True)
    return df


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def to_json_bytes(df: pd.DataFrame, meta: dict | None = None) -> bytes:
    """{"meta": ..., "rows": [...]}; -inf masked scores become null (JSON has no infinity)."""
    rows = json.loads(df.replace([np.inf, -np.inf], np.nan).to_json(orient="records"))
    return json.dumps({"meta": meta or {}, "rows": rows}, ensure_ascii=False).encode("utf-8")
