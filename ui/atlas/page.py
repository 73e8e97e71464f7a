"""The Atlas page: pick a database and a run in the sidebar; then a statistic per head over the corpus (strip), one
head's distribution, its top and bottom examples (links into the inspector), filters on the examples, and the
head's queries and keys in one projection. The numbers come from model.atlas.queries, the figures from viz.atlas."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from model import hub
from model.analysis.projection import qk_projection
from model.atlas.identity import AtlasError
from model.atlas.queries import FILTER_COLUMNS, HOW, OPERATORS, FilterError, make_filter
from model.atlas.store import shown_status
from model.core.names import RecordName, story_order
from model.core.rowstats import HUMAN_NAMES, STAT_DEFINITIONS
from viz import atlas as viz_atlas
from viz.grids import clicked_cell

from .. import state
from ..models import model_name
from ..text import md, short
from ..views.registry import MAP
from .builder import builder
from .database import ask, atlas_dir, offered, open_typed, reading

PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
N_FILTERS = 3
NO_FILTER = "—"
TOP_K = 10
MAX_BINS = 40
TYPE_PATH = "(type a path below)"


# ---- sidebar -----------------------------------------------------------------------------------------------------

def pick_database() -> Path | None:
    st.header("Atlas")
    found = offered()
    labels = [p.name for p in found] + [TYPE_PATH]
    if "atlas_db_next" in st.session_state:  # a database just built on this page
        state.set_value("atlas_db", st.session_state.pop("atlas_db_next"))
        st.session_state["atlas_typed"] = ""
    choice = state.selectbox("Database", labels, key="atlas_db", default=labels[0],
                             help=f"The atlas files in {atlas_dir()} ($INSPECTOR_ATLASES), or one typed below.")
    typed = st.text_input("…or its path", key="atlas_typed", max_chars=1024, placeholder="atlas.duckdb",
                          help="A .duckdb file written by python -m model.atlas. Opened read-only.")
    if typed and typed.strip():
        try:
            return open_typed(typed)
        except AtlasError as e:
            st.error(md(short(e)))
            return None
    if choice == TYPE_PATH:
        return None
    return dict(zip(labels, found, strict=False)).get(choice)


def model_label(model_path: str) -> str:
    """A run's model as the inspector names it: a hub id as it is, a directory by ``model_name`` (a snapshot of the
    Hugging Face cache by its hub id)."""
    return model_path if not Path(model_path).is_absolute() and hub.looks_like_hub_id(model_path) else \
        model_name(model_path)


def status_of(row) -> str:
    """The run's status as shown: a "running" run whose builder is gone is "stopped" (resumable)."""
    return shown_status(str(row["status"]), row.get("builder"), row.get("updated"))


def run_label(row) -> str:
    model = model_label(str(row["model_path"]))
    corpus = Path(str(row["corpus_path"])).name
    return f"{model} on {corpus} · {int(row['n_examples']):,} examples · {status_of(row)} · {row['run_id'][:8]}"


def pick_run(path: Path):
    runs = ask(path, "runs")
    if runs.empty:
        st.info("This database holds no run yet.")
        return None
    labels = [run_label(r) for _, r in runs.iterrows()]
    picked = state.selectbox("Run", labels, key="atlas_run", default=labels[0],
                             help="One model on one corpus with one set of options; newest first.")
    return runs.iloc[labels.index(picked)]


# ---- the run -----------------------------------------------------------------------------------------------------

