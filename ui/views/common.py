"""What every view shares: the selection, the context a view draws from, and the chart and click helpers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import streamlit as st

import viz
from model import RecordName

from .. import state
from ..sidebar import Inputs, ModelPick
from ..tracing import Traced

PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
# what every chart's camera button saves, chosen in the Export view (plotly.js's camera takes one format per chart)
FIGURE_FORMATS = {"PNG at 2×": {"format": "png", "scale": 2}, "SVG (vector)": {"format": "svg"}}
VIEWS = ("Attention map", "Head grid", "Model overview", "Head view", "Step by step", "One query", "Decoding",
         "Statistics", "Rollout", "Needle", "Ablation", "Knockout", "Logit lens", "Patching", "Compare", "Training",
         "Export")


def table_downloads(table, what: str, stem: str, key: str, meta: dict | None = None, *,
                    json_key: str | None = None, columns=None) -> None:
    """"CSV of {what}" and "JSON of {what}" (with ``meta``) side by side, in ``columns`` or two new ones; a click
    leaves the page as it is (no rerun that could drop the file before the browser fetched it)."""
    a, b = columns if columns is not None else st.columns(2)
    a.download_button(f"CSV of {what}", viz.to_csv_bytes(table), f"{stem}.csv", "text/csv", key=key,
                      on_click="ignore")
    b.download_button(f"JSON of {what}", viz.to_json_bytes(table, meta), f"{stem}.json", "application/json",
                      key=json_key or f"{key}_json", on_click="ignore")


def plot_config(name: str = "chart") -> dict:
    """Plotly's config: the camera saves ``name``.png at 2x, or ``name``.svg once SVG is chosen in the Export view."""
    chosen = FIGURE_FORMATS.get(st.session_state.get(state.KEPT + "figure_format"), PLOT_CONFIG["toImageButtonOptions"])
    return {**PLOT_CONFIG, "toImageButtonOptions": {**chosen, "filename": name}}


def chart(fig, key: str, **kwargs) -> None:
    st.plotly_chart(fig, key=key, config=plot_config(key), **kwargs)


ROW_PX = 35  # Streamlit's dataframe row (and header) height
TABLE_MAX_ROWS = 30  # longer tables scroll; up to this many rows every row is in view


def table_height(n_rows: int) -> int:
    """A dataframe height that shows every row up to TABLE_MAX_ROWS (the default height hides the 11th row)."""
    return ROW_PX * (min(n_rows, TABLE_MAX_ROWS) + 1) + 3


def four_decimals(table) -> dict:
    """Column settings that show every float column of ``table`` with 4 decimals (not 0.04 beside 0.0361)."""
    return {c: st.column_config.NumberColumn(format="%.4f") for c in table.columns
            if getattr(table[c].dtype, "kind", "") == "f"}


@dataclass(frozen=True)
class Selection:
    kind: str  # the attention kind: "cross", "encoder self", "decoder masked self"
    layer: int
    head: int  # -1 = all heads
    stage: str
    view: str

    @property
    def record(self) -> RecordName:
        return RecordName.of_kind(self.kind, self.layer)

    @property
    def name(self) -> str:
        return str(self.record)

    @property
    def stack(self) -> str:
        return self.record.stack

    @property
    def sublayer(self) -> str:
        return self.record.sublayer


@dataclass(frozen=True)
class Context:
    """Everything a view needs: the model, the traced call, the selection, and token labels."""

    pick: ModelPick
    traced: Traced
    inputs: Inputs
    sel: Selection
    layers: list[int]

    @property
    def pipe(self):
        return self.pick.pipe

    @property
    def info(self):
        return self.pick.pipe.info

    @property
    def result(self):
        return self.traced.result

    @cached_property
    def rec(self):
        return self.traced.record(self.sel.name)

    def tokens(self, stack: str) -> list[str]:
        return self.result.tokens_for(stack)

    def labels(self, stack: str, produces: bool = True) -> list[str]:
        """Axis labels of one stack; decoder rows also say what they produce ("0·[BOS] → 2")."""
        toks = self.tokens(stack)
        if stack == "decoder" and produces and self.result.output_tokens:
            return viz.token_labels(toks, self.result.output_tokens)
        return viz.token_labels(toks)

    def axes_for(self, name: str) -> tuple[list[str], list[str], list[str], list[str]]:
        """(query tokens, key tokens, query labels, key labels) of one record."""
        n = RecordName.parse(name)
        return (self.tokens(n.query_stack), self.tokens(n.key_stack), self.labels(n.query_stack),
                self.labels(n.key_stack, produces=False))

    @property
    def record_names(self) -> list[str]:
        return list(self.info.record_names)

    def names_of_kind(self) -> list[str]:
        return [str(RecordName.of_kind(self.sel.kind, i)) for i in self.layers]

    def reasons(self, rec, head: int) -> dict:
        return viz.head_reasons(rec, max(head, 0))


def open_cell(chart_key: str, cells: list, kind: str | None, view: str = "Attention map") -> None:
    """Callback of a click on a thumbnail or a heat-strip cell: open that layer and head."""
    cell = viz.clicked_cell(st.session_state.get(chart_key), cells)
    if cell is None:
        return
    layer, head = cell
    state.set_value("layer", layer)
    state.set_value("head", head)
    if kind is not None:
        state.set_value("kind", kind)
    state.set_value("view", view)
