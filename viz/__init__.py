"""Pure plotting and data shaping for the attention inspector: arrays and records in, Plotly figures or
DataFrames out (no Streamlit here)."""

from .decoding import alternatives_figure, cross_row_figure, cross_rows, top_alternatives
from .grids import clicked_cell, grid_is_readable, thumbnail_grid
from .heatmap import (
    COMPACT_ABOVE,
    GRID_MAX_TOKENS,
    attention_heatmap,
    decode_quantised,
    figure_matrices,
    mask_reasons,
    matrix_heatmap,
    payload,
    stage_colours,
    token_labels,
)
from .query import query_figures, query_table
from .stages import KIND_LABELS, Panel, head_masks, record_tokens, shape_text, stage_panels
from .tables import selection_table, to_csv_bytes, to_json_bytes

__all__ = [
    "COMPACT_ABOVE", "GRID_MAX_TOKENS", "KIND_LABELS", "Panel", "alternatives_figure", "attention_heatmap",
    "clicked_cell", "cross_row_figure", "cross_rows", "decode_quantised", "figure_matrices", "grid_is_readable",
    "head_masks", "mask_reasons", "matrix_heatmap", "payload", "query_figures", "query_table", "record_tokens",
    "selection_table", "shape_text", "stage_colours", "stage_panels", "thumbnail_grid", "to_csv_bytes",
    "to_json_bytes", "token_labels", "top_alternatives",
]