def run_header(run) -> None:
    skipped = ", ".join(f"{k}: {v:,}" for k, v in sorted(run["skipped"].items(), key=lambda kv: -kv[1]))
    cut = f", {int(run['n_cut']):,} cut to the token limit" if int(run["n_cut"]) else ""
    st.caption(f"**{md(model_label(str(run['model_path'])))}** ({md(run['model_family'])}, {md(run['model_arch'])}) "
               f"on **{md(Path(str(run['corpus_path'])).name)}** ({md(run['corpus_format'])}"
               + (f", field {md(run['field'])}" if run["field"] else "") + f"): {int(run['n_examples']):,} "
               f"examples{cut}, {int(run['n_skipped']):,} skipped" + (f" ({md(skipped)})" if skipped else "")
               + f" · run {md(run['run_id'])}")
    total = max(1, int(run["n_records"]))
    done = int(run["n_examples"]) + int(run["n_skipped"])
    status = status_of(run)
    if status == "stopped":
        st.progress(min(1.0, done / total), text=f"stopped, resumable: {done:,} of {total:,} records stored; its build "
                    "is no longer running (killed, or its machine stopped) although the file says “running”. Run the "
                    "same command again to continue.")
    elif status != "finished":
        st.progress(min(1.0, done / total), text=f"{status}: {done:,} of {total:,} records stored. "
                    + md(short(run["message"] or "", 200)) + " Run the same command again to continue.")


def kinds_of(heads: pd.DataFrame) -> list[str]:
    return story_order(dict.fromkeys(heads["kind"]))


def controls(path: Path, run_id: str, heads: pd.DataFrame) -> tuple[str, str, str, float] | None:
    kinds = kinds_of(heads)
    c1, c2, c3 = st.columns([3, 2, 3])
    with c1:
        kind = state.radio("Attention", kinds, key="atlas_kind", default=kinds[0], horizontal=True)
    stats = ask(path, "present_stats", run_id, kind)
    if not stats:
        st.info(f"No statistic of {kind} attention has a value in this run.")
        return None
    with c2:
        default = "prev_token" if "prev_token" in stats else stats[0]
        stat = state.selectbox("Statistic", stats, key="atlas_stat", default=default,
                               format_func=lambda s: HUMAN_NAMES.get(s, s), help="; ".join(
                                   f"{s}: {STAT_DEFINITIONS[s]}" for s in stats))
    with c3:
        how = state.segmented_control("Over the examples", list(HOW), key="atlas_how", default="mean",
                                      required=True) or "mean"
    q = 0.5
    if how == "percentile":
        with c3:
            q = st.slider("Percentile", 1, 99, 90, key="atlas_q") / 100
    return kind, stat, how, q


def filters_form() -> list:
    """Up to N_FILTERS conditions on the examples, each built from (column, operator, value) widgets; a bad value is
    a warning and the condition is left out."""
    out = []
    with st.expander("Filter the examples", expanded=any(
            st.session_state.get(f"atlas_fcol{i}", NO_FILTER) != NO_FILTER for i in range(N_FILTERS))):
        st.caption("Each condition narrows every chart and table below (computed by DuckDB; values are bound as "
                   "parameters, never spliced into SQL).")
        for i in range(N_FILTERS):
            a, b, c = st.columns([2, 2, 3])
            with a:
                col = state.selectbox(f"Column {i + 1}", [NO_FILTER, *FILTER_COLUMNS], key=f"atlas_fcol{i}",
                                      default=NO_FILTER)
            if col == NO_FILTER:
                continue
            ops = OPERATORS[FILTER_COLUMNS[col]]
            with b:
                op = state.selectbox(f"Operator {i + 1}", list(ops), key=f"atlas_fop{i}", default=ops[0])
            with c:
                value = st.text_input(f"Value {i + 1}", key=f"atlas_fval{i}", max_chars=1000)
            if not value:
                continue
            try:
                out.append(make_filter(col, op, value))
            except FilterError as e:
                st.warning(f"Condition {i + 1} left out: {md(short(e))}")
    return out


def select_head(layer_key: str, head_key: str, cells: list, chart_key: str) -> None:
    """Callback of a click on the strip: that layer and head."""
    cell = clicked_cell(st.session_state.get(chart_key), cells)
    if cell is not None:
        state.set_value(layer_key, cell[0])
        state.set_value(head_key, cell[1])


