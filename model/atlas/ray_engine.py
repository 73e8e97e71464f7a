"""The Ray Data engine: Ray reads the corpus (one read task per shard, with the same reader as the local engine),
``map_batches`` runs the same per-batch function on workers that each load the model once, and the rows are
written as Parquet; DuckDB then reads those files into the same tables.

Ray is optional (``pip install -r requirements-ray.txt``). Without ``address`` a Ray instance is started on this
machine; with ``address="auto"`` (or ``ray://host:10001``) the job joins a running cluster, whose nodes must see the
model, the corpus and the parts folder at the same paths (a shared file system) and this checkout at the same path.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batch import AtlasOptions, atlas_batch
from .corpus import Corpus
from .identity import AtlasError
from .records import Record
from .store import AtlasStore, RunState

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start Ray here; "auto": the running cluster; "ray://host:10001": a remote one
    workers: int = 1  # model replicas (actors), each loading the model once
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    parts: Path | None = None  # where the Parquet parts go (default: beside the database, <db>.parts/<run_id>)
    progress_bars: bool = True


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise AtlasError("the Ray engine needs Ray: pip install -r requirements-ray.txt") from None
    return ray


def read_shard(row: dict, corpus: Corpus, done: np.ndarray):
    """One shard's records not stored yet, as rows (a Ray read task)."""
    shard = corpus.shards[int(row["shard"])]
    for r in corpus.records(shard):
        i = np.searchsorted(done, r.example_id)
        if i < len(done) and done[i] == r.example_id:
            continue
        yield {"example_id": r.example_id, "text": r.text or "", "skip": r.skip, "detail": r.detail}


class AtlasWorker:
    """A Ray actor holding the model: record rows in, the per-batch function's rows out (the union schema)."""

    def __init__(self, model_path: str, device: str, options: dict, run_id: str):
        import os

        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
            os.environ.setdefault(name, "1")
        from ..load import load
        from ..runtime import configure_cpu

        configure_cpu()
        self.pipe = load(model_path, device)
        self.options = AtlasOptions.from_identity(options)
        self.run_id = run_id

    def __call__(self, batch):
        ids = batch.column("example_id").to_pylist()
        texts = batch.column("text").to_pylist()
        skips = batch.column("skip").to_pylist()
        details = batch.column("detail").to_pylist()
        records = [Record(i, None if s else t, s, d) for i, t, s, d in zip(ids, texts, skips, details, strict=True)]
        return atlas_batch(self.pipe, records, self.options).to_parts(self.run_id)


def parts_dir(store: AtlasStore, run_id: str, ray_options: RayOptions) -> Path:
    base = ray_options.parts if ray_options.parts is not None else Path(f"{store.path}.parts")
    return base / run_id


def ingest_leftovers(store: AtlasStore, run_id: str, folder: Path) -> tuple[int, list[str]]:
    """Parquet parts an interrupted Ray build left behind: read into the tables (rows already there are kept as they
    are), then removed."""
    files = sorted(folder.glob("*/*.parquet")) if folder.is_dir() else []
    added, bad = store.ingest_parts(run_id, files) if files else (0, [])
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # <db>.parts, when no other run left parts there
    return added, bad


def run_ray(model_path: str, device: str, corpus: Corpus, store: AtlasStore, state: RunState, options: AtlasOptions,
            batch_size: int, ray_options: RayOptions = RayOptions()) -> tuple[int, list[str]]:
    """The records ``state`` does not hold, through Ray Data into Parquet, then into the database ->
    (records added, Parquet files that could not be read)."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        env = {"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}}
        ray.init(address=ray_options.address, runtime_env=env, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, ignore_reinit_error=True)
    folder = parts_dir(store, state.run_id, ray_options)
    session = folder / uuid.uuid4().hex[:12]
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = ray_options.progress_bars
        done = np.array(sorted(state.done), dtype=np.int64)
        ds = ray.data.from_items([{"shard": i} for i in range(len(corpus.shards))],
                                 override_num_blocks=max(1, len(corpus.shards)))
        ds = ds.flat_map(read_shard, fn_kwargs={"corpus": corpus, "done": done})
        ds = ds.map_batches(AtlasWorker, fn_constructor_kwargs={
            "model_path": model_path, "device": device, "options": options.identity(), "run_id": state.run_id},
            batch_size=batch_size, batch_format="pyarrow", concurrency=ray_options.workers,
            num_gpus=ray_options.gpus_per_worker or None, num_cpus=ray_options.cpus_per_worker)
        try:
            ds.write_parquet(str(session))
        finally:  # interrupted or not: what was written is read in (a file cut short is reported and dropped)
            result = ingest_leftovers(store, state.run_id, folder)
    finally:
        if started_here:
            ray.shutdown()
    return result


__all__ = ["AtlasWorker", "RayOptions", "import_ray", "ingest_leftovers", "parts_dir", "read_shard", "run_ray"]
