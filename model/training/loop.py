"""The training loop: a generated task or your own data, encoder-decoder or decoder-only.

Teacher forcing (decoder input = [BOS] + target, label = target + [EOS]; a decoder-only model reads [BOS] + text
and predicts text + [EOS]), cross-entropy that ignores [PAD], one Adam optimizer over the whole model with the
paper's schedule (linear warm-up, then inverse square root decay; scaled so its peak is --lr) or a constant rate
after warm-up, gradient clipping, optional label smoothing. Validation: exact match of greedy decoding on held-out
pairs (encoder-decoder), or held-out loss (decoder-only, with induction scores for the induction task); the best
checkpoint is kept. Output goes to a staging directory and is renamed into place at the end.
"""

from __future__ import annotations

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

from ..load import TransformerPipeline, load, resolve_device
from ..own.checkpoint import META_FILE, WEIGHTS_FILE, expected_shapes, save_checkpoint
from ..own.config import ModelConfig
from ..own.tokenizer import PAD_ID, TOKEN_LEVELS, Tokenizer
from ..own.transformer import Transformer
from ..safe.memory import max_model_bytes
from .data import (
    PairSource,
    TrainError,
    data_digest,
    exact_match,
    make_batch,
    make_text_batch,
    read_pairs,
    read_texts,
)
from .metrics import induction_report
from .output import StagedOutput
from .tasks import Task, get_task

EVAL_SEED_OFFSET = 7_777  # final evaluation examples use seed + this: different from training and validation
VALID_SEED_OFFSET = 1_000_003
MAX_AUTO_LEN = 1_024  # the longest max_len chosen from the data (a longer one must be asked for)
# What a run uses when neither the command line nor the task says otherwise.
DEFAULTS = dict(batch_size=128, lr=1e-3, warmup=200, d_model=128, n_heads=4, layers=2, d_ff=256, dropout=0.1,
                eval_every=250, norm="post", schedule="noam")
SCHEDULES = ("noam", "constant")
TRAINING_BYTES_PER_PARAMETER = 16  # float32 weights, gradients and Adam's two moments


@dataclass
class TrainArgs:
    """Everything one training run needs; mirrors the command-line options (None = the task's or DEFAULTS)."""

    out: str
    task: str | None = None  # a name in TASKS, or None with data
    data: str | None = None  # a TSV file of source<TAB>target lines (decoder-only: one text per line)
    steps: int | None = None  # None: the task's default
    batch_size: int | None = None
    lr: float | None = None  # peak learning rate, reached at the end of warmup
    warmup: int | None = None
    clip: float = 1.0  # max gradient norm
    label_smoothing: float = 0.0
    device: str = "cpu"
    threads: int | None = 1  # CPU threads for torch; 1 is fastest for these small models on a busy machine
    seed: int = 0
    d_model: int | None = None
    n_heads: int | None = None
    layers: int | None = None  # encoder layers = decoder layers (decoder-only: decoder layers)
    d_ff: int | None = None  # 0 = attention-only
    dropout: float | None = None
    max_len: int | None = None  # None: from the data (longest sequence + margin)
    src_level: str = "word"  # tokenizer levels ("word" or "char") for --data (tasks bring their own)
    tgt_level: str = "char"
    eval_every: int | None = None
    n_valid: int = 500
    n_eval: int = 1000  # fresh examples scored at the end (generated tasks only)
    stop_at: float | None = None  # stop once validation exact match reaches this (encoder-decoder)
    snapshots: list[int] = field(default_factory=list)  # steps at which to also save a small fp16 snapshot
    progress: bool = True
    arch: str | None = None  # "encoder-decoder" or "decoder-only"; None: the task's
    norm: str | None = None  # "post" (paper) or "pre"
    schedule: str | None = None  # "noam" (paper) or "constant" after warm-up
    overwrite: bool = False  # replace an --out directory that holds something else


def noam_lr(step: int, peak: float, warmup: int) -> float:
    """The paper's schedule d^-0.5 * min(s^-0.5, s * w^-1.5), rescaled so its value at s = warmup is ``peak``."""
    s, w = max(step, 1), max(warmup, 1)
    return peak * math.sqrt(w) * min(s ** -0.5, s * w ** -1.5)