def strip(path: Path, run_id: str, kind: str, stat: str, how: str, q: float, filters: list,
          selected: tuple[int, int] | None) -> pd.DataFrame:
    table = ask(path, "head_summary", run_id, stat, how, q, filters=filters, kind=kind)
    label = f"{how} of {stat}" if how != "percentile" else f"{round(q * 100)}th percentile of {stat}"
    lo, hi = viz_atlas.stat_range(stat)
    fig = viz_atlas.summary_strip(table, label, title=f"{kind} attention: {label} per head over the corpus "
                                  "(click a cell for that head)", definition=STAT_DEFINITIONS[stat], zmin=lo,
                                  zmax=hi, selected=selected)
    cells = [tuple(c) for c in fig.layout.meta["cells"]]
    st.plotly_chart(fig, key="atlas_strip", config=PLOT_CONFIG, theme=None, selection_mode="points",
                    on_select=partial(select_head, "atlas_layer", "atlas_head", cells, "atlas_strip"))
    return table


def head_picker(heads: pd.DataFrame, kind: str) -> tuple[str, int, int]:
    mine = heads[heads["kind"] == kind]
    layers = sorted(int(x) for x in mine["layer"].unique())
    head_ids = sorted(int(x) for x in mine["head"].unique())
    a, b = st.columns(2)
    with a:
        layer = state.selectbox("Layer", layers, key="atlas_layer", default=layers[-1])
    with b:
        head = state.selectbox("Head", head_ids, key="atlas_head", default=head_ids[0])
    return str(RecordName.of_kind(kind, layer)), layer, head


def distribution(path: Path, run_id: str, name: str, head: int, stat: str, summary: pd.DataFrame,
                 filters: list, how: str = "mean", q: float = 0.5) -> None:
    row = summary[(summary["name"] == name) & (summary["head"] == head)]
    n = int(row["n"].iloc[0]) if len(row) else 0
    bins = int(min(MAX_BINS, max(5, round(2 * n ** 0.5))))  # about 2 sqrt(n): 8 bins for 15 examples, 40 for 400
    hist = ask(path, "distribution", run_id, name, head, stat, filters=filters, bins=bins)
    if hist.empty:
        st.info(f"No example has a value of {stat} for this head (with these filters).")
        return
    shown = f"{q:.0%} percentile" if how == "percentile" else how  # what the per-head strip above shows
    marks = [(f"{shown} over the corpus (the strip)", float(row["value"].iloc[0]))] \
        if len(row) and pd.notna(row["value"].iloc[0]) else []
    fig = viz_atlas.distribution_figure(hist, HUMAN_NAMES.get(stat, stat), marks=marks,
                                        title=f"{name}, head {head}: {stat} over {int(hist['count'].sum()):,} examples")
    st.plotly_chart(fig, key="atlas_hist", config=PLOT_CONFIG, theme=None)


def extremes(path: Path, run, name: str, layer: int, head: int, kind: str, stat: str, filters: list) -> None:
    config = {"inspector": st.column_config.LinkColumn("inspector", display_text="open at this head",
                                                       help="Opens the example in the inspector at this head"),
              stat: st.column_config.NumberColumn(stat, format="%.4f", help=STAT_DEFINITIONS[stat]),
              "example": st.column_config.NumberColumn("example", help="Its index in the corpus: the 0-based line "
                                                       "(.txt, .jsonl) or data row (.csv, .parquet)")}
    top, bottom = st.tabs([f"Highest {stat}", f"Lowest {stat}"])
    for tab, largest, key in ((top, True, "atlas_top"), (bottom, False, "atlas_bottom")):
        rows = ask(path, "extremes", run["run_id"], name, head, stat, filters=filters, k=TOP_K, largest=largest)
        table = viz_atlas.extremes_table(rows, model=str(run["model_path"]), kind=kind, layer=layer, head=head,
                                         view=MAP.slug, value_name=stat)
        long = (table["note"] != "").any()
        with tab:
            st.dataframe(table if long else table.drop(columns="note"), hide_index=True, column_config=config,
                         key=key, width="stretch")
            if long:
                st.caption("A text over the link's length limit cannot travel in a link: copy it from the table "
                           "into the inspector.")


def open_point(chart_key: str) -> None:
    point = viz_atlas.clicked_point(st.session_state.get(chart_key))
    if point is not None:
        st.session_state["atlas_point"] = point


