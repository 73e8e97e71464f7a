"""The shipped example atlas, so that the Corpus atlas page opens on something: ``python -m model.atlas.example``
writes a corpus of dates made by the project's own generator (model.training.tasks, a fixed seed) and builds the
shipped dates model's atlas of it, through the same build as ``python -m model.atlas``, into
examples/atlas/example-dates.duckdb (the page lists it after the databases of $INSPECTOR_ATLASES).

Run it again after retraining checkpoints/dates or changing what an atlas holds; tests/test_atlas.py checks that
the shipped file is the run this builds (its run id, and a sample of its rows computed again).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "examples" / "atlas"  # shipped with the code (not $INSPECTOR_ATLASES: that one is the user's)
DATABASE = FOLDER / "example-dates.duckdb"  # its own name: the page lists databases by file name
CORPUS = FOLDER / "example-dates.txt"
MODEL = ROOT / "checkpoints" / "dates"
MODEL_NAME = "dates"  # the run names its model as the model picker does: its links open it on any server
N_EXAMPLES = 256
SEED = 2026
BATCH_SIZE = 16
QK_EXAMPLES = 32  # examples whose q and k vectors are kept (the projection): most of the file


def corpus_text(n: int = N_EXAMPLES, seed: int = SEED) -> str:
    """``n`` dates as people write them (the dates task's forms and cases), one per line."""
    from ..training.tasks import get_task

    return "".join(source + "\n" for source, _ in get_task("dates").pairs(n, seed=seed))


def build_example(folder: Path = FOLDER, model: Path = MODEL, n: int = N_EXAMPLES, quiet: bool = True) -> dict:
    """Write the corpus and build its atlas afresh in ``folder`` -> the run's row (model.atlas.build.build)."""
    from ..runtime import configure_cpu
    from .build import BuildRequest, build
    from .store import AtlasStore

    configure_cpu()
    folder.mkdir(parents=True, exist_ok=True)
    corpus, db = folder / CORPUS.name, folder / DATABASE.name
    corpus.write_text(corpus_text(n), encoding="utf-8")
    for stale in (db, Path(f"{db}.wal")):
        stale.unlink(missing_ok=True)
    row = build(BuildRequest(model=str(model), data=str(corpus), db=str(db), batch_size=BATCH_SIZE, device="cpu",
                            qk_examples=QK_EXAMPLES))
    with AtlasStore(db) as store:  # this machine's absolute paths would mean nothing where the file is shipped
        store.con.execute("UPDATE runs SET model_path = ?, corpus_path = ?",
                          [MODEL_NAME, str(corpus.relative_to(ROOT) if corpus.is_relative_to(ROOT) else corpus.name)])
        store.con.execute("CHECKPOINT")
    if not quiet:
        print(f"{db}: run {row['run_id']}, {row['n_examples']:,} examples, {db.stat().st_size / 2**20:.1f} MiB",
              file=sys.stderr)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.atlas.example", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=FOLDER, help=f"folder to write into (default {FOLDER})")
    args = p.parse_args(argv)
    build_example(args.out, quiet=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
