"""Building an atlas, for the command and the app alike: check the corpus, load the model, find or create the run,
run an engine, and say how it ended in the runs table."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..load import load
from .batch import DEFAULT_MAX_NEW, AtlasOptions, BatchRows, QKSample, head_rows
from .corpus import Corpus, open_corpus
from .identity import AtlasError, model_hash, run_id
from .local import run_local
from .ray_engine import RayOptions, run_ray
from .store import AtlasStore, RunInfo

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BuildRequest:
    """What to build: ``python -m model.atlas``'s options."""

    model: str  # a checkpoint directory (this project's or the Hugging Face layout), or a hub id from the cache
    data: str  # the corpus file
    db: str  # the DuckDB file (created when missing; other runs in it are kept)
    batch_size: int = 8
    device: str = "auto"
    field: str | None = None  # .jsonl / .csv / .parquet: the key or column holding the text (default "text")
    max_tokens: int | None = None
    too_long: str = "cut"
    max_new_tokens: int = DEFAULT_MAX_NEW
    qk_examples: int = 100  # examples whose q and k vectors are kept (0: none)
    qk_tokens: int = 8  # positions per example and axis
    engine: str = "local"
    ray: RayOptions = dataclasses.field(default_factory=RayOptions)
    allow_download: bool = False  # a hub id the cache lacks may be downloaded first (never on a public server)


@dataclass(frozen=True)
class Progress:
    """Where a build stands, after each batch."""

    done: int  # records handled (stored as examples or skips), this build and earlier ones
    total: int  # records in the corpus
    examples: int  # added by this build
    skipped: int
    cut: int
    seconds: float  # since this build started

    @property
    def rate(self) -> float:
        """Examples (and skips) per second in this build."""
        return (self.examples + self.skipped) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Prepared:
    """A build ready to run: the checked corpus, the loaded model, the options, the run's identity."""

    corpus: Corpus
    pipe: object
    options: AtlasOptions
    info: RunInfo
    model_dir: str = ""  # the directory the model was loaded from (a hub id's snapshot in the cache)


def model_location(model: str, allow_download: bool = False) -> tuple[str, str]:
    """--model -> (the directory to load, the name the runs table keeps): a directory by its resolved path; a hub id
    (``org/name[@revision]``) by its snapshot in the Hugging Face cache and its id (downloaded first when allowed)."""
    from ..hub import locate_or_download, looks_like_hub_id

    if Path(model).is_dir() or not looks_like_hub_id(model):
        return model, str(Path(model).resolve())
    where = locate_or_download(model, allow_download=allow_download)
    return str(where.path), where.name or str(where.path)


def prepare(req: BuildRequest, on_hash: Callable[[int, int], None] | None = None) -> Prepared:
    """Every check before anything is written: options, corpus (read and hashed), model (loaded and hashed)."""
    if req.batch_size < 1:
        raise AtlasError("--batch-size must be at least 1")
    if req.engine not in ENGINES:
        raise AtlasError(f"--engine must be one of {ENGINES}, got {req.engine!r}")
    if req.max_new_tokens < 1:
        raise AtlasError("--max-new-tokens must be at least 1")
    db = Path(req.db)
    if db.suffix.lower() not in (".duckdb", ".db"):
        raise AtlasError(f"{db}: the database file should end in .duckdb")
    if not db.parent.is_dir():
        raise AtlasError(f"{db}: the folder {db.parent} does not exist")
    if db.exists() and Path(req.data).exists() and db.resolve() == Path(req.data).resolve():
        raise AtlasError(f"{db}: the database cannot be the corpus file")
    corpus = open_corpus(req.data, req.field, progress=on_hash)
    try:
        options = AtlasOptions(max_tokens=req.max_tokens, too_long=req.too_long, max_new_tokens=req.max_new_tokens,
                               qk=QKSample.over(corpus.n_records, req.qk_examples, req.qk_tokens))
    except ValueError as e:
        raise AtlasError(str(e)) from None
    # the Ray engine's workers load the model on req.device; the driver only checks it (on a CPU-only head node too)
    model_dir, model_name = model_location(req.model, req.allow_download)
    pipe = load(model_dir, "cpu" if req.engine == "ray" else req.device)
    mhash = model_hash(model_dir)
    identity = {"options": options.identity(), "field": corpus.field}
    rid = run_id(mhash, corpus.sha256, identity)
    device = req.device if req.engine == "ray" else str(pipe.device)
    session = {"batch_size": req.batch_size, "device": device, "engine": req.engine}
    info = RunInfo(run_id=rid, model_path=model_name, model_hash=mhash,
                   model_family=pipe.info.family, model_arch=pipe.arch, n_heads=pipe.info.n_heads,
                   corpus_path=str(Path(req.data).resolve()), corpus_hash=corpus.sha256,
                   corpus_format=corpus.format, field=corpus.field,
                   options=json.dumps({**identity["options"], "session": session}), n_records=corpus.n_records)
    return Prepared(corpus=corpus, pipe=pipe, options=options, info=info, model_dir=model_dir)