def constant_lr(step: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak``, then constant."""
    return peak * min(1.0, max(step, 1) / max(warmup, 1))


def _config_summary(config: ModelConfig) -> str:
    layers = (f"{config.n_decoder_layers} decoder" if config.decoder_only
              else f"{config.n_encoder_layers}+{config.n_decoder_layers}")
    return (f"{config.arch} d_model={config.d_model} heads={config.n_heads} layers={layers} "
            f"d_ff={config.d_ff or 'none (attention-only)'} max_len={config.max_len}")


def _size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and "snapshots" not in f.parts)


def _save_snapshot(out: Path, step: int, model: Transformer, src_tok, tgt_tok, meta: dict) -> None:
    """A float16 copy (half the bytes) in out/snapshots/step_XXXXX; loads like any checkpoint (as float32)."""
    half = copy.deepcopy(model).to("cpu").half()
    save_checkpoint(out / "snapshots" / f"step_{step:05d}", half, src_tok, tgt_tok, {**meta, "dtype": "float16"})


def resolved(args: TrainArgs, task: Task | None) -> dict[str, Any]:
    """Each hyper-parameter: the command line's, else the task's default, else DEFAULTS."""
    task_defaults = task.defaults if task else {}
    out = {}
    for key, default in DEFAULTS.items():
        given = getattr(args, key)
        out[key] = given if given is not None else task_defaults.get(key, default)
    out["arch"] = args.arch or (task.arch if task else "encoder-decoder")
    out["max_len"] = args.max_len if args.max_len is not None else task_defaults.get("max_len")
    out["steps"] = args.steps if args.steps is not None else (task_defaults.get("steps", 3000) if task else 2000)
    return out


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
    task = None
    if args.task is not None:
        try:
            task = get_task(args.task)
        except ValueError as e:
            raise TrainError(str(e)) from None
    hp = resolved(args, task)
    if task is not None and args.arch is not None and args.arch != task.arch:
        raise TrainError(f"task {task.name!r} is {task.arch}; --arch {args.arch} does not apply")
    decoder_only = hp["arch"] == "decoder-only"
    if hp["d_model"] % hp["n_heads"]:
        raise TrainError(f"--d-model ({hp['d_model']}) must be divisible by --n-heads ({hp['n_heads']})")
    for level in (args.src_level, args.tgt_level):
        if level not in TOKEN_LEVELS:
            raise TrainError(f"tokenizer level must be one of {TOKEN_LEVELS}, got {level!r}")
    if decoder_only and args.stop_at is not None:
        raise TrainError("--stop-at applies to the exact match of encoder-decoder tasks")
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise TrainError(str(e)) from None
    if hp["steps"] < 1:
        raise TrainError(f"--steps must be >= 1, got {hp['steps']}")
    data_sha256 = data_digest(args.data) if args.data is not None else None
    arch = {"arch": hp["arch"], "d_model": hp["d_model"], "n_heads": hp["n_heads"],
            "n_encoder_layers": 0 if decoder_only else hp["layers"], "n_decoder_layers": hp["layers"],
            "d_ff": hp["d_ff"], "norm": hp["norm"]}
    output = StagedOutput(args.out, args.task or "custom", overwrite=args.overwrite, data_sha256=data_sha256,
                          arch=arch, data=args.data)
    out = output.staging
    try:
        meta = _run(args, task, hp, decoder_only, device, out, data_sha256)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} is untouched; this run's partial output (best checkpoint so far and "
              f"snapshots) is in {out} (removed by the next run into {args.out})", file=sys.stderr)
        raise
    except BaseException as e:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        problem = _system_problem(e)
        if problem:
            raise TrainError(f"{problem}; {args.out} is untouched") from None
        raise
    try:
        output.commit()
    except OSError as e:
        raise TrainError(f"cannot put the checkpoint in place at {args.out} ({e.strerror or e}); it is in "
                         f"{out}") from None
    return meta


def _system_problem(e: BaseException) -> str | None:
    """A message for what the machine refused (memory, disk, permissions), None for anything else."""
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
            isinstance(e, RuntimeError) and "can't allocate memory" in str(e)):
        return ("out of memory: the model or a batch does not fit this machine (try a smaller --d-model, --layers, "
                "--d-ff or --batch-size)")
    if isinstance(e, OSError):
        where = f" writing {e.filename}" if e.filename else ""
        return f"{e.strerror or type(e).__name__}{where}"
    return None


def _run(args: TrainArgs, task: Task | None, hp: dict, decoder_only: bool, device, out: Path,
         data_sha256: str | None = None) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    sequences_valid = None
    if task is not None:
        src_level, tgt_level = task.src_level, task.tgt_level
        valid = task.pairs(args.n_valid, args.seed + VALID_SEED_OFFSET)
        if decoder_only:
            sequences_valid = task.sequences(args.n_valid, args.seed + VALID_SEED_OFFSET)
        # tokenizers see every token the generator can emit, plus a large sample
        sample = task.pairs(20_000, args.seed + 1)
        src_texts = list(task.coverage) + [s for s, _ in sample]
        tgt_texts = list(task.coverage) + [t for _, t in sample]
        source = PairSource(args.seed, task=task)
    else:
        src_level, tgt_level = args.src_level, (args.src_level if decoder_only else args.tgt_level)
        pairs = [(t, "") for t in read_texts(args.data)] if decoder_only else read_pairs(args.data)
        shuffled = pairs[:]
        random.Random(args.seed).shuffle(shuffled)
        n_valid = max(1, min(len(shuffled) // 10, args.n_valid))
        valid, train_pairs = shuffled[:n_valid], shuffled[n_valid:]
        src_texts, tgt_texts = [s for s, _ in pairs], [t for _, t in pairs]
        sample = pairs
        source = PairSource(args.seed, pairs=train_pairs)

    src_tok = Tokenizer.train(src_texts, level=src_level)
    tgt_tok = src_tok if decoder_only else Tokenizer.train(tgt_texts, level=tgt_level)
    longest = max(max(len(src_tok.tokenize(s).ids), len(tgt_tok.tokenize(t).ids)) for s, t in sample + valid)
    max_len = hp["max_len"] or max(32, longest + 8)
    if max_len < longest + 2:
        raise TrainError(f"--max-len {max_len} is too short: the data has sequences of {longest} tokens (+ 2 specials)")
    if max_len > MAX_AUTO_LEN and hp["max_len"] is None:
        raise TrainError(f"the data has sequences of {longest} tokens; pass --max-len to train on more than "
                         f"{MAX_AUTO_LEN}")
    config = ModelConfig(src_vocab_size=src_tok.vocab_size, tgt_vocab_size=tgt_tok.vocab_size,
                         d_model=hp["d_model"], n_heads=hp["n_heads"],
                         n_encoder_layers=0 if decoder_only else hp["layers"], n_decoder_layers=hp["layers"],
                         d_ff=hp["d_ff"], dropout=hp["dropout"], max_len=max_len, norm=hp["norm"],
                         arch=hp["arch"])
    n_expected = sum(math.prod(s) for s in expected_shapes(config).values())
    if n_expected * TRAINING_BYTES_PER_PARAMETER > max_model_bytes():
        raise TrainError(f"a model of {n_expected:,} parameters needs about "
                         f"{n_expected * TRAINING_BYTES_PER_PARAMETER / 2**30:.1f} GiB to train (weights, gradients, "
                         f"Adam), over the memory budget of {max_model_bytes() / 2**30:.1f} GiB "
                         "(INSPECTOR_MAX_MODEL_MB); try a smaller --d-model, --layers or --d-ff")
    model = Transformer(config).to(device)
    n_params = model.num_parameters()
    optimizer = torch.optim.Adam(model.parameters(), lr=hp["lr"], betas=(0.9, 0.98), eps=1e-9)
    shape = noam_lr if hp["schedule"] == "noam" else constant_lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: shape(s + 1, 1.0, hp["warmup"]))

    base_meta = {
        "task": args.task or "custom", "data": args.data, "data_sha256": data_sha256, "arch": hp["arch"],
        "description": task.description if task else f"{'texts' if decoder_only else 'pairs'} from {args.data}",
        "seed": args.seed, "device": str(device), "parameters": n_params,
        "src_tokenizer": src_level, "tgt_tokenizer": tgt_level, "config_summary": _config_summary(config),
        "training": {"batch_size": hp["batch_size"], "lr": hp["lr"], "warmup": hp["warmup"], "clip": args.clip,
                     "label_smoothing": args.label_smoothing, "schedule": hp["schedule"],
                     "optimizer": f"Adam(0.9, 0.98, 1e-9), {hp['schedule']} schedule"},
        "n_valid": len(valid),
    }

    def validate() -> dict[str, Any]:
        """Encoder-decoder: exact match. Decoder-only: held-out loss, plus induction scores for that task."""
        model.eval()
        try:
            if not decoder_only:
                return {"valid_exact_match": exact_match(TransformerPipeline(config, model, src_tok, tgt_tok), valid)}
            with torch.inference_mode():
                total, count = 0.0, 0
                for i in range(0, len(valid), 256):
                    x, y = make_text_batch([t for t, _ in valid[i: i + 256]], src_tok, max_len, device)
                    logits = model(None, x)
                    loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD_ID, reduction="sum")
                    total, count = total + float(loss), count + int((y != PAD_ID).sum())
            result: dict[str, Any] = {"valid_loss": round(total / max(count, 1), 4)}
            if sequences_valid is not None:
                result["induction"] = induction_report(model, src_tok, sequences_valid)
            return result
        finally:
            model.train()

    def better(new: dict, old: dict | None) -> bool:
        if old is None:
            return True
        if decoder_only:
            return new["valid_loss"] < old["valid_loss"]
        return new["valid_exact_match"] > old["valid_exact_match"]

    best, best_step, last_eval, first_loss = None, 0, None, None
    history = []
    snapshot_steps = set(args.snapshots)
    if 0 in snapshot_steps:
        _save_snapshot(out, 0, model, src_tok, tgt_tok, {**base_meta, "step": 0, **validate()})
    model.train()
    bar = tqdm(total=hp["steps"], disable=not args.progress, unit="step", dynamic_ncols=True, file=sys.stderr)
    n_tokens, t_last = 0, time.perf_counter()
    step = 0
    loss = torch.tensor(float("nan"))
    for step in range(1, hp["steps"] + 1):
        batch = source.batch(hp["batch_size"])
        if decoder_only:
            dec_in, labels = make_text_batch([t for t, _ in batch], src_tok, max_len, device)
            logits = model(None, dec_in)  # (B, T, V)
        else:
            src, dec_in, labels = make_batch(batch, src_tok, tgt_tok, max_len, device)
            logits = model(src, dec_in)  # (B, T, V)
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
        if step % 10 == 0 or step == hp["steps"]:
            now = time.perf_counter()
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}", tok_s=f"{n_tokens / (now - t_last):.0f}")
            n_tokens, t_last = 0, now

        evaluate_now = step % hp["eval_every"] == 0 or step == hp["steps"]
        if evaluate_now or step in snapshot_steps:
            last_eval = validate()
        if step in snapshot_steps:
            _save_snapshot(out, step, model, src_tok, tgt_tok, {**base_meta, "step": step, "train_loss":
                                                                round(loss.item(), 4), **last_eval})
        if evaluate_now:
            entry = {"step": step, "loss": round(loss.item(), 4), "token_accuracy": round(acc, 4),
                     **{k: v for k, v in last_eval.items() if k != "induction"}}
            if "induction" in last_eval:
                ind = last_eval["induction"]
                entry.update(loss_first=ind["loss_first"], loss_repeated=ind["loss_repeated"],
                             best_induction=ind["best_induction_last_layer"],
                             best_prev_token=ind["best_prev_token_first_layer"])
            history.append(entry)
            tqdm.write(f"step {step}: " + " ".join(f"{k} {v}" for k, v in entry.items() if k != "step"),
                       file=sys.stderr)
            if better(last_eval, best):
                best, best_step = last_eval, step
                meta = {**base_meta, "steps": step, **last_eval, "wall_time_s": round(time.perf_counter() - started, 1)}
                save_checkpoint(out, model, src_tok, tgt_tok, meta)
            if args.stop_at is not None and last_eval.get("valid_exact_match", 0) >= args.stop_at:
                tqdm.write(f"validation exact match {last_eval['valid_exact_match']:.4f} >= {args.stop_at}: "
                           f"stopping at step {step}", file=sys.stderr)
                break
    bar.close()
    wall = time.perf_counter() - started
    if snapshot_steps and step not in snapshot_steps:  # the end of training, as a snapshot too
        _save_snapshot(out, step, model, src_tok, tgt_tok, {**base_meta, "step": step, "train_loss":
                                                            round(loss.item(), 4), **(last_eval or validate())})

    # final figures: the best checkpoint, reloaded, on fresh examples from a seed used for nothing else
    meta = json.loads((out / META_FILE).read_text())
    meta.update({"steps_trained": step, "best_step": best_step, "wall_time_s": round(wall, 1),
                 "minutes": round(wall / 60, 2), "first_loss": first_loss, "history": history})
    if task is not None:
        eval_seed = args.seed + EVAL_SEED_OFFSET
        pipe = load(out, device=device)
        if decoder_only:
            meta["eval"] = {**induction_report(pipe.model, pipe.tgt_tokenizer, task.sequences(args.n_eval, eval_seed)),
                            "seed": eval_seed}
        else:
            meta["eval"] = {"exact_match": exact_match(pipe, task.pairs(args.n_eval, eval_seed)),
                            "n_pairs": args.n_eval, "seed": eval_seed}
    meta["size_bytes"] = _size_bytes(out)
    meta["weights_bytes"] = (out / WEIGHTS_FILE).stat().st_size
    if snapshot_steps:
        meta["snapshots"] = sorted(p.name for p in (out / "snapshots").iterdir())
        meta["snapshots_bytes"] = sum(f.stat().st_size for f in (out / "snapshots").rglob("*") if f.is_file())
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta
