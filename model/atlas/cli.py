"""``python -m model.atlas``: every head's statistics over a corpus, into a DuckDB file, with a progress bar.

Every mistake is an ``error:`` line (exit 1), never a traceback; Ctrl-C keeps every finished batch (exit 130) and
the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .batch import DEFAULT_MAX_NEW, TOO_LONG
from .build import ENGINES, BuildRequest, Progress, build, describe, prepare
from .ray_engine import RayOptions

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.atlas",
        description="Run a model over a corpus and store every head's attention statistics per example in DuckDB "
                    "(resumable: the same command continues an interrupted build).")
    p.add_argument("--model", required=True, help="checkpoint directory (this project's or the Hugging Face layout), "
                                                   "or a hub id from the Hugging Face cache (org/name[@revision])")
    p.add_argument("--allow-download", action="store_true",
                   help="download a hub id the cache lacks first (as INSPECTOR_ALLOW_DOWNLOAD=1; never with "
                        "INSPECTOR_PUBLIC=1)")
    p.add_argument("--data", required=True, help="corpus: .txt (one example per line), .jsonl, .csv, .tsv, .parquet")
    p.add_argument("--db", required=True, help="DuckDB file to write (created if missing; other runs are kept)")
    p.add_argument("--field", default=None, help="the key or column holding the text (.jsonl/.csv/.parquet; "
                                                 "default: text)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per padded batch (default 8)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="the most tokens an example may have, special tokens included (default: the model's limit)")
    p.add_argument("--too-long", choices=TOO_LONG, default="cut",
                   help="a longer example: cut at the limit (default) or skip it; either is counted")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW,
                   help=f"encoder-decoder models: the longest greedy target (default {DEFAULT_MAX_NEW}, as in the "
                        "inspector)")
    p.add_argument("--qk-examples", type=int, default=100,
                   help="keep the q and k vectors of this many examples, spread over the corpus (0: none; "
                        "default 100)")
    p.add_argument("--qk-tokens", type=int, default=8, help="positions per example and axis with vectors (default 8)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="local (default) or ray (Ray Data)")
    p.add_argument("--ray-address", default=None,
                   help="Ray: 'auto' joins the running cluster, ray://host:10001 a remote one (default: start Ray "
                        "on this machine)")
    p.add_argument("--ray-workers", type=int, default=1, help="Ray: model replicas (default 1)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per replica (default 0)")
    p.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="Ray: CPUs per replica (default 1)")
    p.add_argument("--ray-parts", default=None,
                   help="Ray: folder for the Parquet parts, on storage every node sees (default: <db>.parts)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _request(args) -> BuildRequest:
    ray = RayOptions(address=args.ray_address, workers=max(1, args.ray_workers),
                     gpus_per_worker=args.ray_gpus_per_worker, cpus_per_worker=args.ray_cpus_per_worker,
                     parts=None if args.ray_parts is None else Path(args.ray_parts), progress_bars=not args.quiet)
    return BuildRequest(model=args.model, data=args.data, db=args.db, batch_size=args.batch_size, device=args.device,
                        field=args.field, max_tokens=args.max_tokens, too_long=args.too_long,
                        max_new_tokens=args.max_new_tokens, qk_examples=args.qk_examples, qk_tokens=args.qk_tokens,
                        engine=args.engine, ray=ray, allow_download=args.allow_download)


def _user_errors() -> tuple[type[BaseException], ...]:
    import duckdb

    from ..core.encoding import TokenizerError
    from ..safe.errors import CheckpointError
    from .identity import AtlasError
    from .records import CorpusError

    # ValueError: an unknown device; OSError: a full disk, a read-only folder; MemoryError: a model too big here
    return (CorpusError, AtlasError, CheckpointError, TokenizerError, duckdb.Error, ValueError, OSError, MemoryError)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ..hub import DownloadStopped, downloads_allowed

    offline = () if downloads_allowed(asked=args.allow_download) else ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    for name in ("HF_HUB_DISABLE_TELEMETRY", *offline):
        os.environ.setdefault(name, "1")  # nothing is downloaded unless asked for
    from tqdm import tqdm

    from ..runtime import configure_cpu

    configure_cpu()
    req = _request(args)
    errors = _user_errors()
    last: list[Progress] = []
    bar = None
    try:
        with tqdm(total=0, unit="B", unit_scale=True, desc="reading corpus", disable=args.quiet, leave=False,
                  file=sys.stderr, delay=1.0) as hashing:
            def on_hash(done: int, size: int) -> None:
                hashing.total = size
                hashing.update(done - hashing.n)
            prepared = prepare(req, on_hash)
        c, info = prepared.corpus, prepared.info
        print(f"model {req.model} ({info.model_family}, {info.model_arch}); corpus {req.data} ({c.format}"
              + (f", field {c.field!r}" if c.field else "") + f", {c.n_records:,} records); run {info.run_id} in "
              f"{req.db}", file=sys.stderr)

        def on_progress(p: Progress) -> None:
            nonlocal bar
            first = not last
            last.append(p)
            del last[:-1]
            if first and p.done and p.done < p.total:
                print(f"continuing: {p.done:,} of {p.total:,} records already stored", file=sys.stderr)
            if bar is None and (p.done >= p.total and not p.examples or req.engine == "ray"):
                return  # nothing left to do, or Ray Data draws its own progress
            if bar is None:
                bar = tqdm(total=p.total, initial=p.done, unit="ex", desc="atlas", disable=args.quiet,
                           dynamic_ncols=True, file=sys.stderr, smoothing=0.1)
            bar.update(p.done - bar.n)
            if p.skipped or p.cut:
                bar.set_postfix(skipped=p.skipped, cut=p.cut, refresh=False)
        row = build(req, on_progress, prepared)
    except DownloadStopped as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        stored = f"{last[-1].done:,} records stored" if last else "nothing new stored"
        print(f"interrupted: {stored} in {req.db}; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except errors as e:
        if bar is not None:
            bar.close()
        print(f"error: {str(e)[:1000]}", file=sys.stderr)
        return EXIT_ERROR
    if bar is not None:
        bar.close()
    if row["added"] == 0 and row["status"] == "finished" and not (last and last[-1].skipped):
        print(f"nothing to do: run {row['run_id']} already holds every record ({describe(row)})", file=sys.stderr)
        return 0
    rate = row["added"] / row["seconds"] if row["seconds"] > 0 else 0.0
    verb = "done" if row["status"] == "finished" else row["status"]
    print(f"{verb}: run {row['run_id']} in {req.db}: {describe(row)}; this build added {row['added']:,} examples in "
          f"{row['seconds']:.1f} s ({rate:.1f} examples/s)" + (f"; {row['message']}" if row["message"] else ""),
          file=sys.stderr)
    return 0 if row["status"] == "finished" else EXIT_ERROR


__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "main", "parser"]
