"""Train a checkpoint on a generated task or on your own TSV pairs.

    python -m model.train --task dates --out checkpoints/dates
    python -m model.train --data pairs.tsv --out checkpoints/mine

Teacher forcing (decoder input = [BOS] + target, label = target + [EOS]), cross-entropy that ignores [PAD],
one Adam optimizer over the whole model with the paper's schedule (linear warmup, then inverse square root decay;
scaled so its peak is --lr), gradient clipping, optional label smoothing. Validation: exact match of greedy
decoding (Pipeline.generate) on held-out pairs; the best checkpoint is kept.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import META_FILE, WEIGHTS_FILE, save_checkpoint
from .config import ModelConfig
from .inference import Pipeline, load, resolve_device
from .tasks import TASKS, Task, get_task
from .tokenizer import PAD_ID, TOKENIZER_KINDS, Tokenizer
from .transformer import Transformer

MIN_PAIRS = 10  # a --data file with fewer pairs than this is refused
EVAL_SEED_OFFSET = 7_777  # final evaluation pairs use seed + this: different from training and validation
VALID_SEED_OFFSET = 1_000_003


class TrainError(Exception):
    """A user mistake in the training inputs (bad TSV, too little data...); main() prints it, no traceback."""


@dataclass
class TrainArgs:
    """Everything one training run needs; mirrors the command-line options."""

    out: str
    task: str | None = None  # a name in TASKS, or None with data
    data: str | None = None  # a TSV file of source<TAB>target lines
    steps: int | None = None  # None: the task's default
    batch_size: int = 128
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    warmup: int = 200
    clip: float = 1.0  # max gradient norm
    label_smoothing: float = 0.0
    device: str = "cpu"
    threads: int | None = 1  # CPU threads for torch; 1 is fastest for these small models on a busy machine
    seed: int = 0
    d_model: int = 128
    n_heads: int = 4
    layers: int = 2  # encoder layers and decoder layers
    d_ff: int = 256
    dropout: float = 0.1
    max_len: int | None = None  # None: from the data (longest sequence + margin)
    src_kind: str = "word"  # tokenizer kinds for --data (tasks bring their own)
    tgt_kind: str = "char"
    eval_every: int = 250
    n_valid: int = 500
    n_eval: int = 1000  # fresh pairs scored at the end (generated tasks only)
    stop_at: float | None = None  # stop once validation exact match reaches this
    snapshots: list[int] = field(default_factory=list)  # steps at which to also save a small fp16 snapshot
    progress: bool = True


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read source<TAB>target lines; blank lines are skipped, anything else malformed is a TrainError."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TrainError(f"{path}: not UTF-8 text ({e})") from None
    pairs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            what = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise TrainError(f"{path}:{lineno}: expected one 'source<TAB>target' per line, found {what}")
        src, tgt = fields
        if not src.strip() or not tgt.strip():
            raise TrainError(f"{path}:{lineno}: empty {'source' if not src.strip() else 'target'}")
        pairs.append((src, tgt))
    if not pairs:
        raise TrainError(f"{path}: no pairs (the file is empty)")
    if len(pairs) < MIN_PAIRS:
        raise TrainError(f"{path}: only {len(pairs)} pairs; need at least {MIN_PAIRS} to train and validate")
    return pairs


def noam_lr(step: int, peak: float, warmup: int) -> float:
    """The paper's schedule d^-0.5 * min(s^-0.5, s * w^-1.5), rescaled so its value at s = warmup is ``peak``."""
    s, w = max(step, 1), max(warmup, 1)
    return peak * math.sqrt(w) * min(s ** -0.5, s * w ** -1.5)


def canonical(tokenizer: Tokenizer, text: str) -> str:
    """What a perfect model would output for ``text`` (e.g. a word tokenizer re-joins tokens with spaces)."""
    return tokenizer.decode(tokenizer.encode(text).ids)


