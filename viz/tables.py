"""Tables and exports of a trace: long DataFrames, CSV (spreadsheet-safe) and JSON (exact) bytes."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from model import record_to_dataframe

# A CSV cell that starts with one of these is run as a formula by spreadsheet programs (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_BYTES_PER_ROW = 110  # measured on trace tables: ~80-110 bytes per (attention, head, query, key) row


def selection_table(trace, name: str, head: int | None, src_tokens: Sequence[str] | None,
                    tgt_tokens: Sequence[str] | None) -> pd.DataFrame:
    """The current selection (one attention, one head or all heads) as a long table, one row per (query, key)."""
    df = record_to_dataframe(trace[name], name, src_tokens, tgt_tokens)
    if head is not None:
        df = df[df["head"] == head].reset_index(drop=True)
    return df


def window_table(trace, name: str, head: int, rows: range, cols: range, q_tokens: Sequence[str],
                 k_tokens: Sequence[str]) -> pd.DataFrame:
    """One head's window of one attention (every stage the trace answers for it) as a long table, one row per
    (query, key): what a long input exports instead of a whole record."""
    stages = {stage: trace.window(name, head, rows, cols, stage) for stage in ("scores", "scaled", "masked",
                                                                               "weights")}
    w = stages["weights"]
    reason = np.full(w.values.shape, "", dtype=object)
    for why, cells in w.reasons.items():
        reason[cells] = why
    qp, kp = np.meshgrid(np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop), indexing="ij")
    qt, kt = np.asarray(list(q_tokens), dtype=object), np.asarray(list(k_tokens), dtype=object)
    return pd.DataFrame({"attention": name, "head": head, "query_pos": qp.ravel(), "query_token": qt[qp.ravel()],
                         "key_pos": kp.ravel(), "key_token": kt[kp.ravel()],
                         "score": stages["scores"].values.ravel(), "scaled": stages["scaled"].values.ravel(),
                         "masked_score": stages["masked"].values.ravel(), "weight": w.values.ravel(),
                         "masked": (reason != "").ravel(), "mask_reason": reason.ravel()})


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells starting with = + - @ tab or CR get a leading apostrophe (spreadsheets then show
    the text instead of running it). Numbers are untouched."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV for spreadsheets: token text that looks like a formula is neutralised (JSON keeps the exact text)."""
    return neutralise_formulas(df).to_csv(index=False).encode("utf-8")


def to_json_bytes(df: pd.DataFrame, meta: dict | None = None) -> bytes:
    """{"meta": ..., "rows": [...]} with the exact token text; -inf masked scores become null (JSON has none)."""
    rows = json.loads(df.replace([np.inf, -np.inf], np.nan).to_json(orient="records"))
    return json.dumps({"meta": meta or {}, "rows": rows}, ensure_ascii=False).encode("utf-8")


def estimated_csv_bytes(n_rows: int) -> int:
    return int(n_rows * CSV_BYTES_PER_ROW)
