"""Building an atlas from the page (local use only: a public server never runs a visitor's corpus), with a progress
bar; the same build as ``python -m model.atlas``, written into the atlas folder."""

from __future__ import annotations

import os
import re

import streamlit as st

from model import CheckpointError, TokenizerError, settings
from model.atlas.build import BuildRequest, Progress, build, describe, prepare
from model.atlas.identity import AtlasError
from model.atlas.records import CorpusError

from .. import state
from ..models import model_choices, open_typed_path
from ..text import md, short
from .database import atlas_dir, atlas_policy

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ERRORS = (AtlasError, CorpusError, CheckpointError, TokenizerError, ValueError, OSError, MemoryError)


def building_allowed() -> bool:
    """Not on a public server, and not when $INSPECTOR_ATLAS_BUILD is 0."""
    return not atlas_policy().public and settings.raw("INSPECTOR_ATLAS_BUILD") != "0"


def progress_text(p: Progress) -> str:
    return (f"{p.done:,} of {p.total:,} records · {p.rate:.1f} examples/s · {p.skipped:,} skipped"
            + (f" · {p.cut:,} cut" if p.cut else ""))


def run_build(req: BuildRequest) -> None:
    bar = st.progress(0.0, text="Reading the corpus…")

    def on_hash(done: int, size: int) -> None:
        bar.progress(min(1.0, done / max(1, size)), text=f"Reading the corpus: {done / 2**20:,.0f} of "
                                                          f"{size / 2**20:,.0f} MiB")

    def on_progress(p: Progress) -> None:
        bar.progress(min(1.0, p.done / max(1, p.total)), text=progress_text(p))

    try:
        prepared = prepare(req, on_hash)
        row = build(req, on_progress, prepared)
    except ERRORS as e:
        bar.empty()
        st.error(f"Could not build the atlas: {md(short(e, 600))}")
        return
    st.session_state["atlas_built"] = f"Built {row['run_id']}: {describe(row)} in {row['seconds']:.1f} s."
    st.session_state["atlas_db_next"] = os.path.basename(req.db)  # picked before the sidebar draws, next run
    st.rerun()


def builder() -> None:
    if "atlas_built" in st.session_state:
        st.success(md(st.session_state.pop("atlas_built")))
    if not building_allowed():
        return
    with st.expander("Build an atlas here"):
        st.caption(f"Runs the model over a corpus file on this machine (as `python -m model.atlas` does) and writes "
                   f"{md(atlas_dir())}/NAME.duckdb; a build stopped halfway keeps every finished batch and "
                   "continues when started again. For a big corpus, use the command (it has a Ray engine).")
        choices = [c for c in model_choices() if c.reason is None]  # not the cached models that cannot open
        labels = [c.label for c in choices]
        a, b = st.columns(2)
        with a:
            label = state.selectbox("Model", labels, key="atlas_b_model", default=labels[0] if labels else None)
            typed = st.text_input("…or a model directory or hub id", key="atlas_b_model_typed", max_chars=1024)
            data = st.text_input("Corpus file (.txt, .jsonl, .csv, .tsv, .parquet)", key="atlas_b_data",
                                 max_chars=1024)
            field = st.text_input("Field (.jsonl, .csv, .parquet; empty: text)", key="atlas_b_field", max_chars=200)
        with b:
            name = st.text_input("Database name", key="atlas_b_name", value="atlas", max_chars=64)
            batch = st.number_input("Batch size", 1, 256, 8, key="atlas_b_batch")
            max_tokens = st.number_input("Max tokens (0: the model's limit)", 0, 1_000_000, 0, key="atlas_b_max")
            qk = st.number_input("Examples with q / k vectors", 0, 10_000, 100, key="atlas_b_qk")
        if not st.button("Build", key="atlas_b_go", type="primary"):
            return
        if not NAME.fullmatch(name or ""):
            st.error("A database name is letters, digits, '.', '_' or '-' (at most 64, no leading dot).")
            return
        if not data.strip():
            st.error("Type the corpus file's path.")
            return
        try:
            model = open_typed_path(typed) if typed.strip() else dict(
                zip(labels, (c.path for c in choices), strict=True)).get(label)
        except CheckpointError as e:
            st.error(f"Could not open that model directory: {md(short(e))}")
            return
        if model is None:
            st.error("Pick a model.")
            return
        folder = atlas_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            st.error(f"Cannot write into {md(folder)}: {md(e.strerror)}")
            return
        db = folder / (name if name.endswith(".duckdb") else f"{name}.duckdb")
        run_build(BuildRequest(model=model, data=data.strip(), db=str(db), batch_size=int(batch),
                               field=field.strip() or None, max_tokens=int(max_tokens) or None,
                               qk_examples=int(qk)))


__all__ = ["builder", "building_allowed", "progress_text", "run_build"]