def exact_match(pipe: Pipeline, pairs: list[tuple[str, str]], batch_size: int = 500) -> float:
    """Share of pairs whose greedy output equals the target, decoded in padded batches."""
    # a right answer needs no more tokens than the longest target (+ [EOS]): stop there, it is much faster
    limit = max(len(pipe.tgt_tokenizer.encode(t).ids) for _, t in pairs) + 1
    hits = 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i: i + batch_size]
        outs = pipe.generate([s for s, _ in chunk], max_new_tokens=limit)
        hits += sum(o == canonical(pipe.tgt_tokenizer, t) for o, (_, t) in zip(outs, chunk, strict=True))
    return hits / max(len(pairs), 1)


class PairSource:
    """Training pairs: fresh from a task generator, or sampled from a list.

    Generated validation pairs come from another seed. They are not removed from training: some tasks have tiny
    sub-spaces (the ten one-digit numbers) that the model must see, and their overlap says nothing about generalising.
    """

    def __init__(self, seed: int, task: Task | None = None, pairs: list[tuple[str, str]] | None = None):
        self.rng = random.Random(seed)
        self.task, self.pairs = task, pairs

    def batch(self, n: int) -> list[tuple[str, str]]:
        if self.pairs is not None:
            return [self.pairs[self.rng.randrange(len(self.pairs))] for _ in range(n)]
        return [self.task.make_pair(self.rng) for _ in range(n)]


def make_batch(pairs, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int, device):
    """-> src (B, S), decoder input [BOS]+target (B, T), labels target+[EOS] (B, T), padded with PAD_ID."""
    srcs = [src_tok.encode(s, max_len=max_len, eos=True).ids for s, _ in pairs]
    tgts = [tgt_tok.encode(t, max_len=max_len - 1).ids for _, t in pairs]
    dec_in = [[tgt_tok.hf.token_to_id("[BOS]")] + t for t in tgts]
    labels = [t + [tgt_tok.hf.token_to_id("[EOS]")] for t in tgts]

    def pad(rows):
        width = max(len(r) for r in rows)
        return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long, device=device)

    return pad(srcs), pad(dec_in), pad(labels)


def _config_summary(config: ModelConfig) -> str:
    return (f"d_model={config.d_model} heads={config.n_heads} layers={config.n_encoder_layers}+"
            f"{config.n_decoder_layers} d_ff={config.d_ff} max_len={config.max_len}")


def _size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and "snapshots" not in f.parts)


def _save_snapshot(out: Path, step: int, model: Transformer, src_tok, tgt_tok, meta: dict) -> None:
    """A float16 copy (half the bytes) in out/snapshots/step_XXXXX; loads like any checkpoint (as float32)."""
    half = copy.deepcopy(model).to("cpu").half()
    save_checkpoint(out / "snapshots" / f"step_{step:05d}", half, src_tok, tgt_tok, {**meta, "dtype": "float16"})


def train(args: TrainArgs) -> dict[str, Any]:
    """Run one training; returns the final meta (also written to <out>/meta.json)."""
    previous = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _train(args)
    finally:
        torch.set_num_threads(previous)  # the thread count is process-wide: leave it as we found it


