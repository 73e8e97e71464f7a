"""What every view shares: the chart, table and click helpers (the page's records are in ui/page_types.py)."""

from __future__ import annotations

import streamlit as st

import viz

from .. import state
from .registry import MAP

PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def table_downloads(table, what: str, stem: str, key: str, meta: dict | None = None, *,
                    json_key: str | None = None, columns=None) -> None:
    """"CSV of {what}" and "JSON of {what}" (with ``meta``) side by side, in ``columns`` or two new ones; a click
    leaves the page as it is (no rerun that could drop the file before the browser fetched it)."""
    a, b = columns if columns is not None else st.columns(2)
    a.download_button(f"CSV of {what}", viz.to_csv_bytes(table), f"{stem}.csv", "text/csv", key=key,
                      on_click="ignore")
    b.download_button(f"JSON of {what}", viz.to_json_bytes(table, meta), f"{stem}.json", "application/json",
                      key=json_key or f"{key}_json", on_click="ignore")


def chart(fig, key: str, **kwargs) -> None:
    st.plotly_chart(fig, key=key, config=PLOT_CONFIG, **kwargs)


ROW_PX = 35  # Streamlit's dataframe row (and header) height
TABLE_MAX_ROWS = 30  # longer tables scroll; up to this many rows every row is in view


def table_height(n_rows: int) -> int:
    """A dataframe height that shows every row up to TABLE_MAX_ROWS (the default height hides the 11th row)."""
    return ROW_PX * (min(n_rows, TABLE_MAX_ROWS) + 1) + 3


def four_decimals(table) -> dict:
    """Column settings that show every float column of ``table`` with 4 decimals (not 0.04 beside 0.0361)."""
    return {c: st.column_config.NumberColumn(format="%.4f") for c in table.columns
            if getattr(table[c].dtype, "kind", "") == "f"}


def open_cell(chart_key: str, cells: list, kind: str | None) -> None:
    """Callback of a click on a thumbnail or a heat-strip cell: open that layer and head on the map."""
    cell = viz.clicked_cell(st.session_state.get(chart_key), cells)
    if cell is None:
        return
    layer, head = cell
    state.set_value("layer", layer)
    state.set_value("head", head)
    if kind is not None:
        state.set_value("kind", kind)
    state.set_value("view", MAP.name)
