"""The corpus atlas (issue 20): corpus readers and hostile corpora, the schema, resumable builds (an exception after
N batches, a real SIGINT), no duplicate rows, runs never mixed, batched == alone for the project's models and
transformers models, the statistics equal head_table of single runs, the Ray engine's rows equal the local
engine's, and the view's queries equal a pandas computation over the same rows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_atlas import synthetic_atlas
from model import load
from model.analysis.heads import head_table
from model.analysis.projection import balance_queries_and_keys, qk_projection
from model.atlas import corpus as corpus_mod
from model.atlas import queries as Q
from model.atlas import records as records_mod
from model.atlas.batch import AtlasOptions, QKSample, atlas_batch
from model.atlas.build import BuildRequest, build
from model.atlas.cli import main
from model.atlas.corpus import open_corpus
from model.atlas.identity import AtlasError
from model.atlas.locate import list_databases, resolve_database
from model.atlas.records import CorpusError, Record
from model.atlas.schema import STATS, TABLES
from model.atlas.store import AtlasStore, held_interrupts, open_read_only
from model.safe.paths import PathPolicy
from tests.hf_models import build as build_hf
from viz import atlas as viz_atlas

ROOT = Path(__file__).resolve().parent.parent
DATES = ROOT / "checkpoints" / "dates"
INDUCTION = ROOT / "checkpoints" / "induction"
DATE_TEXTS = ["Saturday, November 21, 2026", "21.11.2026", "Nov 3, 1999", "the 5th of May 2001",
              "2026/11/21", "Tuesday, 1 January 1901", "14th of July 1989", "3.4.2012"]
WORDS = "cat red box tree sun moon owl dog".split()
INDUCTION_TEXTS = [" ".join(WORDS[:n] * 2) for n in (3, 5, 8)] + ["cat dog owl", "sun moon sun moon sun"]
HF_TEXTS = ["the cat sat on the mat", "hello", "a dog ran in the park and the cat sat on the mat again",
            "1 2 3 1 2 3", "hello world, hello again"]
OPTS = AtlasOptions(qk=QKSample(every=1, examples=100, tokens=4))
KEYS = ["example_id", "name", "head"]


# ---- fixtures and helpers --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("atlas-hf")
    return {f: build_hf(f, base / f) for f in ("gpt2", "bert", "t5", "llama")}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def table_df(db: Path, table: str, run_id: str | None = None) -> pd.DataFrame:
    con = open_read_only(db)
    try:
        where = "" if run_id is None else f" WHERE run_id = '{run_id}'"
        df = con.execute(f"SELECT * FROM {table}{where}").df()
    finally:
        con.close()
    keys = {"examples": ["example_id"], "head_stats": KEYS, "skips": ["example_id"],
            "qk_vectors": ["example_id", "name", "head", "role", "position"], "runs": ["run_id"]}[table]
    return df.sort_values(["run_id", *keys] if "run_id" in df else keys).reset_index(drop=True)


def stats_frame(rows) -> pd.DataFrame:
    return rows.head_stats.to_pandas().sort_values(KEYS).reset_index(drop=True)


def assert_stats_close(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-5) -> None:
    assert len(a) == len(b) and len(a) > 0
    assert (a[KEYS].to_numpy() == b[KEYS].to_numpy()).all()
    for s in STATS:
        x, y = a[s].to_numpy(dtype=float), b[s].to_numpy(dtype=float)
        assert (np.isnan(x) == np.isnan(y)).all(), s
        assert np.nanmax(np.abs(x - y), initial=0.0) <= atol, (s, np.nanmax(np.abs(x - y)))
    assert (a["sink_key"].to_numpy() == b["sink_key"].to_numpy()).all()


def records(texts: list[str]) -> list[Record]:
    return [Record(i, t) for i, t in enumerate(texts)]


# ---- corpus readers --------------------------------------------------------------------------------------------------

def test_txt_records_and_counted_skips(tmp_path):
    raw = (b"\xef\xbb\xbffirst line\r\n" b"\n" b"   \t \n" b"nul\x00inside\n" b"bad \xff\xfe bytes\n"
           b"caf\xc3\xa9 ok\n" b"last line without a newline")
    path = tmp_path / "c.txt"
    path.write_bytes(raw)
    c = open_corpus(path)
    recs = list(c.records())
    assert c.n_records == 7 and len(recs) == 7
    assert [r.example_id for r in recs] == list(range(7))
    assert recs[0].text == "first line"  # the byte-order mark and the \r are dropped
    assert [r.skip for r in recs] == ["", "empty", "empty", "NUL bytes", "undecodable", "", ""]
    assert recs[5].text == "café ok" and recs[6].text == "last line without a newline"
    assert "0xff" in recs[4].detail


def test_jsonl_records_and_bad_lines(tmp_path):
    deep = "[" * 50_000 + "]" * 50_000
    lines = [json.dumps({"text": "one", "n": 1}), "not json at all", json.dumps([1, 2]), json.dumps({"other": "x"}),
             json.dumps({"text": 5}), json.dumps({"text": None}), '{"text": "\\ud800 lone"}', deep,
             json.dumps({"text": "two"}), "", json.dumps({"text": "   "})]
    c = open_corpus(write_lines(tmp_path / "c.jsonl", lines))
    assert c.field == "text"
    got = [(r.text, r.skip) for r in c.records()]
    assert got == [("one", ""), (None, "not JSON"), (None, "not JSON"), (None, "missing field"), (None, "not text"),
                   (None, "missing field"), (None, "undecodable"), (None, "not JSON"), ("two", ""), (None, "empty"),
                   (None, "empty")]
    c2 = open_corpus(write_lines(tmp_path / "d.jsonl", [json.dumps({"body": "b"})]), field="body")
    assert [r.text for r in c2.records()] == ["b"]


def test_jsonl_that_is_not_json_lines_or_lacks_the_field(tmp_path):
    array = tmp_path / "array.jsonl"
    array.write_text(json.dumps([{"text": "a"}, {"text": "b"}], indent=1))
    with pytest.raises(CorpusError, match="not JSON Lines.*JSON array"):
        open_corpus(array)
    with pytest.raises(CorpusError, match=r"no field 'text'.*give --field.*'body'"):
        open_corpus(write_lines(tmp_path / "b.jsonl", [json.dumps({"body": "x"})] * 3))
    with pytest.raises(CorpusError, match=r"no record .* has the field 'txt'"):
        open_corpus(write_lines(tmp_path / "c.jsonl", [json.dumps({"text": "x"})]), field="txt")


def test_csv_and_tsv(tmp_path):
    csv_text = 'id,text,label\n1,hello world,a\n2,"a quoted, comma\nand a newline",b\n3\n\n4,"",c\n5,bye,d\n'
    (tmp_path / "c.csv").write_text(csv_text)
    c = open_corpus(tmp_path / "c.csv")
    got = [(r.example_id, r.text, r.skip) for r in c.records()]
    assert got == [(0, "hello world", ""), (1, "a quoted, comma\nand a newline", ""), (2, None, "missing field"),
                   (3, None, "empty"), (4, None, "empty"), (5, "bye", "")]
    (tmp_path / "t.tsv").write_text("text\tx\nfirst\t1\nsecond\t2\n")
    assert [r.text for r in open_corpus(tmp_path / "t.tsv").records()] == ["first", "second"]
    (tmp_path / "wrong.csv").write_text("text\tlabel\nhello\t1\n")
    with pytest.raises(CorpusError, match="another delimiter"):
        open_corpus(tmp_path / "wrong.csv")
    with pytest.raises(CorpusError, match=r"no column 'body' \(columns: 'id', 'text', 'label'\)"):
        open_corpus(tmp_path / "c.csv", "body")


def test_csv_with_a_million_columns_is_refused_and_a_million_field_row_skipped(tmp_path):
    wide = tmp_path / "wide.csv"
    with open(wide, "w") as f:
        f.write(",".join(f"c{i}" for i in range(1_000_000)) + "\ntext\n")
    t = time.perf_counter()
    with pytest.raises(CorpusError, match="header line is over"):
        open_corpus(wide)
    assert time.perf_counter() - t < 5
    rows = tmp_path / "rows.csv"
    with open(rows, "w") as f:
        f.write("text,x\nfirst,1\n" + "," * 1_200_000 + "\nwide" + "," * 1_000_000 + "\nlast,2\n")
    tracemalloc.start()
    got = [(r.text, r.skip) for r in open_corpus(rows).records()]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # a row over the line limit is skipped unread; a million fields within it are read, the text column kept
    assert got == [("first", ""), (None, "over byte limit"), ("wide", ""), ("last", "")]
    assert peak < 16 * 2**20


def test_parquet(tmp_path):
    path = tmp_path / "c.parquet"
    table = pa.table({"text": ["a b", None, "", "c d e", "x" * 100], "n": [1, 2, 3, 4, 5]})
    pq.write_table(table, path, row_group_size=2)
    c = open_corpus(path)
    assert c.n_records == 5 and len(c.shards) == 3
    got = [(r.example_id, r.text, r.skip) for r in c.records()]
    assert got == [(0, "a b", ""), (1, None, "missing field"), (2, None, "empty"), (3, "c d e", ""),
                   (4, "x" * 100, "")]
    assert [r.example_id for s in c.shards for r in c.records(s)] == list(range(5))
    small = open_corpus(path, max_line_bytes=50)
    assert [r.skip for r in small.records()][-1] == "over byte limit"
    with pytest.raises(CorpusError, match="column 'n' holds int64, not text"):
        open_corpus(path, "n")
    with pytest.raises(CorpusError, match="no column 'body'"):
        open_corpus(path, "body")


@pytest.mark.parametrize("name, content, message", [
    ("parquet_as.txt", b"PAR1" + b"\x00" * 100 + b"PAR1", "a Parquet file, not a .txt text corpus"),
    ("noise.txt", bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8)), "does not look like"),
    ("zipped.jsonl", b"PK\x03\x04" + b"x" * 100, "a zip archive"),
    ("text.parquet", b"hello\nworld\n", "not a Parquet file: it starts like text"),
    ("cut.parquet", b"PAR1" + b"x" * 100, "not a complete Parquet file"),
    ("utf16.txt", "hello\n".encode("utf-16"), "UTF-16"),
    ("empty.txt", b"", "the file is empty"),
    ("corpus.docx", b"hello", "unknown corpus format '.docx'"),
])
def test_a_corpus_that_is_not_what_its_extension_says(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=re.escape(message) if "'" in message else message):
        open_corpus(path)


def test_paths_that_are_no_corpus(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        open_corpus(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match="a directory"):
        open_corpus(tmp_path)
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    with pytest.raises(CorpusError, match="not a regular file"):
        open_corpus(fifo)  # never opened: reading a FIFO would wait forever
    with pytest.raises(CorpusError, match="--field is for"):
        open_corpus(write_lines(tmp_path / "a.txt", ["x"]), "text")


def test_a_huge_line_is_skipped_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.write(b"short one\n" + b"a" * (48 * 2**20) + b"\nshort two\n")
    tracemalloc.start()
    c = open_corpus(path)
    got = [(r.text, r.skip) for r in c.records()]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == [("short one", ""), (None, "over byte limit"), ("short two", "")]
    assert peak < 8 * 2**20  # the 48 MB line was never held


def test_a_2_gb_file_of_nul_bytes_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.txt"
    with open(path, "wb") as f:
        f.write(b"a first line of text\n")
        f.truncate(2 * 2**30)  # sparse: no disk used
    t = time.perf_counter()
    with pytest.raises(CorpusError, match="does not look like text"):
        open_corpus(path)
    assert time.perf_counter() - t < 1.0


def test_shards_read_the_same_records_as_the_whole_file(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "SHARD_BYTES", 64)
    monkeypatch.setattr(corpus_mod, "CHUNK_BYTES", 50)  # the hash pass cuts shards at chunk ends
    monkeypatch.setattr(records_mod, "CHUNK_BYTES", 50)  # the line reader meets lines across chunks
    lines = [f"line {i} " + "x" * (i % 17) for i in range(200)] + ["", "\x00bad", "tail"]
    c = open_corpus(write_lines(tmp_path / "s.txt", lines))
    assert len(c.shards) > 10
    whole = list(c.records())
    parts = [r for s in c.shards for r in c.records(s)]
    assert parts == whole and [r.example_id for r in whole] == list(range(len(lines)))


# ---- the per-batch function ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["dates", "induction"])
def test_batched_equals_alone_for_the_projects_models(which, dates, induction):
    pipe, texts = (dates, DATE_TEXTS) if which == "dates" else (induction, INDUCTION_TEXTS)
    recs = records(texts)
    batched = atlas_batch(pipe, recs, OPTS)
    alone = [atlas_batch(pipe, [r], OPTS) for r in recs]
    ex_b = batched.examples.to_pandas()
    assert ex_b["n_tokens"].nunique() > 1  # the batch really was padded
    assert ex_b.equals(pd.concat([a.examples.to_pandas() for a in alone], ignore_index=True))
    assert_stats_close(stats_frame(batched), pd.concat([stats_frame(a) for a in alone]).sort_values(KEYS)
                       .reset_index(drop=True))
    vb = batched.qk_vectors.to_pandas()
    va = pd.concat([a.qk_vectors.to_pandas() for a in alone], ignore_index=True)
    assert len(vb) == len(va) > 0
    assert np.allclose(np.stack(vb["vector"]), np.stack(va["vector"]), atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "bert", "t5", "llama"])
def test_batched_equals_alone_for_transformers_models(family, hf_models):
    pipe = load(hf_models[family], "cpu")
    recs = records(HF_TEXTS)
    batched = atlas_batch(pipe, recs, OPTS)
    alone = pd.concat([stats_frame(atlas_batch(pipe, [r], OPTS)) for r in recs]).sort_values(KEYS)
    assert batched.examples.to_pandas()["n_tokens"].nunique() > 1
    assert_stats_close(stats_frame(batched), alone.reset_index(drop=True))


def test_the_stored_statistics_equal_head_table_of_single_runs(dates, tmp_path):
    data = write_lines(tmp_path / "d.txt", DATE_TEXTS)
    db = tmp_path / "a.duckdb"
    build(BuildRequest(model=str(DATES), data=str(data), db=str(db), batch_size=3, device="cpu"))
    stored = table_df(db, "head_stats")
    assert stored["induction"].isna().any()  # NULL where undefined, read back as NaN
    for i, text in enumerate(DATE_TEXTS):
        ref = head_table(dates.run(text, max_new_tokens=128).trace).rename(columns={"attention": "name"})
        ref.insert(0, "example_id", i)
        mine = stored[stored["example_id"] == i].drop(columns="run_id").reset_index(drop=True)
        assert_stats_close(mine[["example_id", "name", "head", *STATS, "sink_key"]],
                           ref.sort_values(KEYS).reset_index(drop=True)[["example_id", "name", "head", *STATS,
                                                                         "sink_key"]])
    ex = table_df(db, "examples")
    assert ex["output_text"].tolist() == [dates.generate(t) for t in DATE_TEXTS]


def test_the_shipped_example_atlas_is_what_its_script_builds(dates, tmp_path):
    """examples/atlas/example-dates.duckdb (the Corpus atlas page's first database) is the run that
    ``python -m model.atlas.example`` builds: the same corpus, model and options (its run id), every example and head,
    and a sample of its rows computed again equal to what it stores. If this fails after retraining checkpoints/dates,
    run ``python -m model.atlas.example``."""
    from model.atlas import example
    from model.atlas.build import prepare

    assert example.DATABASE.stat().st_size < 8 * 2**20  # a few MB in the repository
    assert example.CORPUS.read_text(encoding="utf-8") == example.corpus_text()
    data = write_lines(tmp_path / "corpus.txt", example.corpus_text().splitlines())
    prepared = prepare(BuildRequest(model=str(example.MODEL), data=str(data), db=str(tmp_path / "x.duckdb"),
                                    device="cpu", qk_examples=example.QK_EXAMPLES))
    con = open_read_only(example.DATABASE)
    try:
        runs = Q.runs(con)
        assert len(runs) == 1 and runs.iloc[0]["run_id"] == prepared.info.run_id, "run python -m model.atlas.example"
        run = runs.iloc[0]
        assert run["status"] == "finished" and int(run["n_examples"]) == example.N_EXAMPLES
        assert run["model_path"] == example.MODEL_NAME and len(Q.run_heads(con, run["run_id"])) == 24
    finally:
        con.close()
    stored = table_df(example.DATABASE, "head_stats")
    assert len(stored) == example.N_EXAMPLES * 24
    sample = [r for r in prepared.corpus.records()][::37]
    again = stats_frame(atlas_batch(dates, sample, prepared.options))
    mine = stored[stored["example_id"].isin([r.example_id for r in sample])].drop(columns="run_id")
    assert_stats_close(mine.reset_index(drop=True), again[mine.columns].reset_index(drop=True))


def test_the_q_and_k_vectors_are_the_traces(dates, hf_models):
    llama = load(hf_models["llama"], "cpu")  # 4 query heads read 2 key/value heads
    for pipe, text in ((dates, DATE_TEXTS[0]), (llama, HF_TEXTS[2])):
        rows = atlas_batch(pipe, [Record(0, text)], OPTS).qk_vectors.to_pandas()
        res = pipe.run_batch([text], mode="lazy", overviews=False, max_new_tokens=128)[0]
        for name in res.trace:
            inputs = res.trace.inputs_of(name)
            H, H_kv = inputs.q.shape[1], inputs.k.shape[1]
            for h in (0, H - 1):
                q = rows[(rows["name"] == name) & (rows["head"] == h) & (rows["role"] == "q")]
                k = rows[(rows["name"] == name) & (rows["head"] == h) & (rows["role"] == "k")]
                assert 0 < len(q) <= OPTS.qk.tokens and 0 < len(k) <= OPTS.qk.tokens
                assert np.allclose(np.stack(q["vector"]), inputs.q[0, h, q["position"].tolist()].numpy(), atol=1e-6)
                kv = h // (H // H_kv)
                assert np.allclose(np.stack(k["vector"]), inputs.k[0, kv, k["position"].tolist()].numpy(),
                                   atol=1e-6)


def test_texts_over_the_token_limit_are_cut_or_skipped_and_counted(dates):
    long_texts = ["Saturday, November 21, 2026, and then some more words here", "21.11.2026"]
    cut = atlas_batch(dates, records(long_texts), AtlasOptions(max_tokens=6))
    ex = cut.examples.to_pandas()
    assert ex["cut"].tolist() == [True, True] and (ex["n_tokens"] <= 6).all()
    for text, full in zip(ex["text"], long_texts, strict=True):
        assert full.startswith(text) and len(dates.tokenize_source(text).ids) <= 6
    skipped = atlas_batch(dates, records(long_texts), AtlasOptions(max_tokens=6, too_long="skip"))
    assert skipped.examples.num_rows == 0 and skipped.skip_counts() == {"over token limit": 2}
    fits = atlas_batch(dates, records(["21.11.2026"]), AtlasOptions(max_tokens=64))
    assert fits.examples.to_pandas()["cut"].tolist() == [False]


def test_a_text_the_model_refuses_is_a_counted_skip(dates, monkeypatch):
    import model.atlas.batch as batch_mod

    real = batch_mod.run_batch

    def picky(pipe, texts, **kw):
        if any("REFUSED" in t for t in texts):
            raise RuntimeError("this text breaks the model")
        return real(pipe, texts, **kw)
    monkeypatch.setattr(batch_mod, "run_batch", picky)
    rows = atlas_batch(dates, records(["21.11.2026", "REFUSED 2026", "Nov 3, 1999"]), OPTS)
    assert rows.examples.to_pandas()["example_id"].tolist() == [0, 2]
    skips = rows.skips.to_pandas()
    assert skips["reason"].tolist() == ["model error"] and "breaks the model" in skips["detail"][0]


# ---- the database: schema, resumability, runs ------------------------------------------------------------------------

def test_the_schema_has_its_tables_keys_and_a_column_per_statistic(tmp_path):
    db = tmp_path / "s.duckdb"
    AtlasStore(db).close()
    con = duckdb.connect(str(db), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {t.name for t in TABLES} <= tables
    keys = {r[0]: r[1] for r in con.execute("SELECT table_name, constraint_column_names FROM duckdb_constraints() "
                                            "WHERE constraint_type = 'PRIMARY KEY'").fetchall()}
    assert keys["head_stats"] == ["run_id", "example_id", "name", "head"]
    assert keys["examples"] == ["run_id", "example_id"] and keys["runs"] == ["run_id"]
    cols = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                      "'head_stats'").fetchall()]
    assert all(s in cols for s in STATS) and {"example_id", "name", "layer", "head", "sink_key"} <= set(cols)
    runs_cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                           "'runs'").fetchall()}
    assert {"model_path", "model_hash", "corpus_hash", "options", "started", "finished", "skipped"} <= runs_cols
    con.close()


def test_the_store_refuses_files_that_are_not_atlases(tmp_path):
    text = tmp_path / "notes.duckdb"
    text.write_text("my notes")
    with pytest.raises(AtlasError, match="not a DuckDB database"):
        AtlasStore(text)
    assert text.read_text() == "my notes"  # nothing written into it
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE mine (x INTEGER)")
    con.close()
    with pytest.raises(AtlasError, match="not an atlas"):
        AtlasStore(other)
    with pytest.raises(AtlasError, match="not an atlas"):
        open_read_only(other)


def test_a_batch_is_committed_whole_or_not_at_all(tmp_path, monkeypatch):
    data = write_lines(tmp_path / "d.txt", DATE_TEXTS * 2)
    db = tmp_path / "a.duckdb"
    calls = {"n": 0}
    real = AtlasStore._update_counts

    def failing(self, run_id):
        calls["n"] += 1
        if calls["n"] == 3:  # inside the third batch's transaction, after its rows were inserted
            raise RuntimeError("disk full")
        return real(self, run_id)
    monkeypatch.setattr(AtlasStore, "_update_counts", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        build(BuildRequest(model=str(DATES), data=str(data), db=str(db), batch_size=4, device="cpu"))
    monkeypatch.setattr(AtlasStore, "_update_counts", real)
    run = table_df(db, "runs").iloc[0]
    assert run["status"] == "failed" and "disk full" in run["message"]
    assert table_df(db, "examples")["example_id"].tolist() == list(range(8))  # two whole batches, not the third
    assert len(table_df(db, "head_stats")) == 8 * 24


def test_an_interrupt_after_n_batches_keeps_them_and_the_rerun_continues(tmp_path):
    lines = DATE_TEXTS * 3 + [""]
    data = write_lines(tmp_path / "d.txt", lines)
    db, ref_db = tmp_path / "a.duckdb", tmp_path / "ref.duckdb"
    req = BuildRequest(model=str(DATES), data=str(data), db=str(db), batch_size=4, device="cpu")
    seen = []

    def stop_after_two(p):
        seen.append(p.done)
        if len(seen) == 3:  # the start, then two batches
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        build(req, stop_after_two)
    run = table_df(db, "runs").iloc[0]
    assert run["status"] == "interrupted" and run["n_examples"] == 8
    row = build(req)
    assert row["status"] == "finished" and row["added"] == len(lines) - 1 - 8
    build(BuildRequest(model=str(DATES), data=str(data), db=str(ref_db), batch_size=4, device="cpu"))
    for table in ("examples", "skips"):
        a, b = table_df(db, table), table_df(ref_db, table)
        assert a.drop(columns="run_id").equals(b.drop(columns="run_id"))
    stats = table_df(db, "head_stats")
    assert len(stats) == len(stats.drop_duplicates(KEYS)) == (len(lines) - 1) * 24
    assert_stats_close(stats, table_df(ref_db, "head_stats"))
    again = build(req)  # a finished run: nothing written twice
    assert again["added"] == 0 and len(table_df(db, "head_stats")) == len(stats)


def test_held_interrupts_waits_for_the_commit():
    done = []
    with pytest.raises(KeyboardInterrupt), held_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append("committed")  # reached: the signal waited for the block
    assert done == ["committed"]


def _atlas_cmd(data: Path, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "model.atlas", "--model", str(DATES), "--data", str(data), "--db", str(db),
            "--batch-size", "4", "--device", "cpu", *extra]


# ``python -m model.atlas`` whose build holds after its second batch until a signal ends it (so that the signal always
# arrives mid-build, however fast the machine: the build of 160 examples once finished before it did)
HELD_BUILD = """
import runpy, sys, time
import model.atlas.local as local
real, seen = local.atlas_batch, []
def held(*args, **kwargs):
    if len(seen) == 2:
        sys.stderr.write("HOLDING after 2 batches\\n")
        sys.stderr.flush()
        while True:
            time.sleep(0.02)
    seen.append(1)
    return real(*args, **kwargs)
local.atlas_batch = held
sys.argv = ["model.atlas", *sys.argv[1:]]
runpy.run_module("model.atlas", run_name="__main__")
"""


def held_build(data: Path, db: Path) -> tuple[subprocess.Popen, list[bytes], threading.Thread]:
    """The held build started; returns once it holds: (the process, its stderr as read, the thread reading it, which
    ends when the process has ended and its stderr is read to the end)."""
    cmd = [sys.executable, "-c", HELD_BUILD, *_atlas_cmd(data, db)[3:]]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read1(4096), b"")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while b"HOLDING" not in b"".join(err):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the build never held: " + b"".join(err).decode(errors="replace")[-2000:])
        time.sleep(0.05)
    return proc, err, reader


def test_a_real_sigint_keeps_every_finished_batch(tmp_path):
    lines = (DATE_TEXTS * 20)[:160]
    data = write_lines(tmp_path / "d.txt", lines)
    db = tmp_path / "a.duckdb"
    proc, err, reader = held_build(data, db)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(60)
    reader.join(60)  # stderr read to its end
    text = b"".join(err).decode(errors="replace")
    assert rc == 130, text[-2000:]
    assert "interrupted:" in text and "run the same command again" in text and "Traceback" not in text
    run = table_df(db, "runs").iloc[0]
    assert run["status"] == "interrupted" and run["n_examples"] == 8  # the two batches before the hold
    again = subprocess.run(_atlas_cmd(data, db, "--quiet"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"continuing: {run['n_examples']:,} of 160 records already stored" in again.stderr
    ex = table_df(db, "examples")
    assert ex["example_id"].tolist() == list(range(160))
    stats = table_df(db, "head_stats")
    assert len(stats) == len(stats.drop_duplicates(KEYS)) == 160 * 24


def test_a_killed_build_is_stopped_and_resumable_not_running_forever(tmp_path):
    """SIGKILL leaves "running" in the file (nothing could write otherwise): the builder's pid tells (issue 32)."""
    from model.atlas.store import shown_status

    data = write_lines(tmp_path / "d.txt", DATE_TEXTS * 5)  # 40 records
    db = tmp_path / "k.duckdb"
    proc, _, reader = held_build(data, db)
    proc.kill()
    proc.wait(60)
    reader.join(60)
    con = open_read_only(db)
    try:
        row = Q.runs(con).iloc[0]
    finally:
        con.close()
    assert row["status"] == "running" and row["builder"]["pid"] == proc.pid and row["n_examples"] == 8
    assert shown_status(row["status"], row["builder"], row["updated"]) == "stopped"
    again = subprocess.run(_atlas_cmd(data, db, "--quiet"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "continuing: 8 of 40 records already stored" in again.stderr, again.stderr
    assert table_df(db, "runs").iloc[0]["status"] == "finished"


def test_a_builder_is_alive_while_its_process_or_heartbeat_is():
    from datetime import timedelta

    from model.atlas.store import builder_alive, builder_identity, now, shown_status

    me = builder_identity()
    assert builder_alive(me, None) and shown_status("running", me, None) == "running"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {**me, "pid": int(gone.stdout)}
    assert not builder_alive(dead, now()) and shown_status("running", dead, now()) == "stopped"
    assert not builder_alive({**me, "start": "-1"}, now())  # this pid, but another process's start: reused
    elsewhere = {"pid": 1, "host": "another-machine", "start": None}
    assert builder_alive(elsewhere, now()) and not builder_alive(elsewhere, now() - timedelta(hours=1))
    assert not builder_alive(None, None) and shown_status("finished", None, None) == "finished"
    for junk in ("pid", [1], {"pid": True, "host": me["host"]}, {"pid": "1"}):
        assert builder_alive(junk, now()) in (True, False)


def test_another_corpus_model_or_option_is_another_run_never_mixed(tmp_path):
    a = write_lines(tmp_path / "a.txt", DATE_TEXTS[:4])
    b = write_lines(tmp_path / "b.txt", DATE_TEXTS[4:])
    db = tmp_path / "runs.duckdb"
    first = build(BuildRequest(model=str(DATES), data=str(a), db=str(db), batch_size=2, device="cpu"))
    before = table_df(db, "head_stats", first["run_id"])
    second = build(BuildRequest(model=str(DATES), data=str(b), db=str(db), batch_size=2, device="cpu"))
    third = build(BuildRequest(model=str(INDUCTION), data=str(a), db=str(db), batch_size=2, device="cpu"))
    fourth = build(BuildRequest(model=str(DATES), data=str(a), db=str(db), batch_size=2, device="cpu",
                                max_tokens=5))
    same = build(BuildRequest(model=str(DATES), data=str(a), db=str(db), batch_size=3, device="cpu"))
    ids = {first["run_id"], second["run_id"], third["run_id"], fourth["run_id"]}
    assert len(ids) == 4 and same["run_id"] == first["run_id"] and same["added"] == 0
    assert table_df(db, "head_stats", first["run_id"]).equals(before)  # untouched by the later runs
    ex = table_df(db, "examples")
    assert set(ex[ex["run_id"] == second["run_id"]]["text"]) == set(DATE_TEXTS[4:])
    assert ex[ex["run_id"] == fourth["run_id"]]["cut"].any()
    # a corpus edited in place is another run too
    write_lines(a, DATE_TEXTS[:3])
    edited = build(BuildRequest(model=str(DATES), data=str(a), db=str(db), batch_size=2, device="cpu"))
    assert edited["run_id"] not in ids and edited["n_examples"] == 3


def test_cli_messages_never_tracebacks(tmp_path, capsys):
    data = write_lines(tmp_path / "d.txt", DATE_TEXTS[:2])
    db = tmp_path / "a.duckdb"
    cases = [
        (["--model", str(tmp_path / "nope"), "--data", str(data), "--db", str(db)], "error:"),
        (["--model", str(DATES), "--data", str(tmp_path / "missing.txt"), "--db", str(db)], "no such file"),
        (["--model", str(DATES), "--data", str(data), "--db", str(data)], "should end in .duckdb"),
        (["--model", str(DATES), "--data", str(data), "--db", str(tmp_path / "no" / "a.duckdb")], "does not exist"),
        (["--model", str(DATES), "--data", str(data), "--db", str(db), "--batch-size", "0"], "at least 1"),
        (["--model", str(DATES), "--data", str(data), "--db", str(db), "--device", "cuda:7"], "error:"),
        (["--model", str(DATES), "--data", str(data), "--db", str(db), "--field", "text"], "--field is for"),
    ]
    for argv, message in cases:
        assert main(argv + ["--quiet"]) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert main(["--model", str(DATES), "--data", str(data), "--db", str(db), "--quiet"]) == 0
    assert "done: run" in capsys.readouterr().err
    assert main(["--model", str(DATES), "--data", str(data), "--db", str(db), "--quiet"]) == 0
    assert "nothing to do" in capsys.readouterr().err


# ---- the Ray engine --------------------------------------------------------------------------------------------------

def test_the_ray_engine_gives_the_local_engines_rows(tmp_path):
    pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt to run this test")
    lines = DATE_TEXTS + ["", "\x00", "Nov 3, 1999 " * 3] + DATE_TEXTS[:3]
    data = write_lines(tmp_path / "d.txt", lines)
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    from model.atlas.ray_engine import RayOptions

    local = build(BuildRequest(model=str(DATES), data=str(data), db=str(local_db), batch_size=4, device="cpu"))
    ray_row = build(BuildRequest(model=str(DATES), data=str(data), db=str(ray_db), batch_size=4, device="cpu",
                                 engine="ray", ray=RayOptions(progress_bars=False)))
    assert ray_row["run_id"] == local["run_id"] and ray_row["status"] == "finished"
    assert ray_row["n_examples"] == local["n_examples"] == len(lines) - 2 and ray_row["skipped"] == local["skipped"]
    for table in ("examples", "skips"):
        assert table_df(ray_db, table).equals(table_df(local_db, table))
    assert_stats_close(table_df(ray_db, "head_stats"), table_df(local_db, "head_stats"), atol=1e-6)
    qa, qb = table_df(ray_db, "qk_vectors"), table_df(local_db, "qk_vectors")
    assert qa.drop(columns="vector").equals(qb.drop(columns="vector"))
    assert not (tmp_path / "ray.duckdb.parts").exists()  # the parts were read in and removed


def test_parquet_parts_are_read_in_once_and_a_broken_part_reported(tmp_path):
    from model.atlas.batch import empty_rows
    from model.atlas.ray_engine import ingest_leftovers
    from model.atlas.store import RunInfo

    info = RunInfo(run_id="r1", model_path="m", model_hash="h", model_family="f", model_arch="decoder-only",
                   n_heads=1, corpus_path="c", corpus_hash="c", corpus_format="txt", field=None, options="{}",
                   n_records=2)
    rows = empty_rows()
    ex = pa.Table.from_pylist([{"example_id": 0, "text": "a", "n_tokens": 2, "n_target_tokens": 0,
                                "output_text": "", "cut": False}], schema=rows.examples.schema)
    sk = pa.Table.from_pylist([{"example_id": 1, "reason": "empty", "detail": ""}], schema=rows.skips.schema)
    parts = type(rows)(examples=ex, head_stats=rows.head_stats, qk_vectors=rows.qk_vectors, skips=sk).to_parts("r1")
    folder = tmp_path / "a.duckdb.parts" / "r1"
    (folder / "s1").mkdir(parents=True)
    (folder / "s2").mkdir()
    pq.write_table(parts, folder / "s1" / "0.parquet")
    pq.write_table(parts, folder / "s2" / "0.parquet")  # the same rows twice (a retried task)
    (folder / "s2" / "1.parquet").write_bytes(b"PAR1 cut short")
    with AtlasStore(tmp_path / "a.duckdb") as store:
        store.start(info, [])
        added, bad = ingest_leftovers(store, "r1", folder)
        assert added == 2 and len(bad) == 1 and "1.parquet" in bad[0]
        assert store.run("r1")["n_examples"] == 1 and store.run("r1")["n_skipped"] == 1
    assert not folder.exists()


# ---- the view's queries ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    db = tmp_path_factory.mktemp("atlas-q") / "syn.duckdb"
    run = synthetic_atlas(db, n_examples=400, n_layers=3, n_heads=4, qk_examples=20, chunk=150, seed=3)
    con = open_read_only(db)
    stats = con.execute("SELECT * FROM head_stats").df()
    examples = con.execute("SELECT * FROM examples").df()
    yield con, run, stats, examples
    con.close()


def _pandas_filter(examples: pd.DataFrame, filters) -> set:
    keep = np.ones(len(examples), bool)
    for f in filters:
        col = examples[f.column]
        if f.op == ">":
            keep &= (col > f.value).to_numpy()
        elif f.op == "≤":
            keep &= (col <= f.value).to_numpy()
        elif f.op == "contains":
            keep &= col.str.lower().str.contains(f.value.lower(), regex=False).to_numpy()
        elif f.op == "is":
            keep &= (col == f.value).to_numpy()
    return set(examples["example_id"][keep])


@pytest.mark.parametrize("how, q", [("mean", 0.5), ("median", 0.5), ("percentile", 0.9), ("percentile", 0.1)])
@pytest.mark.parametrize("filtered", [False, True])
def test_the_strip_equals_pandas(synthetic, how, q, filtered):
    con, run, stats, examples = synthetic
    filters = [Q.make_filter("n_tokens", ">", "50"), Q.make_filter("text", "contains", "MOON")] if filtered else []
    got = Q.head_summary(con, run, "induction", how, q, filters, kind="decoder masked self")
    rows = stats[stats["example_id"].isin(_pandas_filter(examples, filters))] if filtered else stats
    grouped = rows.groupby(["name", "head"])["induction"]
    ref = {"mean": grouped.mean(), "median": grouped.median(), "percentile": grouped.quantile(q)}[how]
    assert len(got) == 12
    for r in got.itertuples():
        assert r.value == pytest.approx(ref[(r.name, r.head)], abs=1e-12)
        assert r.n == grouped.count()[(r.name, r.head)]


def test_the_distribution_and_extremes_equal_pandas_and_numpy(synthetic):
    con, run, stats, examples = synthetic
    name, head = "decoder.1.self_attn", 2
    for filters in ([], [Q.make_filter("n_tokens", "≤", "120")]):
        mine = stats[(stats["name"] == name) & (stats["head"] == head)]
        if filters:
            mine = mine[mine["example_id"].isin(_pandas_filter(examples, filters))]
        hist = Q.distribution(con, run, name, head, "entropy", filters, bins=25)
        counts, edges = np.histogram(mine["entropy"], bins=25)
        assert hist["count"].tolist() == counts.tolist()
        assert np.allclose(hist["lo"], edges[:-1]) and np.allclose(hist["hi"], edges[1:])
        for largest in (True, False):
            got = Q.extremes(con, run, name, head, "prev_token", filters, k=7, largest=largest)
            ref = mine.sort_values(["prev_token", "example_id"], ascending=[not largest, True]).head(7)
            assert got["example_id"].tolist() == ref["example_id"].tolist()
            assert np.allclose(got["value"], ref["prev_token"])
        assert Q.count_examples(con, run, filters) == (len(_pandas_filter(examples, filters)) if filters else 400)
    induction = Q.extremes(con, run, name, head, "induction", k=500)
    assert len(induction) == 200  # NULLs are never an extreme


def test_kinds_and_present_statistics_on_a_real_atlas(tmp_path):
    data = write_lines(tmp_path / "d.txt", DATE_TEXTS)
    db = tmp_path / "a.duckdb"
    run = build(BuildRequest(model=str(DATES), data=str(data), db=str(db), batch_size=4, device="cpu"))["run_id"]
    con = open_read_only(db)
    stats = con.execute("SELECT * FROM head_stats").df()
    cross = Q.head_summary(con, run, "max_weight", "mean", kind="cross")
    names = {f"decoder.{i}.cross_attn" for i in range(2)}
    assert set(cross["name"]) == names and set(cross["kind"]) == {"cross"}
    ref = stats[stats["name"].isin(names)].groupby(["name", "head"])["max_weight"].mean()
    assert np.allclose(cross["value"], [ref[(r.name, r.head)] for r in cross.itertuples()])
    assert "prev_token" not in Q.present_stats(con, run, "cross")  # self-attention only
    assert "prev_token" in Q.present_stats(con, run, "encoder self")
    pts = Q.qk_points(con, run, "decoder.1.cross_attn", 2)
    assert pts.vectors.shape == (len(pts.meta), 32) and set(pts.meta["role"]) == {"q", "k"}
    con.close()


@pytest.mark.parametrize("column, op, value, message", [
    ("n_tokens", ">", "abc", "not a number"), ("n_tokens", ">", "1e999", "out of range"),
    ("n_tokens", ">", "nan", "not a number"), ("n_tokens", ">", "1" * 30, "out of range"),
    ("text", "contains", "x" * 1001, "at most 1,000"),
    ("text", "contains", "a\x00b", "NUL"), ("text; DROP TABLE examples", "=", "1", "cannot filter on"),
    ("cut", "is", "maybe", "true or false"), ("text", "contains", "", "type the text"),
])
def test_hostile_filter_values_are_refused(column, op, value, message):
    with pytest.raises(Q.FilterError, match=message):
        Q.make_filter(column, op, value)


def test_filter_values_are_bound_never_spliced(synthetic):
    con, run, stats, examples = synthetic
    for value in ("'; DROP TABLE examples; --", "%", "_", "' OR '1'='1", "\\", "$run"):
        assert Q.count_examples(con, run, [Q.make_filter("text", "contains", value)]) == 0
    assert Q.count_examples(con, run, [Q.make_filter("text", "≠", "' OR '1'='1")]) == 400
    assert con.execute("SELECT count(*) FROM examples").fetchone()[0] == 400
    with pytest.raises(Q.FilterError):
        Q.Filter("text", "; DELETE FROM runs", "x")
    with pytest.raises(ValueError, match="unknown statistic"):
        Q.head_summary(con, run, "entropy FROM runs; --")
    with pytest.raises(ValueError, match="percentile"):
        Q.head_summary(con, run, "entropy", "percentile", 1.5)


def test_the_read_only_connection_cannot_write_or_reach_files(synthetic, tmp_path):
    con, run, *_ = synthetic
    with pytest.raises(duckdb.Error):
        con.execute("DELETE FROM examples")
    with pytest.raises(duckdb.Error, match="disabled"):
        con.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")
    (tmp_path / "x.duckdb").write_bytes(b"\x00" * 100)
    with pytest.raises(AtlasError, match="not a DuckDB database"):
        open_read_only(tmp_path / "x.duckdb")


def test_database_paths_respect_the_policy(tmp_path):
    inside, outside = tmp_path / "atlases", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    for d in (inside, outside):
        AtlasStore(d / "a.duckdb").close()
    (inside / "notes.txt").write_text("x")
    (inside / "link.duckdb").symlink_to(outside / "a.duckdb")
    public = PathPolicy(roots=(inside.resolve(),), public=True)
    assert [p.name for p in list_databases(inside, public)] == ["a.duckdb"]  # the link out is not offered
    assert resolve_database(str(inside / "a.duckdb"), public) == (inside / "a.duckdb").resolve()
    for text, message in ((str(outside / "a.duckdb"), "not an allowed atlas file"),
                          (str(inside / "link.duckdb"), "not an allowed atlas file"),
                          (str(inside / "missing.duckdb"), "not an allowed atlas file"),
                          (str(inside / "notes.txt"), "ends in .duckdb"), ("a\x00b.duckdb", "control characters"),
                          ("x" * 2000, "characters long"), ("", "empty")):
        with pytest.raises(AtlasError, match=message):
            resolve_database(text, public)
    local = PathPolicy()
    with pytest.raises(AtlasError, match="no such file"):
        resolve_database(str(inside / "missing.duckdb"), local)


# ---- projection and figures ------------------------------------------------------------------------------------------

def test_balancing_queries_and_keys_changes_no_attention_weight():
    rng = np.random.default_rng(0)
    q, k = rng.normal(2.0, 1.0, (30, 8)), rng.normal(-5.0, 3.0, (40, 8))
    qb, kb, shift, scale = balance_queries_and_keys(q, k)
    assert np.allclose(qb.mean(0) / scale, kb.mean(0) * scale)  # centroids meet (before scaling)
    assert np.isclose(np.linalg.norm(qb, axis=1).mean(), np.linalg.norm(kb, axis=1).mean())
    delta = qb @ kb.T - q @ k.T  # the same shift for every key of a query: the softmax removes it
    assert np.allclose(delta, delta[:, :1])

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    assert np.allclose(softmax(qb @ kb.T), softmax(q @ k.T))


def test_the_projection_is_the_pca_of_the_balanced_points():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(50, 6)) * [5, 1, 1, 1, 1, 1], rng.normal(size=(20, 6))
    p = qk_projection(q, k)
    qb, kb, _, _ = balance_queries_and_keys(q, k)
    x = np.vstack([qb, kb])
    centred = x - x.mean(0)
    assert np.allclose(p.points, centred @ p.components.T)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    assert np.allclose(np.abs(p.components), np.abs(vt[:2]))
    assert np.allclose(p.explained, (sv[:2] ** 2) / (sv ** 2).sum()) and p.explained[0] >= p.explained[1]
    assert p.points.shape == (70, 2)
    assert qk_projection(q[:1], k[:0]).points.shape == (1, 2)  # one point: no crash


def test_inspector_links_carry_the_exact_text():
    text = "a&b=c #d ?e %20 + ünï 😀\n\"'<>"
    link = viz_atlas.inspector_link("/models/my model", text, "decoder masked self", 3, 7, "attention-map")
    parts = urlsplit(link)
    q = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    assert parts.path == "./" or link.startswith("./?")
    assert q == {"model": "/models/my model", "text": text, "kind": "decoder masked self", "layer": "3", "head": "7",
                 "view": "attention-map"}
    assert viz_atlas.inspector_link("m", "x" * 10_000, "cross", 0, 0, "attention-map") is None


def test_extremes_table_and_figures():
    rows = pd.DataFrame({"example_id": [3, 9], "value": [0.9, 0.1], "n_tokens": [5, 4], "chars": [5, 9000],
                         "preview": ["hello", "y" * 300], "text": ["hello", None], "output_text": ["", ""]})
    t = viz_atlas.extremes_table(rows, model="m", kind="cross", layer=1, head=2, view="attention-map",
                                 value_name="entropy")
    assert t["inspector"][0].startswith("./?model=m&text=hello&kind=cross&layer=1&head=2")
    assert pd.isna(t["inspector"][1]) and "too long for a link" in t["note"][1] and t["text"][1].endswith("…")
    summary = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "value": [0.1, 0.2, np.nan, 0.4],
                            "n": [5, 5, 0, 5]})
    fig = viz_atlas.summary_strip(summary, "mean", selected=(1, 1))
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z[0, 1] == 0.2 and np.isnan(z[1, 0]) and z[1, 1] == 0.4 and len(fig.layout.shapes) == 1
    assert fig.layout.meta["cells"][3] == [1, 1]
    meta = pd.DataFrame({"example_id": [1, 1, 2], "role": ["q", "k", "q"], "position": [0, 1, 2],
                         "token": ["<b>", "a", "b"]})
    for colour in viz_atlas.COLOUR_BY:
        fig = viz_atlas.qk_scatter(np.zeros((3, 2)), meta, colour_by=colour)
        assert sum(len(t.x) for t in fig.data) == 3
        assert all("<b>" not in str(t.text) for t in fig.data)  # token text is escaped
    point = {"selection": {"points": [{"customdata": [2, 2, 0]}]}}
    assert viz_atlas.clicked_point(point) == (2, 2, "q")