def _train(args: TrainArgs) -> dict[str, Any]:
    if (args.task is None) == (args.data is None):
        raise TrainError("give exactly one of --task NAME or --data FILE")
    if args.d_model % args.n_heads:
        raise TrainError(f"--d-model ({args.d_model}) must be divisible by --n-heads ({args.n_heads})")
    for kind in (args.src_kind, args.tgt_kind):
        if kind not in TOKENIZER_KINDS:
            raise TrainError(f"tokenizer kind must be one of {TOKENIZER_KINDS}, got {kind!r}")
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise TrainError(str(e)) from None
    out = Path(args.out)
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    task = None
    if args.task is not None:
        try:
            task = get_task(args.task)
        except ValueError as e:
            raise TrainError(str(e)) from None
        steps = args.steps if args.steps is not None else task.defaults.get("steps", 3000)
        src_kind, tgt_kind = task.src_kind, task.tgt_kind
        valid = task.pairs(args.n_valid, args.seed + VALID_SEED_OFFSET)
        # tokenizers see every token the generator can emit, plus a large sample
        sample = task.pairs(20_000, args.seed + 1)
        src_texts = list(task.coverage) + [s for s, _ in sample]
        tgt_texts = list(task.coverage) + [t for _, t in sample]
        source = PairSource(args.seed, task=task)
    else:
        steps = args.steps if args.steps is not None else 2000
        src_kind, tgt_kind = args.src_kind, args.tgt_kind
        pairs = read_pairs(args.data)
        shuffled = pairs[:]
        random.Random(args.seed).shuffle(shuffled)
        n_valid = max(1, min(len(shuffled) // 10, args.n_valid))
        valid, train_pairs = shuffled[:n_valid], shuffled[n_valid:]
        src_texts, tgt_texts = [s for s, _ in pairs], [t for _, t in pairs]
        sample = pairs
        source = PairSource(args.seed, pairs=train_pairs)
    if steps < 1:
        raise TrainError(f"--steps must be >= 1, got {steps}")

    src_tok = Tokenizer.train(src_texts, kind=src_kind)
    tgt_tok = Tokenizer.train(tgt_texts, kind=tgt_kind)
    longest = max(max(len(src_tok.encode(s).ids), len(tgt_tok.encode(t).ids)) for s, t in sample + valid)
    max_len = args.max_len or max(32, longest + 8)
    config = ModelConfig(src_vocab_size=src_tok.vocab_size, tgt_vocab_size=tgt_tok.vocab_size,
                         d_model=args.d_model, n_heads=args.n_heads, n_encoder_layers=args.layers,
                         n_decoder_layers=args.layers, d_ff=args.d_ff, dropout=args.dropout, max_len=max_len)
    model = Transformer(config).to(device)
    n_params = model.num_parameters()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: noam_lr(s + 1, 1.0, args.warmup))

    base_meta = {
        "task": args.task or "custom", "data": args.data,
        "description": task.description if task else f"pairs from {args.data}",
        "seed": args.seed, "device": str(device), "parameters": n_params,
        "src_tokenizer": src_kind, "tgt_tokenizer": tgt_kind, "config_summary": _config_summary(config),
        "training": {"batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup, "clip": args.clip,
                     "label_smoothing": args.label_smoothing, "optimizer": "Adam(0.9, 0.98, 1e-9), paper schedule"},
        "n_valid": len(valid),
    }

    def validate() -> float:
        model.eval()
        try:
            return exact_match(Pipeline(config, model, src_tok, tgt_tok), valid)
        finally:
            model.train()

    best, best_step, em, first_loss = -1.0, 0, 0.0, None
    history = []
    snapshot_steps = set(args.snapshots)
    if 0 in snapshot_steps:
        _save_snapshot(out, 0, model, src_tok, tgt_tok, {**base_meta, "step": 0, "valid_exact_match": validate()})
    model.train()
    bar = tqdm(total=steps, disable=not args.progress, unit="step", dynamic_ncols=True, file=sys.stderr)
    n_tokens, t_last = 0, time.perf_counter()
    step = 0
    for step in range(1, steps + 1):
        src, dec_in, labels = make_batch(source.batch(args.batch_size), src_tok, tgt_tok, max_len, device)
        logits = model(src, dec_in).logits  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=PAD_ID,
                               label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        scheduler.step()

        if first_loss is None:
            first_loss = round(loss.item(), 4)
        real = labels != PAD_ID
        acc = ((logits.argmax(-1) == labels) & real).sum().item() / max(real.sum().item(), 1)
        n_tokens += int(real.sum())
        bar.update(1)
        if step % 10 == 0 or step == steps:
            now = time.perf_counter()
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}", tok_s=f"{n_tokens / (now - t_last):.0f}",
                            best_em=f"{max(best, 0):.3f}")
            n_tokens, t_last = 0, now

        evaluate_now = step % args.eval_every == 0 or step == steps
        if evaluate_now or step in snapshot_steps:
            em = validate()
        if step in snapshot_steps:
            _save_snapshot(out, step, model, src_tok, tgt_tok, {**base_meta, "step": step, "valid_exact_match": em})
        if evaluate_now:
            history.append({"step": step, "loss": round(loss.item(), 4), "valid_exact_match": em})
            tqdm.write(f"step {step}: loss {loss.item():.4f} token acc {acc:.3f} valid exact match {em:.4f}",
                       file=sys.stderr)
            if em > best:
                best, best_step = em, step
                meta = {**base_meta, "steps": step, "valid_exact_match": em,
                        "wall_time_s": round(time.perf_counter() - started, 1)}
                save_checkpoint(out, model, src_tok, tgt_tok, meta)
            if args.stop_at is not None and em >= args.stop_at:
                tqdm.write(f"validation exact match {em:.4f} >= {args.stop_at}: stopping at step {step}",
                           file=sys.stderr)
                break
    bar.close()
    wall = time.perf_counter() - started
    if snapshot_steps:  # the end of training, as a snapshot too
        _save_snapshot(out, step, model, src_tok, tgt_tok, {**base_meta, "step": step, "valid_exact_match": em})

    # final figures: the best checkpoint, reloaded, on fresh pairs from a seed used for nothing else
    meta = json.loads((out / META_FILE).read_text())
    meta.update({"steps_trained": step, "best_step": best_step, "wall_time_s": round(wall, 1),
                 "minutes": round(wall / 60, 2), "first_loss": first_loss, "history": history})
    if task is not None:
        eval_seed = args.seed + EVAL_SEED_OFFSET
        pipe = load(out, device=device)
        meta["eval"] = {"exact_match": exact_match(pipe, task.pairs(args.n_eval, eval_seed)),
                        "n_pairs": args.n_eval, "seed": eval_seed}
    meta["size_bytes"] = _size_bytes(out)
    meta["weights_bytes"] = (out / WEIGHTS_FILE).stat().st_size
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", choices=sorted(TASKS), help="a generated task")
    src.add_argument("--data", help="a TSV file: one 'source<TAB>target' per line")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    d = TrainArgs(out="")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the task's)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (end of warmup)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="warmup steps of the paper's schedule")
    p.add_argument("--clip", type=float, default=d.clip, help="max gradient norm")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or mps")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0: torch's default)")
    p.add_argument("--d-model", type=int, default=d.d_model)
    p.add_argument("--n-heads", type=int, default=d.n_heads)
    p.add_argument("--layers", type=int, default=d.layers, help="encoder layers = decoder layers")
    p.add_argument("--d-ff", type=int, default=d.d_ff)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--max-len", type=int, default=None, help="default: from the data")
    p.add_argument("--src-kind", choices=TOKENIZER_KINDS, default=d.src_kind, help="source tokenizer (--data)")
    p.add_argument("--tgt-kind", choices=TOKENIZER_KINDS, default=d.tgt_kind, help="target tokenizer (--data)")
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--n-valid", type=int, default=d.n_valid, help="held-out validation pairs")
    p.add_argument("--n-eval", type=int, default=d.n_eval, help="fresh pairs scored at the end")
    p.add_argument("--stop-at", type=float, default=None, help="stop when validation exact match reaches this")
    p.add_argument("--snapshots", default="", help="comma-separated steps to save fp16 snapshots at, e.g. 0,100,500")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        snapshots = [int(s) for s in ns.snapshots.split(",") if s.strip()]
    except ValueError:
        print(f"error: --snapshots must be comma-separated integers, got {ns.snapshots!r}", file=sys.stderr)
        return 2
    args = TrainArgs(out=ns.out, task=ns.task, data=ns.data, steps=ns.steps, batch_size=ns.batch_size, lr=ns.lr,
                     warmup=ns.warmup, clip=ns.clip, label_smoothing=ns.label_smoothing, device=ns.device,
                     threads=ns.threads, seed=ns.seed, d_model=ns.d_model, n_heads=ns.n_heads, layers=ns.layers,
                     d_ff=ns.d_ff,
                     dropout=ns.dropout, max_len=ns.max_len, src_kind=ns.src_kind, tgt_kind=ns.tgt_kind,
                     eval_every=ns.eval_every, n_valid=ns.n_valid, n_eval=ns.n_eval, stop_at=ns.stop_at,
                     snapshots=snapshots, progress=not ns.quiet)
    try:
        meta = train(args)
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ev = meta.get("eval", {}).get("exact_match")
    print(f"saved {args.out}: best validation exact match {meta['valid_exact_match']:.4f} at step "
          f"{meta['best_step']}" + (f", fresh-pair exact match {ev:.4f}" if ev is not None else "")
          + f", {meta['minutes']} min, {meta['parameters']} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
