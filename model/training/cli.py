"""The training command line: ``python -m model.train``. Every bad option is an ``error:`` line, never a traceback.

    python -m model.train --task dates --out checkpoints/dates
    python -m model.train --task induction --out checkpoints/induction --snapshots 0,50,100
    python -m model.train --task shapes --out checkpoints/shapes                    # a vision transformer (images)
    python -m model.train --data pairs.tsv --out checkpoints/mine                  # source<TAB>target per line
    python -m model.train --arch decoder-only --data texts.txt --out checkpoints/lm  # one text per line
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from ..own.config import NORM_PLACEMENTS, TRANSFORMER_ARCHS
from ..own.tokenizer import TOKEN_LEVELS
from .data import TrainError
from .loop import SCHEDULES, train
from .params import HyperParams, TrainArgs
from .tasks import TASKS


def _int(minimum: int, maximum: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    return parse


def _float(low: float, high: float, low_open: bool = False, high_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low) and \
            (value < high if high_open else value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(
                f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", choices=sorted(TASKS), help="a generated task")
    src.add_argument("--data", help="your data: 'source<TAB>target' per line (decoder-only: one text per line)")
    p.add_argument("--out", required=True, help="checkpoint directory to write (replaced only when training ends)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it holds a checkpoint of another task, or is not a checkpoint")
    p.add_argument("--arch", choices=TRANSFORMER_ARCHS, default=None, help="with --data (tasks bring their own)")
    p.add_argument("--steps", type=_int(1, 10_000_000), default=None, help="optimizer steps (default: the task's)")
    p.add_argument("--batch-size", type=_int(1, 65_536), default=None, help=f"default {HyperParams.batch_size}")
    p.add_argument("--lr", type=_float(0.0, 10.0, low_open=True), default=None, help="peak learning rate")
    p.add_argument("--warmup", type=_int(0), default=None, help="warm-up steps")
    p.add_argument("--schedule", choices=SCHEDULES, default=None, help="after warm-up: the paper's 1/sqrt decay "
                   "(noam) or constant")
    p.add_argument("--clip", type=_float(0.0, 1e6, low_open=True), default=None,
                   help=f"max gradient norm (default {HyperParams.clip})")
    p.add_argument("--label-smoothing", type=_float(0.0, 1.0), default=None,
                   help=f"default {HyperParams.label_smoothing}")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps")
    p.add_argument("--seed", type=_int(0), default=0)
    p.add_argument("--threads", type=_int(0, 1024), default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--d-model", type=_int(1, 16_384), default=None)
    p.add_argument("--n-heads", type=_int(1, 256), default=None)
    p.add_argument("--layers", type=_int(1, 256), default=None, help="encoder layers = decoder layers")
    p.add_argument("--d-ff", type=_int(0, 65_536), default=None, help="feed-forward width; 0 = attention-only")
    p.add_argument("--dropout", type=_float(0.0, 1.0), default=None)
    p.add_argument("--norm", choices=NORM_PLACEMENTS, default=None, help="LayerNorm after (paper) or before")
    p.add_argument("--max-len", type=_int(4, 65_536), default=None, help="default: from the data")
    p.add_argument("--patch-size", type=_int(1, 1_024), default=None,
                   help=f"image tasks: pixels per patch side (default {HyperParams.patch_size})")
    p.add_argument("--src-level", choices=TOKEN_LEVELS, default="word", help="source tokenizer (--data)")
    p.add_argument("--tgt-level", choices=TOKEN_LEVELS, default="char", help="target tokenizer (--data)")
    p.add_argument("--eval-every", type=_int(1), default=None, help=f"default {HyperParams.eval_every}")
    p.add_argument("--n-valid", type=_int(1, 100_000), default=500, help="held-out validation examples")
    p.add_argument("--n-eval", type=_int(1, 1_000_000), default=1000, help="fresh examples scored at the end")
    p.add_argument("--stop-at", type=_float(0.0, 1.0, high_open=False), default=None,
                   help="stop when validation exact match reaches this")
    p.add_argument("--snapshots", default="", help="comma-separated steps to save fp16 snapshots at, e.g. 0,100,500")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        snapshots = sorted({int(s) for s in ns.snapshots.split(",") if s.strip()})
    except ValueError:
        print(f"error: --snapshots must be comma-separated integers, got {ns.snapshots!r}", file=sys.stderr)
        return 2
    if any(s < 0 for s in snapshots) or len(snapshots) > 1000:
        print("error: --snapshots must be at most 1000 steps >= 0", file=sys.stderr)
        return 2
    given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainArgs) if hasattr(ns, f.name)}
    args = TrainArgs(**{**given, "snapshots": snapshots, "progress": not ns.quiet})
    try:
        meta = train(args)
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # what the machine refused outside training itself
        print(f"error: {e.strerror or e}" + (f" ({e.filename})" if e.filename else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    ev = meta.get("eval", {})
    if "accuracy" in ev:
        head = ev["best_head"]
        figure = (f"best validation accuracy {meta['valid_accuracy']:.4f} at step {meta['best_step']}, accuracy on "
                  f"{ev['n_images']} fresh images {ev['accuracy']:.4f}; {head['name']} head {head['head']} puts "
                  f"{head['share']:.0%} of [CLS]'s attention on the {ev['target']} object")
    elif "exact_match" in ev:
        figure = f"best validation exact match {meta['valid_exact_match']:.4f} at step {meta['best_step']}, " \
                 f"fresh-pair exact match {ev['exact_match']:.4f}"
    elif "best_induction_last_layer" in ev:
        figure = (f"fresh sequences: loss {ev['loss_first']} on first occurrences vs {ev['loss_repeated']} on "
                  f"repetitions, best induction score {ev['best_induction_last_layer']}, best previous-token score "
                  f"{ev['best_prev_token_first_layer']}")
    else:
        figure = f"best validation {'loss ' + str(meta.get('valid_loss')) if 'valid_loss' in meta else ''}"
    print(f"saved {args.out}: {figure}, {meta['minutes']} min, {meta['parameters']} parameters")
    return 0