def projection(path: Path, run, name: str, layer: int, head: int, kind: str, filters: list) -> None:
    st.subheader("Queries and keys")
    have = ask(path, "qk_heads", run["run_id"])
    if not ((have["name"] == name) & (have["head"] == head)).any():
        st.info("No q / k vectors were stored for this head: build the atlas with `--qk-examples N` (the default "
                "keeps 100 examples).")
        return
    points = ask(path, "qk_points", run["run_id"], name, head, filters=filters)
    q_rows = (points.meta["role"] == "q").to_numpy()
    if not q_rows.any() or q_rows.all():
        st.info("No sampled query or key vectors pass the filters.")
        return
    proj = qk_projection(points.vectors[q_rows], points.vectors[~q_rows])
    meta = pd.concat([points.meta[q_rows], points.meta[~q_rows]], ignore_index=True)
    colour = state.radio("Colour by", list(viz_atlas.COLOUR_BY), key="atlas_colour", default="query / key",
                         horizontal=True)
    fig = viz_atlas.qk_scatter(proj.points, meta, colour_by=colour, explained=proj.explained,
                               title=f"{name}, head {head}: {int(q_rows.sum()):,} queries and {int((~q_rows).sum()):,} "
                                     f"keys of {meta['example_id'].nunique():,} examples")
    st.plotly_chart(fig, key="atlas_qk", config=PLOT_CONFIG, theme=None, selection_mode="points",
                    on_select=partial(open_point, "atlas_qk"))
    st.caption("The first two principal components of the sampled q and k vectors together; click a point to see "
               "its example. Keys are moved onto the queries' centroid and both rescaled to the same mean length: "
               "neither changes any attention weight (q·(k + c) shifts every key of a query alike; (s q)·(k / s) = "
               "q·k).")
    point = st.session_state.get("atlas_point")
    if point is not None:
        ex = ask(path, "example", run["run_id"], point[0])
        if ex is not None:
            link = viz_atlas.inspector_link(str(run["model_path"]), ex["text"], kind, layer, head, MAP.slug)
            st.markdown(f"**Example {point[0]}** ({'query' if point[2] == 'q' else 'key'} at position {point[1]}): "
                        f"{md(short(ex['text'], 400))}" + (f" · [open in the inspector at this head]({link})"
                                                           if link else " · too long for a link"))


def atlas_view(path: Path, run) -> None:
    """Everything the page shows of one run (read through one connection, see database.reading)."""
    run_header(run)
    if int(run["n_examples"]) == 0:
        st.info("No example of this run is stored yet.")
        return
    heads = ask(path, "run_heads", run["run_id"])
    picked = controls(path, run["run_id"], heads)
    if picked is None:
        return
    kind, stat, how, q = picked
    filters = filters_form()
    if filters:
        n = ask(path, "count_examples", run["run_id"], filters=filters)
        st.caption(f"{n:,} of {int(run['n_examples']):,} examples pass: "
                   + md("; ".join(f.describe() for f in filters)))
    selected = (st.session_state.get("atlas_layer"), st.session_state.get("atlas_head"))
    summary = strip(path, run["run_id"], kind, stat, how, q, filters, selected)
    name, layer, head = head_picker(heads, kind)
    distribution(path, run["run_id"], name, head, stat, summary, filters, how, q)
    extremes(path, run, name, layer, head, kind, stat, filters)
    projection(path, run, name, layer, head, kind, filters)


def atlas_page() -> None:
    st.title("Corpus atlas")
    with st.sidebar:
        path = pick_database()
    if path is None:
        st.info("Pick an atlas database in the sidebar, or build one: `python -m model.atlas --model DIR --data "
                "FILE --db FILE.duckdb`.")
    else:
        try:
            with reading(path):
                with st.sidebar:
                    run = pick_run(path)
                if run is not None:
                    atlas_view(path, run)
        except AtlasError as e:  # a question refused by DuckDB, stopped at its deadline, or an unreadable file
            st.error(f"Could not read this atlas: {md(short(e, 500))}")
    builder()  # after the run's connection is closed: a build may write the file just read


__all__ = ["atlas_page"]
