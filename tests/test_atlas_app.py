"""The Atlas page through Streamlit's AppTest: opening a database (listed or typed, the path policy), the strip, one
head's distribution, the top and bottom examples with their inspector links, filters (hostile values too), the
queries-and-keys projection, an interrupted run's progress, a database another process holds, building from the
page."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import types
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from model.atlas import queries as Q
from model.atlas.build import BuildRequest, build
from model.atlas.store import open_read_only

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "app_pages" / "atlas.py")
DATES = ROOT / "checkpoints" / "dates"
INDUCTION = ROOT / "checkpoints" / "induction"
TEXTS = ["Saturday, November 21, 2026", "21.11.2026", "Nov 3, 1999", "the 5th of May 2001", "2026/11/21",
         "Tuesday, 1 January 1901", "14th of July 1989", "3.4.2012", "", "1st of March 2000, a Wednesday",
         "December 25, 1999", "2000-01-01", "30 June 1950"]
WORDS = "cat red box tree sun moon owl dog".split()


@pytest.fixture(scope="module")
def atlases(tmp_path_factory):
    """A folder with a dates atlas (3 kinds, 12 examples, one skip) and an induction atlas (one kind)."""
    folder = tmp_path_factory.mktemp("atlases")
    data = folder.parent / "dates.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    dates = build(BuildRequest(model=str(DATES), data=str(data), db=str(folder / "dates.duckdb"), batch_size=5,
                               device="cpu"))
    words = folder.parent / "words.txt"
    words.write_text("\n".join(" ".join(WORDS[i % 3:i % 3 + 4] * 2) for i in range(6)) + "\n")
    ind = build(BuildRequest(model=str(INDUCTION), data=str(words), db=str(folder / "words.duckdb"), batch_size=4,
                             device="cpu"))
    return {"folder": folder, "dates": dates, "words": ind, "dates_txt": data}


@pytest.fixture(autouse=True)
def env(monkeypatch, atlases):
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    monkeypatch.setenv("INSPECTOR_ATLASES", str(atlases["folder"]))
    for name in ("INSPECTOR_PUBLIC", "INSPECTOR_ALLOWED_ROOTS", "INSPECTOR_ATLAS_BUILD"):
        monkeypatch.delenv(name, raising=False)


def page(**state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def charts(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def array_of(value) -> np.ndarray:
    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return a.reshape([int(n) for n in str(shape).split(",")]) if shape else a
    return np.asarray(value, dtype=float)


def text_of(at) -> str:
    parts = list(at.markdown) + list(at.caption) + list(at.info) + list(at.warning) + list(at.error) + \
        list(at.success)
    return " ".join(m.value for m in parts).replace("\u2068", "").replace("\u2069", "").replace("\\", "")


def ask(db: Path, fn, *args, **kwargs):
    con = open_read_only(db)
    try:
        return fn(con, *args, **kwargs)
    finally:
        con.close()


def test_the_page_opens_the_first_database_and_its_strip_is_the_corpus_mean(atlases):
    at = page()
    clean(at)
    assert at.selectbox(key="atlas_db").value == "dates.duckdb"
    text = text_of(at)
    assert "12 examples" in text and "1 skipped" in text and "empty" in text
    assert at.radio(key="atlas_kind").value == "cross"
    stat = at.selectbox(key="atlas_stat").value
    db = atlases["folder"] / "dates.duckdb"
    ref = ask(db, Q.head_summary, atlases["dates"]["run_id"], stat, "mean", kind="cross")
    strip = charts(at)[0]
    z = array_of(strip["data"][0]["z"])
    expected = ref.pivot(index="layer", columns="head", values="value").to_numpy()
    assert np.allclose(z, expected)
    assert strip["layout"]["meta"]["cells"] == [[layer, h] for layer in (0, 1) for h in range(4)]


@pytest.mark.parametrize("how, q", [("median", None), ("percentile", 25)])
def test_median_and_percentile_strips(atlases, how, q):
    state = {"atlas_how": how, "atlas_kind": "encoder self", "atlas_stat": "entropy"}
    if q is not None:
        state["atlas_q"] = q
    at = page(**state)
    clean(at)
    ref = ask(atlases["folder"] / "dates.duckdb", Q.head_summary, atlases["dates"]["run_id"], "entropy", how,
              (q or 50) / 100, kind="encoder self")
    z = array_of(charts(at)[0]["data"][0]["z"])
    assert np.allclose(z, ref.pivot(index="layer", columns="head", values="value").to_numpy())


def test_one_heads_distribution_and_its_top_and_bottom_examples_with_links(atlases):
    at = page(atlas_kind="cross", atlas_stat="max_weight", atlas_layer=1, atlas_head=2)
    clean(at)
    db = atlases["folder"] / "dates.duckdb"
    run = atlases["dates"]
    hist = charts(at)[1]
    counts = array_of(hist["data"][0]["y"])
    ref = ask(db, Q.distribution, run["run_id"], "decoder.1.cross_attn", 2, "max_weight", bins=7)
    assert counts.tolist() == ref["count"].tolist() and counts.sum() == 12  # 2 sqrt(12) bins
    top, bottom = at.dataframe[0].value, at.dataframe[1].value
    for table, largest in ((top, True), (bottom, False)):
        ref = ask(db, Q.extremes, run["run_id"], "decoder.1.cross_attn", 2, "max_weight", k=10, largest=largest)
        assert table["example"].tolist() == ref["example_id"].tolist()
        assert np.allclose(table["max_weight"], ref["value"])
        for eid, link in zip(table["example"], table["inspector"], strict=True):
            params = {k: v[0] for k, v in parse_qs(urlsplit(link).query, keep_blank_values=True).items()}
            example = ask(db, Q.example, run["run_id"], int(eid))
            assert params == {"model": run["model_path"], "text": example["text"], "kind": "cross", "layer": "1",
                              "head": "2", "view": "attention-map"}
    assert top["max_weight"].is_monotonic_decreasing and bottom["max_weight"].is_monotonic_increasing


def test_another_head_updates_the_tables(atlases):
    db = atlases["folder"] / "dates.duckdb"
    for layer, head in ((0, 0), (1, 3)):
        at = page(atlas_kind="encoder self", atlas_stat="prev_token", atlas_layer=layer, atlas_head=head)
        clean(at)
        ref = ask(db, Q.extremes, atlases["dates"]["run_id"], f"encoder.{layer}.self_attn", head, "prev_token")
        assert at.dataframe[0].value["example"].tolist() == ref["example_id"].tolist()
        assert f"layer={layer}&head={head}" in at.dataframe[0].value["inspector"][0]


def test_a_click_on_the_strip_selects_that_head(monkeypatch):
    import ui.atlas.page as page_module
    import ui.state as state_module

    fake = types.SimpleNamespace(session_state={"atlas_strip": {"selection": {"points": [{"customdata": [5]}]}}})
    monkeypatch.setattr(page_module, "st", fake)
    monkeypatch.setattr(state_module, "st", fake)
    cells = [(layer, h) for layer in (0, 1) for h in range(4)]
    page_module.select_head("atlas_layer", "atlas_head", cells, "atlas_strip")
    assert (fake.session_state["atlas_layer"], fake.session_state["atlas_head"]) == (1, 1)


def test_filters_narrow_every_chart_and_table(atlases):
    at = page(atlas_kind="encoder self", atlas_stat="entropy", atlas_fcol0="n_tokens", atlas_fop0=">",
              atlas_fval0="10", atlas_fcol1="text", atlas_fop1="does not contain", atlas_fval1="1999")
    clean(at)
    db = atlases["folder"] / "dates.duckdb"
    run = atlases["dates"]["run_id"]
    filters = [Q.make_filter("n_tokens", ">", "10"), Q.make_filter("text", "does not contain", "1999")]
    n = ask(db, Q.count_examples, run, filters)
    assert 0 < n < 12 and f"{n} of 12 examples pass" in text_of(at)
    ref = ask(db, Q.head_summary, run, "entropy", "mean", 0.5, filters, kind="encoder self")
    z = array_of(charts(at)[0]["data"][0]["z"])
    assert np.allclose(z, ref.pivot(index="layer", columns="head", values="value").to_numpy())
    top = at.dataframe[0].value
    assert len(top) == min(10, n) and (top["tokens"] > 10).all() and not top["text"].str.contains("1999").any()
    assert array_of(charts(at)[1]["data"][0]["y"]).sum() == n


@pytest.mark.parametrize("column, op, value, warned", [
    ("n_tokens", ">", "abc", "not a number"), ("n_tokens", "≤", "1e999", "out of range"),
    ("text", "contains", "'; DROP TABLE examples; --", None), ("text", "starts with", "%' OR 1=1 --", None),
    ("cut", "is", "maybe", "true or false"), ("example_id", "=", "0x10", "not a number"),
])
def test_hostile_filter_values_end_in_a_warning_or_no_match(atlases, column, op, value, warned):
    at = page(atlas_fcol0=column, atlas_fop0=op, atlas_fval0=value)
    clean(at)
    text = text_of(at)
    if warned:
        assert "Condition 1 left out" in text and warned in text
        assert "12 of 12" not in text and len(at.dataframe) == 2  # the filter left out, the page intact
    else:
        assert "0 of 12 examples pass" in text
    db = atlases["folder"] / "dates.duckdb"
    assert ask(db, lambda con: con.execute("SELECT count(*) FROM examples").fetchone()[0]) == 12


def test_queries_and_keys_projection_and_a_clicked_point(atlases):
    at = page(atlas_kind="cross", atlas_layer=1, atlas_head=0, atlas_colour="position")
    clean(at)
    qk = charts(at)[2]
    pts = sum(len(array_of(t["x"])) for t in qk["data"])
    db = atlases["folder"] / "dates.duckdb"
    ref = ask(db, Q.qk_points, atlases["dates"]["run_id"], "decoder.1.cross_attn", 0)
    assert pts == len(ref.meta) > 0 and "PC1" in qk["layout"]["xaxis"]["title"]["text"]
    eid = int(ref.meta["example_id"].iloc[0])
    at.session_state["atlas_point"] = (eid, 1, "k")
    at.run()
    clean(at)
    example = ask(db, Q.example, atlases["dates"]["run_id"], eid)
    link = [m.value for m in at.markdown if f"Example {eid}" in m.value]
    assert link and "open in the inspector at this head" in link[0] and "kind=cross&layer=1&head=0" in link[0]
    assert example["text"].split()[0] in link[0].replace("\\", "")


def test_a_decoder_only_atlas_has_one_kind_and_its_statistics(atlases):
    at = page(atlas_db="words.duckdb")
    clean(at)
    assert at.radio(key="atlas_kind").options == ["decoder masked self"]
    assert at.selectbox(key="atlas_stat").value == "prev_token"
    assert "induction score" in at.selectbox(key="atlas_stat").options  # the words repeat


def test_an_interrupted_run_shows_its_progress(tmp_path, monkeypatch, atlases):
    folder = tmp_path / "more"
    folder.mkdir()
    db = folder / "half.duckdb"
    calls = []

    def stop(p):
        calls.append(p)
        if len(calls) == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        build(BuildRequest(model=str(DATES), data=str(atlases["dates_txt"]), db=str(db), batch_size=4,
                           device="cpu"), stop)
    monkeypatch.setenv("INSPECTOR_ATLASES", str(folder))
    at = page()
    clean(at)
    bar = at.get("progress")
    assert len(bar) == 1
    assert abs(bar[0].proto.value - round(100 * 4 / 13)) <= 1  # 4 of 13 records
    assert "interrupted" in bar[0].proto.text and "Run the same command again" in bar[0].proto.text


def hostile_atlas(atlases, folder: Path, *sql: str) -> Path:
    """A copy of the dates atlas with ``sql`` run on it (a writer's connection: views it may not read)."""
    import shutil

    import duckdb

    folder.mkdir(exist_ok=True)
    db = folder / "hostile.duckdb"
    shutil.copy(atlases["folder"] / "dates.duckdb", db)
    con = duckdb.connect(str(db))
    for statement in sql:
        con.execute(statement)
    con.close()
    return db


def test_a_hostile_view_is_stopped_at_the_deadline_with_a_message(atlases, tmp_path, monkeypatch):
    """head_stats as a VIEW over range(3,000,000,000): the page's question is interrupted at ATLAS_QUERY_SECONDS
    (before: still busy after 45 s, no limit on the read side); the page says so and draws the rest."""
    hostile_atlas(atlases, tmp_path / "h", "CREATE TABLE hs AS SELECT * FROM head_stats", "DROP TABLE head_stats",
                  "CREATE VIEW head_stats AS SELECT hs.* FROM hs, range(3000000000)")
    monkeypatch.setenv("INSPECTOR_ATLASES", str(tmp_path / "h"))
    monkeypatch.setenv("ATLAS_QUERY_SECONDS", "1")
    at = page()
    clean(at)
    assert "ran longer than 1 s and was stopped (ATLAS_QUERY_SECONDS)" in text_of(at)
    assert at.selectbox(key="atlas_run").value  # the run picker is still there


def test_a_view_reading_a_file_is_a_message_not_a_traceback(atlases, tmp_path, monkeypatch):
    hostile_atlas(atlases, tmp_path / "h", "CREATE TABLE rh AS SELECT * FROM run_heads", "DROP TABLE run_heads",
                  "CREATE VIEW run_heads AS SELECT rh.* FROM rh, read_text('/etc/passwd')")
    monkeypatch.setenv("INSPECTOR_ATLASES", str(tmp_path / "h"))
    at = page()
    clean(at)
    text = text_of(at)
    assert "PermissionException" in text and "file system operations are disabled" in text
    assert "root:" not in text


def test_a_run_whose_builder_is_gone_shows_stopped_resumable(atlases, tmp_path, monkeypatch):
    """A build killed by SIGKILL leaves "running" in the file; its builder's pid no longer runs (issue 32)."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    builder = json.dumps({"pid": int(gone.stdout), "host": __import__("socket").gethostname(), "start": None})
    run_id = atlases["dates"]["run_id"]
    hostile_atlas(atlases, tmp_path / "k", "UPDATE runs SET status = 'running'",
                  f"INSERT OR REPLACE INTO atlas_meta VALUES ('builder:{run_id}', '{builder}')")
    monkeypatch.setenv("INSPECTOR_ATLASES", str(tmp_path / "k"))
    at = page()
    clean(at)
    assert "stopped" in at.selectbox(key="atlas_run").value and "running" not in at.selectbox(key="atlas_run").value
    bar = at.get("progress")
    assert len(bar) == 1 and "stopped, resumable" in bar[0].proto.text


def test_typed_paths_follow_the_policy(atlases, tmp_path, monkeypatch):
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"\x00" * 64)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    for typed, message in ((str(junk), "not a DuckDB database"), (str(notes), "ends in .duckdb"),
                           (str(tmp_path / "missing.duckdb"), "no such file")):
        at = page(atlas_typed=typed)
        clean(at)
        assert message in text_of(at)
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    monkeypatch.setenv("INSPECTOR_ALLOWED_ROOTS", str(ROOT / "checkpoints"))
    at = page(atlas_typed=str(junk))
    clean(at)
    assert "not an allowed atlas file" in text_of(at) and not at.dataframe
    at = page(atlas_typed=str(atlases["folder"] / "dates.duckdb"))  # the atlas folder is a root
    clean(at)
    assert len(at.dataframe) == 2
    assert not [b for b in at.button if b.key == "atlas_b_go"]  # no building on a public server


def test_a_database_another_process_writes_is_a_message(atlases, tmp_path):
    import shutil

    db = tmp_path / "busy.duckdb"
    shutil.copy(atlases["folder"] / "dates.duckdb", db)
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); "
                               "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        at = page(atlas_typed=str(db))
        clean(at)
        assert "open in another process" in text_of(at)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.2)
    at = page(atlas_typed=str(db))  # free again: it opens
    clean(at)
    assert len(at.dataframe) == 2


def test_a_first_visit_opens_on_the_shipped_example(tmp_path, monkeypatch):
    """With no database of one's own, the page opens on the shipped example atlas (model.atlas.example): the dates
    model over 256 dates, its strip drawn."""
    monkeypatch.setenv("INSPECTOR_ATLASES", str(tmp_path / "none"))
    at = page()
    clean(at)
    assert at.selectbox(key="atlas_db").options[0] == "example-dates.duckdb"
    assert at.selectbox(key="atlas_db").value == "example-dates.duckdb"
    assert "example-dates.txt" in text_of(at) and "256 examples" in text_of(at) and len(at.dataframe) >= 1
    assert "Pick an atlas database" not in text_of(at)


def test_building_an_atlas_from_the_page(tmp_path, monkeypatch):
    folder = tmp_path / "built"
    monkeypatch.setenv("INSPECTOR_ATLASES", str(folder))
    data = tmp_path / "c.txt"
    data.write_text("21.11.2026\n\nNov 3, 1999\n")
    at = page()
    clean(at)
    at.text_input(key="atlas_b_data").set_value(str(data))
    at.text_input(key="atlas_b_name").set_value("mine")
    at.button(key="atlas_b_go").click()
    at.run()
    clean(at)
    assert (folder / "mine.duckdb").is_file()
    assert "Built" in text_of(at) and "2 examples" in text_of(at) and "1 skipped" in text_of(at)
    assert at.selectbox(key="atlas_db").value == "mine.duckdb" and len(at.dataframe) == 2
    at.text_input(key="atlas_b_name").set_value("../escape")
    at.button(key="atlas_b_go").click()
    at.run()
    clean(at)
    assert "A database name is" in text_of(at) and not (tmp_path / "escape.duckdb").exists()
