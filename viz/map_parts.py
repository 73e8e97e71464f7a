"""One attention map's canvas parts straight from a traced call (model.api.RunResult): the overview of every head of
one attention and stage, the detail of a reported view, and one query's row. Pure (no Streamlit), shared by every
host of the canvas: the app (ui/views/canvas.py, which keeps them per traced call), the notebook widget
(viz.notebook) and the standalone HTML file (viz.standalone).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from model.core.attention import STAGES
from model.core.names import RecordName

from . import tiles
from .heatmap import STAGE_NAMES


def map_labels(result, name: str) -> tuple[list[str], list[str] | None, list[str] | None]:
    """(query tokens, key tokens or None when they are the queries, what each decoder row produces or None)."""
    n = RecordName.parse(name)
    rows = result.tokens_for(n.query_stack)
    cols = None if n.key_stack == n.query_stack else result.tokens_for(n.key_stack)
    produces = result.output_tokens if n.query_stack == "decoder" and result.output_tokens else None
    if produces is not None and len(produces) != len(rows):
        produces = None
    return rows, cols, produces


def map_stages(trace, name: str) -> list[str]:
    """The stages one attention of this trace can show (``adjusted`` only where a bias or softcap made one)."""
    adjusted = trace.shape(name).adjusted
    return [s for s in STAGES if s != "adjusted" or adjusted]


def map_title(name: str, stage: str) -> str:
    n = RecordName.parse(name)
    return f"{n.kind} attention · layer {n.layer} · {STAGE_NAMES.get(stage, stage)}"


def overview_part(result, name: str, stage: str, head: int = 0, **extra) -> dict:
    """Every head's overview tile of one attention and stage (uint8), its masks' blocks and the token labels;
    ``head``: the one a fresh page shows first; ``extra``: tiles.overview_payload's other fields (choice, scope,
    overview_id)."""
    trace = result.trace
    shape = trace.shape(name)
    pool = trace.overview_pool(name)
    if stage == "weights":
        held, lo, hi, cmap = trace.overview(name, "max"), 0.0, 1.0, "viridis"
    else:
        values = trace.stage_overview(name, stage)
        lo, hi, cmap = tiles.value_range(stage, values)
        held = tiles.quantize(values, lo, hi)
    reasons = trace.block_reasons(name)
    codes = tiles.codes_from_reasons(reasons, held.shape[1:]) if reasons else None
    rows, cols, produces = map_labels(result, name)
    return tiles.overview_payload(
        held, pool, shape.tq, shape.tk, rows, cols, reasons=codes, produces=produces, lo=lo, hi=hi, colormap=cmap,
        value_name=STAGE_NAMES.get(stage, stage), title=map_title(name, stage),
        heads=[str(h) for h in range(shape.n_heads)], head=int(np.clip(head, 0, shape.n_heads - 1)), **extra)


def detail_part(trace, name: str, head: int, stage: str, view: Mapping | None, overview_id: str) -> dict:
    """The cells of a reported view: exact up to tiles.DETAIL_SIDE cells per axis, else block maxima with where each
    maximum is; a view over tiles.DETAIL_MAX_CELLS cells gets the "skipped" part (the hover says the overview's)."""
    shape = trace.shape(name)
    window = tiles.detail_window(view, shape.tq, shape.tk)
    if tiles.detail_too_big(window):
        return tiles.skipped_detail(window, head=head, overview_id=overview_id)
    return tiles.trace_detail(trace, name, head, window, stage, overview_id=overview_id, view=view or window)


def row_part(trace, name: str, head: int, query: int, overview_id: str, top: int = 10) -> dict:
    """One query's weights over every key (float32, computed for that row only by a lazy trace), which keys it may
    attend (uint8 1/0) and its ``top`` strongest keys: the query strip."""
    shape = trace.shape(name)
    query = int(np.clip(query, 0, shape.tq - 1))
    row = trace.row(name, head, query, top=top)
    return {"part": "row", "overview": overview_id, "head": int(head), "query": query,
            "weights": np.ascontiguousarray(row.weights, dtype=np.float32),
            "allowed": np.ascontiguousarray(row.allowed, dtype=np.uint8),
            "top_keys": np.asarray(row.top_keys, dtype=np.uint32),
            "top_weights": np.asarray(row.top_weights, dtype=np.float32)}


__all__ = ["detail_part", "map_labels", "map_stages", "map_title", "overview_part", "row_part"]