def build(req: BuildRequest, progress: Callable[[Progress], None] | None = None,
          prepared: Prepared | None = None) -> dict:
    """Build (or continue) the run that ``req`` names -> its row of the runs table. Ctrl-C (KeyboardInterrupt, or
    any BaseException that stops it) keeps every finished batch, marks the run interrupted and is raised again; an
    error marks it failed."""
    p = prepared or prepare(req)
    started = time.perf_counter()
    with AtlasStore(req.db) as store:
        state = store.start(p.info, head_rows(p.pipe))
        before = store.run(state.run_id)
        counts = {"examples": 0, "skipped": 0, "cut": 0}
        done0 = len(state.done)

        def on_batch(rows: BatchRows) -> None:
            counts["examples"] += rows.examples.num_rows
            counts["skipped"] += rows.skips.num_rows
            counts["cut"] += sum(rows.examples.column("cut").to_pylist())
            if progress is not None:
                progress(Progress(done=done0 + counts["examples"] + counts["skipped"], total=p.corpus.n_records,
                                  seconds=time.perf_counter() - started, **counts))

        if progress is not None:
            progress(Progress(done=done0, total=p.corpus.n_records, examples=0, skipped=0, cut=0, seconds=0.0))
        message = ""
        try:
            if req.engine == "local":
                run_local(p.pipe, p.corpus, store, state, p.options, req.batch_size, on_batch)
            else:
                _, bad = run_ray(p.model_dir or req.model, req.device, p.corpus, store, state, p.options,
                                 req.batch_size, req.ray)
                now_row = store.run(state.run_id)
                counts.update({k: now_row[f"n_{k}"] - before[f"n_{k}"] for k in ("examples", "skipped", "cut")})
                if progress is not None:
                    progress(Progress(done=now_row["n_examples"] + now_row["n_skipped"], total=p.corpus.n_records,
                                      seconds=time.perf_counter() - started, **counts))
                if bad:
                    message = f"{len(bad)} Parquet part(s) could not be read: {bad[0]}"
        except Exception as e:
            store.finish(state.run_id, "failed", f"{type(e).__name__}: {e}")
            raise
        except BaseException:  # Ctrl-C, or the app's script stopped by a rerun: every finished batch is kept
            store.finish(state.run_id, "interrupted", "interrupted: run the same command to continue")
            raise
        status = "finished" if not message else "interrupted"
        row = store.finish(state.run_id, status, message)
    row["seconds"] = time.perf_counter() - started
    row["added"] = row["n_examples"] - before["n_examples"]
    return row


def describe(row: dict) -> str:
    """A run's counts in words: "9,812 examples (38 cut to the token limit), 188 skipped (empty: 150, ...)"."""
    skipped = ", ".join(f"{k}: {v:,}" for k, v in sorted(row["skipped"].items(), key=lambda kv: -kv[1]))
    text = f"{row['n_examples']:,} examples"
    if row.get("n_cut"):
        text += f" ({row['n_cut']:,} cut to the token limit)"
    text += f", {row['n_skipped']:,} skipped" + (f" ({skipped})" if skipped else "")
    return text


__all__ = ["BuildRequest", "ENGINES", "Prepared", "Progress", "build", "describe", "prepare"]
