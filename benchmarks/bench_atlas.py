"""What the corpus atlas costs: examples per second and peak memory of a build (the dates model and the
GPT-2-small-shaped one, batch sizes 1, 8 and 32, on this CPU), memory over a 10,000-example build (RSS every 1,000
examples), and the Atlas view's query times over 10,000 examples x 144 heads (1.44 M rows of synthetic statistics).

    python -m benchmarks.bench_atlas            # all three parts; prints tables, writes benchmarks/results/atlas.json
    python -m benchmarks.bench_atlas queries    # one part: throughput, memory, queries or hostile (a hostile view)

Each build runs in a child process of its own (a fresh interpreter: its peak RSS is its own), through the same
function as ``python -m model.atlas`` (local engine, q / k vectors of 100 examples kept).
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
BATCH_SIZES = (1, 8, 32)
N_THROUGHPUT = {"dates": 256, "gpt2small": 64}  # examples per (model, batch size)
N_MEMORY = 10_000
QUERY_REPEATS = 7
REPEATS = 2  # builds per (model, batch size)
TARGET_MS = 200.0


# ---- corpora --------------------------------------------------------------------------------------------------------

def dates_corpus(path: Path, n: int, seed: int = 123) -> Path:
    """``n`` dates in the shipped model's formats, one per line."""
    from model.training.tasks import get_task

    pairs = get_task("dates").pairs(n, seed=seed)
    path.write_text("\n".join(source for source, _ in pairs) + "\n")
    return path


