"""Pure plotting and data shaping for the attention inspector: arrays, records and tables in, Plotly figures,
HTML or DataFrames out (no Streamlit here)."""

from .analysis import difference_map, head_strip, matrix_map, position_effects, token_strip
from .decoding import alternatives_figure, cross_row_figure, cross_rows, top_alternatives
from .grids import clicked_cell, grid_is_readable, mosaic_png, overview_mosaic, thumbnail_grid
from .headview import HeadViewLines, head_view_html, select_lines
from .heatmap import (
    COMPACT_ABOVE,
    GRID_MAX_TOKENS,
    MASK_COLOUR,
    STAGE_NAMES,
    attention_heatmap,
    decode_quantised,
    esc,
    figure_matrices,
    mask_reasons,
    matrix_heatmap,
    payload,
    stage_colours,
    token_labels,
)
from .query import query_figures, query_strip, query_table
from .stages import Panel, head_reasons, shape_text, stage_panels
from .tables import (
    estimated_csv_bytes,
    neutralise_formulas,
    selection_table,
    to_csv_bytes,
    to_json_bytes,
    window_table,
)
from .training import head_across_steps, score_lines

__all__ = [
    "COMPACT_ABOVE", "GRID_MAX_TOKENS", "MASK_COLOUR", "STAGE_NAMES", "HeadViewLines",
    "Panel", "alternatives_figure", "attention_heatmap", "clicked_cell", "cross_row_figure", "cross_rows",
    "decode_quantised", "difference_map", "esc", "estimated_csv_bytes", "figure_matrices", "grid_is_readable",
    "head_across_steps", "head_reasons", "head_strip", "head_view_html", "mask_reasons",
    "matrix_heatmap", "matrix_map", "mosaic_png", "neutralise_formulas", "overview_mosaic", "payload",
    "position_effects", "query_figures", "query_strip", "query_table", "score_lines", "select_lines", "selection_table",
    "shape_text", "stage_colours", "stage_panels", "to_csv_bytes", "to_json_bytes", "token_labels", "token_strip",
    "thumbnail_grid", "top_alternatives", "window_table",
]