def gpt2_corpus(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` texts of 24..64 tokens for the GPT-2-small-shaped model's tokenizer."""
    from tokenizers import Tokenizer

    from benchmarks.gpt2small import gpt2_small, text_of_tokens

    tok = Tokenizer.from_file(str(gpt2_small() / "tokenizer.json"))
    rng = random.Random(seed)
    texts = [text_of_tokens(tok, rng.randint(24, 64), shift=i).replace("\n", " ") for i in range(n)]
    path.write_text("\n".join(texts) + "\n")
    return path


def model_path(name: str) -> Path:
    if name == "gpt2small":
        from benchmarks.gpt2small import gpt2_small

        return gpt2_small()
    return ROOT / "checkpoints" / name


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---- one build, in a child process -------------------------------------------------------------------------------

def child(model: str, data: str, db: str, batch_size: int, every: int) -> dict:
    """Build one atlas; RSS after loading the model and every ``every`` examples; rate and peak RSS."""
    from model.atlas import store as store_mod
    from model.atlas.build import BuildRequest, build, prepare
    from model.runtime import configure_cpu

    configure_cpu()
    writers = []  # the build's DuckDB connection, to read what DuckDB itself holds
    opened = store_mod.AtlasStore.__init__

    def keep(self, path):
        opened(self, path)
        writers.append(self.con)
    store_mod.AtlasStore.__init__ = keep
    req = BuildRequest(model=model, data=data, db=db, batch_size=batch_size, device="cpu")
    t0 = time.perf_counter()
    prepared = prepare(req)
    loaded = {"seconds": round(time.perf_counter() - t0, 2), "rss_mb": round(rss_mb(), 1)}
    marks: list[dict] = []

    def progress(p) -> None:
        if every and p.done // every > len(marks):
            duck = writers[0].execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0]
            marks.append({"examples": p.done, "rss_mb": round(rss_mb(), 1), "duckdb_mb": round(duck / 2**20, 1),
                          "seconds": round(p.seconds, 1)})
    t1 = time.perf_counter()
    row = build(req, progress, prepared)
    seconds = time.perf_counter() - t1
    return {"examples": row["n_examples"], "seconds": round(seconds, 2),
            "examples_per_s": round(row["n_examples"] / seconds, 2), "peak_rss_mb": round(peak_mb(), 1),
            "after_load": loaded, "rss": marks}


def run_child(model: str, data: Path, batch_size: int, every: int = 0) -> dict:
    with tempfile.TemporaryDirectory(prefix="atlas-bench-") as tmp:
        db = Path(tmp) / "bench.duckdb"
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_atlas", "_child", str(model), str(data),
                              str(db), str(batch_size), str(every)], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="atlas-corpus-") as tmp:
        for name, n in N_THROUGHPUT.items():
            data = (dates_corpus if name == "dates" else gpt2_corpus)(Path(tmp) / f"{name}.txt", n)
            for bs in BATCH_SIZES:
                # the machine is shared: the better of two builds (the other one's rate is kept beside it)
                runs = [run_child(str(model_path(name)), data, bs) for _ in range(REPEATS)]
                r = max(runs, key=lambda x: x["examples_per_s"])
                r["other_rates"] = [x["examples_per_s"] for x in runs if x is not r]
                rows.append({"model": name, "batch_size": bs, **r})
                print(f"  {name:<10} batch {bs:>2}: {r['examples_per_s']:>7.2f} examples/s, peak RSS "
                      f"{r['peak_rss_mb']:>7.0f} MB (after loading the model {r['after_load']['rss_mb']:.0f} MB)",
                      flush=True)
    return rows


def memory() -> dict:
    with tempfile.TemporaryDirectory(prefix="atlas-corpus-") as tmp:
        data = dates_corpus(Path(tmp) / "dates10k.txt", N_MEMORY, seed=7)
        r = run_child(str(model_path("dates")), data, 8, every=1_000)
    for m in r["rss"]:
        print(f"  {m['examples']:>6,} examples: RSS {m['rss_mb']:7.1f} MB, of which DuckDB holds "
              f"{m['duckdb_mb']:5.1f} MB  ({m['seconds']:.0f} s)", flush=True)
    return {"model": "dates", "batch_size": 8, **r}


# ---- the view's queries over 1.44 M rows -----------------------------------------------------------------------

def synthetic_atlas(db: Path, n_examples: int = 10_000, n_layers: int = 12, n_heads: int = 12, qk_examples: int = 100,
                    qk_names: int = 1, d_k: int = 64, seed: int = 0, chunk: int = 1_000) -> str:
    """A decoder-only atlas of random statistics written through AtlasStore (the build's own writer): n_examples x
    n_layers x n_heads rows of head_stats (induction NULL for half the examples), q / k vectors of ``qk_examples``
    examples for the heads of the first ``qk_names`` layers. Returns the run_id."""
    from model.atlas.batch import BatchRows
    from model.atlas.schema import EXAMPLES, HEAD_STATS, QK_VECTORS, SKIPS, STATS
    from model.atlas.store import AtlasStore, RunInfo

    rng = np.random.default_rng(seed)
    names = [f"decoder.{i}.self_attn" for i in range(n_layers)]
    heads = [{"name": n, "stack": "decoder", "sublayer": "self_attn", "kind": "decoder masked self", "layer": i,
              "head": h} for i, n in enumerate(names) for h in range(n_heads)]
    info = RunInfo(run_id="synthetic", model_path="synthetic", model_hash="0", model_family="synthetic",
                   model_arch="decoder-only", n_heads=n_heads, corpus_path="synthetic.txt", corpus_hash="0",
                   corpus_format="txt", field=None, options="{}", n_records=n_examples)
    words = ["cat", "dog", "sun", "moon", "tree", "box", "red", "blue"]
    with AtlasStore(db) as store:
        state = store.start(info, heads)
        for start in range(0, n_examples, chunk):
            ids = np.arange(start, min(n_examples, start + chunk))
            n_tok = rng.integers(5, 200, len(ids))
            texts = [" ".join(words[(int(i) * 7 + j) % len(words)] for j in range(1 + int(i) % 12)) for i in ids]
            examples = pa.table({"example_id": ids, "text": texts, "n_tokens": n_tok.astype(np.int32),
                                 "n_target_tokens": np.zeros(len(ids), np.int32), "output_text": [""] * len(ids),
                                 "cut": np.zeros(len(ids), bool)}, schema=EXAMPLES.arrow_schema(False))
            per = len(names) * n_heads
            cols = {"example_id": np.repeat(ids, per),
                    "name": np.tile(np.repeat(names, n_heads), len(ids)),
                    "layer": np.tile(np.repeat(np.arange(n_layers), n_heads), len(ids)).astype(np.int16),
                    "head": np.tile(np.arange(n_heads), len(names) * len(ids)).astype(np.int16)}
            n = len(ids) * per
            for s in STATS:
                v = rng.random(n) * (3.0 if s in ("entropy", "distance") else 1.0)
                mask = None
                if s == "induction":
                    mask = np.repeat(ids % 2 == 1, per)
                cols[s] = pa.array(v, pa.float64(), mask=mask)
            cols["sink_key"] = rng.integers(0, 64, n).astype(np.int32)
            stats = pa.table(cols, schema=HEAD_STATS.arrow_schema(False))
            vectors = QK_VECTORS.arrow_schema(False).empty_table()
            every = max(1, n_examples // max(1, qk_examples))
            qk_ids = [int(i) for i in ids if i % every == 0][:qk_examples]
            if qk_ids and qk_names:
                rows = [(e, names[li], h, role, p) for e in qk_ids for li in range(qk_names) for h in range(n_heads)
                        for role in ("q", "k") for p in range(8)]
                flat = rng.standard_normal((len(rows), d_k)).astype(np.float32)
                vectors = pa.table({
                    "example_id": [r[0] for r in rows], "name": [r[1] for r in rows],
                    "head": np.array([r[2] for r in rows], np.int16), "role": [r[3] for r in rows],
                    "position": np.array([r[4] for r in rows], np.int32), "token": [words[r[4]] for r in rows],
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), d_k).cast(
                        pa.list_(pa.float32()))}, schema=QK_VECTORS.arrow_schema(False))
            store.write(state.run_id, BatchRows(examples=examples, head_stats=stats, qk_vectors=vectors,
                                                skips=SKIPS.arrow_schema(False).empty_table()))
        store.finish(state.run_id, "finished")
    return info.run_id


def time_query(db: Path, fn, *args, **kwargs) -> dict:
    """Median of QUERY_REPEATS runs of one query, with the read-only open and close the page does per question."""
    from model.atlas.store import open_read_only

    with_open, query_only = [], []
    for _ in range(QUERY_REPEATS):
        t0 = time.perf_counter()
        con = open_read_only(db)
        t1 = time.perf_counter()
        result = fn(con, *args, **kwargs)
        t2 = time.perf_counter()
        con.close()
        t3 = time.perf_counter()
        query_only.append(t2 - t1)
        with_open.append(t3 - t0)
    size = len(result) if hasattr(result, "__len__") else (len(result.meta) if hasattr(result, "meta") else 1)
    return {"query_ms": round(1000 * statistics.median(query_only), 1),
            "with_open_ms": round(1000 * statistics.median(with_open), 1), "rows": size}


def queries() -> dict:
    from model.atlas import queries as Q

    with tempfile.TemporaryDirectory(prefix="atlas-queries-") as tmp:
        db = Path(tmp) / "synthetic.duckdb"
        t0 = time.perf_counter()
        run = synthetic_atlas(db)
        built = time.perf_counter() - t0
        size_mb = db.stat().st_size / 2**20
        f = [Q.make_filter("n_tokens", ">", "20")]
        f2 = [Q.make_filter("n_tokens", ">", "20"), Q.make_filter("text", "contains", "moon")]
        name, head = "decoder.5.self_attn", 3
        kind = {"kind": "decoder masked self"}  # as the page asks: one attention kind at a time
        cases = {
            "runs": (Q.runs, (), {}), "run_heads": (Q.run_heads, (run,), {}),
            "present_stats": (Q.present_stats, (run, "decoder masked self"), {}),
            "strip, mean": (Q.head_summary, (run, "prev_token", "mean"), kind),
            "strip, median": (Q.head_summary, (run, "prev_token", "median"), kind),
            "strip, 90th percentile": (Q.head_summary, (run, "prev_token", "percentile", 0.9), kind),
            "strip, mean, n_tokens > 20": (Q.head_summary, (run, "prev_token", "mean", 0.5, f), kind),
            "strip, median, n_tokens > 20 and text contains": (Q.head_summary, (run, "prev_token", "median", 0.5, f2),
                                                               kind),
            "strip, mean of induction (half NULL)": (Q.head_summary, (run, "induction", "mean"), kind),
            "distribution of one head": (Q.distribution, (run, name, head, "entropy"), {}),
            "distribution, n_tokens > 20": (Q.distribution, (run, name, head, "entropy", f), {}),
            "top 10 examples": (Q.extremes, (run, name, head, "prev_token"), {}),
            "bottom 10, n_tokens > 20": (Q.extremes, (run, name, head, "prev_token", f, 10, False), {}),
            "examples passing a filter": (Q.count_examples, (run, f2), {}),
            "q / k vectors of one head": (Q.qk_points, (run, "decoder.0.self_attn", 3), {}),
        }
        def statistic_change(con):  # what the page asks when the statistic changes, through its one connection
            Q.head_summary(con, run, "entropy", "mean", **kind)
            Q.distribution(con, run, name, head, "entropy", bins=40)
            Q.extremes(con, run, name, head, "entropy")
            return Q.extremes(con, run, name, head, "entropy", largest=False)
        cases["page: a statistic change (strip, distribution, top and bottom)"] = (statistic_change, (), {})
        out = {}
        for label, (fn, args, kwargs) in cases.items():
            out[label] = time_query(db, fn, *args, **kwargs)
            r = out[label]
            ok = "" if label.startswith("page:") else "ok" if r["query_ms"] <= TARGET_MS else "MISSED"
            print(f"  {label:<64} {r['query_ms']:>7.1f} ms query, {r['with_open_ms']:>7.1f} ms with open/close "
                  f"({r['rows']:,} rows out) {ok}", flush=True)
    return {"rows": 10_000 * 144, "examples": 10_000, "heads": 144, "build_seconds": round(built, 1),
            "file_mb": round(size_mb, 1), "target_ms": TARGET_MS, "queries": out}


HOSTILE_CAP_SECONDS = 60.0  # the "before" side (no deadline) is interrupted here, by the benchmark


def hostile() -> dict:
    """A hostile database (issue 32): head_stats a VIEW over range(3,000,000,000) of a small atlas's rows; the page's
    first question on it (present_stats), before (read-only, no thread or memory limit, no deadline; the benchmark
    interrupts it at HOSTILE_CAP_SECONDS) and after (read_config() and the ATLAS_QUERY_SECONDS deadline)."""
    import threading

    import duckdb

    from model.atlas import queries as Q
    from model.atlas.identity import AtlasError
    from model.atlas.store import READ_CONFIG, open_read_only, query_seconds, with_deadline

    with tempfile.TemporaryDirectory(prefix="atlas-hostile-") as tmp:
        db = Path(tmp) / "hostile.duckdb"
        run = synthetic_atlas(db, n_examples=100, n_layers=2, n_heads=4, qk_examples=0)
        con = duckdb.connect(str(db))
        for sql in ("CREATE TABLE hs AS SELECT * FROM head_stats", "DROP TABLE head_stats",
                    "CREATE VIEW head_stats AS SELECT hs.* FROM hs, range(3000000000)"):
            con.execute(sql)
        con.close()
        out = {}
        con = duckdb.connect(str(db), read_only=True, config=READ_CONFIG)
        timer = threading.Timer(HOSTILE_CAP_SECONDS, con.interrupt)
        timer.start()
        t0 = time.perf_counter()
        try:
            Q.present_stats(con, run, "decoder masked self")
            what = "finished"
        except duckdb.InterruptException:
            what = f"still running at {HOSTILE_CAP_SECONDS:.0f} s (interrupted by the benchmark)"
        timer.cancel()
        con.close()
        out["before"] = {"seconds": round(time.perf_counter() - t0, 2), "outcome": what}
        t0 = time.perf_counter()
        con = open_read_only(db)
        try:
            with_deadline(con, lambda: Q.present_stats(con, run, "decoder masked self"), query_seconds())
            what = "finished"
        except AtlasError as e:
            what = str(e)
        con.close()
        out["after"] = {"seconds": round(time.perf_counter() - t0, 2), "outcome": what,
                        "deadline_s": query_seconds()}
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **out}
    for side in ("before", "after"):
        print(f"  {side:<6} {out[side]['seconds']:>6.2f} s: {out[side]['outcome']}", flush=True)
    return out


def main(parts: list[str]) -> None:
    from model.runtime import configure_cpu

    settings = configure_cpu()
    chosen = parts or ["throughput", "memory", "queries", "hostile"]
    path = RESULTS / "atlas.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.update({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), **settings}})
    for part in chosen:
        print(f"\n{part}:", flush=True)
        results[part] = {"throughput": throughput, "memory": memory, "queries": queries, "hostile": hostile}[part]()
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_child"]:
        model, data, db, bs, every = sys.argv[2:7]
        print(json.dumps(child(model, data, db, int(bs), int(every))))
    else:
        main(sys.argv[1:])
