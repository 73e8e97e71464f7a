"""The training loop: a generated task or your own data, encoder-decoder or decoder-only (and, for an image task,
the vision transformer: model.training.vision).

Teacher forcing (decoder input = [BOS] + target, label = target + [EOS]; a decoder-only model reads [BOS] + text
and predicts text + [EOS]), cross-entropy that ignores [PAD], one Adam optimizer over the whole model with the
paper's schedule (linear warm-up, then inverse square root decay; scaled so its peak is --lr) or a constant rate
after warm-up, gradient clipping, optional label smoothing. Validation: exact match of greedy decoding on held-out
pairs (encoder-decoder), or held-out loss (decoder-only, with induction scores for the induction task); the best
checkpoint is kept. Output goes to a staging directory and is renamed into place at the end.

The loop (``fit``) is written once; what a kind of model trains on, how it is scored and saved is its trainee
(``TextTrainee`` here): one step's loss, validation, its score, saving, and the final evaluation of the saved
checkpoint.
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

from ..own.checkpoint import META_FILE, WEIGHTS_FILE, expected_shapes, load_checkpoint, save_checkpoint
from ..own.config import TRANSFORMER_ARCHS, VISION_ARCH, ModelConfig
from ..own.pipeline import TransformerPipeline
from ..own.tokenizer import PAD_ID, TOKEN_LEVELS, Tokenizer
from ..own.transformer import Transformer
from ..runtime import resolve_device
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
from .params import EVAL_SEED_OFFSET, VALID_SEED_OFFSET, HyperParams, TrainArgs, check_trainable, resolved
from .tasks import RepeatedSequence, Task, get_task
from .vision import VisionTrainee

MAX_AUTO_LEN = 1_024  # the longest max_len chosen from the data (a longer one must be asked for)
SCHEDULES = ("noam", "constant")


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


# ---- text: what an encoder-decoder or decoder-only run trains on ------------------------------------------------

@dataclass(frozen=True)
class TextData:
    """A text run's examples, tokenizers and longest sequence."""

    source: PairSource  # the training examples, drawn per step
    valid: list[tuple[str, str]]  # held-out pairs (decoder-only: (text, ""))
    sequences_valid: list[RepeatedSequence] | None  # the induction task's held-out sequences (scored per head)
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    src_level: str  # "word" or "char"
    tgt_level: str
    max_len: int  # the model's longest sequence


def text_data(args: TrainArgs, task: Task | None, hp: HyperParams) -> TextData:
    """Examples (generated, or read and split), tokenizers trained on them, and max_len."""
    sequences_valid = None
    if task is not None:
        src_level, tgt_level = task.src_level, task.tgt_level
        valid = task.pairs(args.n_valid, args.seed + VALID_SEED_OFFSET)
        if hp.decoder_only:
            sequences_valid = task.sequences(args.n_valid, args.seed + VALID_SEED_OFFSET)
        # tokenizers see every token the generator can emit, plus a large sample
        sample = task.pairs(20_000, args.seed + 1)
        src_texts = list(task.coverage) + [s for s, _ in sample]
        tgt_texts = list(task.coverage) + [t for _, t in sample]
        source = PairSource(args.seed, task=task)
    else:
        src_level, tgt_level = args.src_level, (args.src_level if hp.decoder_only else args.tgt_level)
        pairs = [(t, "") for t in read_texts(args.data)] if hp.decoder_only else read_pairs(args.data)
        shuffled = pairs[:]
        random.Random(args.seed).shuffle(shuffled)
        n_valid = max(1, min(len(shuffled) // 10, args.n_valid))
        valid, train_pairs = shuffled[:n_valid], shuffled[n_valid:]
        src_texts, tgt_texts = [s for s, _ in pairs], [t for _, t in pairs]
        sample = pairs
        source = PairSource(args.seed, pairs=train_pairs)
    src_tok = Tokenizer.train(src_texts, level=src_level)
    tgt_tok = src_tok if hp.decoder_only else Tokenizer.train(tgt_texts, level=tgt_level)
    longest = max(max(len(src_tok.tokenize(s).ids), len(tgt_tok.tokenize(t).ids)) for s, t in sample + valid)
    max_len = hp.max_len or max(32, longest + 8)
    if max_len < longest + 2:
        raise TrainError(f"--max-len {max_len} is too short: the data has sequences of {longest} tokens (+ 2 specials)")
    if max_len > MAX_AUTO_LEN and hp.max_len is None:
        raise TrainError(f"the data has sequences of {longest} tokens; pass --max-len to train on more than "
                         f"{MAX_AUTO_LEN}")
    return TextData(source=source, valid=valid, sequences_valid=sequences_valid, src_tok=src_tok, tgt_tok=tgt_tok,
                    src_level=src_level, tgt_level=tgt_level, max_len=max_len)


class TextTrainee:
    """An encoder-decoder or decoder-only transformer and its data: one step's loss, validation (exact match, or
    held-out loss), saving, and the final evaluation of the saved checkpoint."""

    accuracy_key = "token_accuracy"  # the history's name for a training batch's accuracy
    rate_unit = "tok_s"  # the progress bar's throughput: real tokens per second
    score_name = "exact match"  # what --stop-at compares with (encoder-decoder only)

    def __init__(self, data: TextData, hp: HyperParams, device: torch.device):
        self.data, self.device, self.decoder_only = data, device, hp.decoder_only
        self.config = ModelConfig(src_vocab_size=data.src_tok.vocab_size, tgt_vocab_size=data.tgt_tok.vocab_size,
                                  d_model=hp.d_model, n_heads=hp.n_heads,
                                  n_encoder_layers=0 if hp.decoder_only else hp.layers, n_decoder_layers=hp.layers,
                                  d_ff=hp.d_ff, dropout=hp.dropout, max_len=data.max_len, norm=hp.norm, arch=hp.arch)
        check_trainable(sum(math.prod(s) for s in expected_shapes(self.config).values()))
        self.model = Transformer(self.config).to(device)

    @property
    def n_valid(self) -> int:
        return len(self.data.valid)

    def facts(self) -> dict[str, Any]:
        """What meta.json says about this model and its inputs."""
        return {"src_tokenizer": self.data.src_level, "tgt_tokenizer": self.data.tgt_level,
                "config_summary": _config_summary(self.config)}

    def batch_loss(self, batch_size: int, label_smoothing: float) -> tuple[torch.Tensor, float, int]:
        """One training batch -> (loss, token accuracy, real tokens)."""
        d = self.data
        batch = d.source.batch(batch_size)
        if self.decoder_only:
            dec_in, labels = make_text_batch([t for t, _ in batch], d.src_tok, d.max_len, self.device)
            logits = self.model(None, dec_in)  # (B, T, V)
        else:
            src, dec_in, labels = make_batch(batch, d.src_tok, d.tgt_tok, d.max_len, self.device)
            logits = self.model(src, dec_in)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=PAD_ID,
                               label_smoothing=label_smoothing)
        real = labels != PAD_ID
        acc = ((logits.argmax(-1) == labels) & real).sum().item() / max(real.sum().item(), 1)
        return loss, acc, int(real.sum())

    def validate(self) -> dict[str, Any]:
        """Encoder-decoder: exact match. Decoder-only: held-out loss, plus induction scores for that task."""
        model, d = self.model, self.data
        model.eval()
        try:
            if not self.decoder_only:
                pipe = TransformerPipeline(self.config, model, d.src_tok, d.tgt_tok)
                return {"valid_exact_match": exact_match(pipe, d.valid)}
            with torch.inference_mode():
                total, count = 0.0, 0
                for i in range(0, len(d.valid), 256):
                    x, y = make_text_batch([t for t, _ in d.valid[i: i + 256]], d.src_tok, d.max_len, self.device)
                    logits = model(None, x)
                    loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD_ID, reduction="sum")
                    total, count = total + float(loss), count + int((y != PAD_ID).sum())
            result: dict[str, Any] = {"valid_loss": round(total / max(count, 1), 4)}
            if d.sequences_valid is not None:
                result["induction"] = induction_report(model, d.src_tok, d.sequences_valid)
            return result
        finally:
            model.train()

    def score(self, result: dict[str, Any]) -> float:
        """Higher is better: exact match, or minus the held-out loss."""
        return -result["valid_loss"] if self.decoder_only else result["valid_exact_match"]

    def save(self, path: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
        save_checkpoint(path, model, self.data.src_tok, self.data.tgt_tok, meta)

    def evaluate(self, out: Path, task: Task, args: TrainArgs) -> dict[str, Any]:
        """The saved (best) checkpoint, read back as the app reads it, on fresh examples from a seed used for nothing
        else."""
        eval_seed = args.seed + EVAL_SEED_OFFSET
        config, model, src_tok, tgt_tok, meta = load_checkpoint(out, device=self.device)
        if self.decoder_only:
            return {**induction_report(model, tgt_tok, task.sequences(args.n_eval, eval_seed)), "seed": eval_seed}
        pipe = TransformerPipeline(config, model, src_tok, tgt_tok, meta, str(out))
        return {"exact_match": exact_match(pipe, task.pairs(args.n_eval, eval_seed)), "n_pairs": args.n_eval,
                "seed": eval_seed}


# ---- the run --------------------------------------------------------------------------------------------------

def train(args: TrainArgs) -> dict[str, Any]:
    """Run one training; returns the final meta (also written to <out>/meta.json)."""
    previous = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _train(args)
    finally:
        torch.set_num_threads(previous)  # the thread count is process-wide: leave it as we found it


def _checked(args: TrainArgs) -> tuple[Task | None, HyperParams]:
    """The task and the resolved hyper-parameters; a TrainError for options that do not go together."""
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
    if task is None and hp.arch not in TRANSFORMER_ARCHS:
        raise TrainError(f"--arch must be one of {TRANSFORMER_ARCHS} with --data, got {hp.arch!r}")
    if hp.d_model % hp.n_heads:
        raise TrainError(f"--d-model ({hp.d_model}) must be divisible by --n-heads ({hp.n_heads})")
    for level in (args.src_level, args.tgt_level):
        if level not in TOKEN_LEVELS:
            raise TrainError(f"tokenizer level must be one of {TOKEN_LEVELS}, got {level!r}")
    if hp.decoder_only and args.stop_at is not None:
        raise TrainError("--stop-at applies to the exact match of encoder-decoder tasks")
    return task, hp


def _train(args: TrainArgs) -> dict[str, Any]:
    task, hp = _checked(args)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise TrainError(str(e)) from None
    if hp.steps < 1:
        raise TrainError(f"--steps must be >= 1, got {hp.steps}")
    data_sha256 = data_digest(args.data) if args.data is not None else None
    output = StagedOutput(args.out, args.task or "custom", overwrite=args.overwrite, data_sha256=data_sha256,
                          arch=hp.architecture(), data=args.data)
    out = output.staging
    try:
        meta = _run(args, task, hp, device, out, data_sha256)
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


def _run(args: TrainArgs, task: Task | None, hp: HyperParams, device: torch.device, out: Path,
         data_sha256: str | None = None) -> dict[str, Any]:
    """Data, model, the loop, the final figures: the whole run into the staging directory ``out``."""
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    if hp.arch == VISION_ARCH:
        trainee = VisionTrainee(task, args, hp, device)
    else:
        trainee = TextTrainee(text_data(args, task, hp), hp, device)
    description = task.description if task else f"{'texts' if hp.decoder_only else 'pairs'} from {args.data}"
    base_meta = {
        "task": args.task or "custom", "data": args.data, "data_sha256": data_sha256, "arch": hp.arch,
        "description": description, "seed": args.seed, "device": str(device),
        "parameters": trainee.model.num_parameters(), **trainee.facts(), "training": hp.optimisation(),
        "n_valid": trainee.n_valid,
    }
    progress = fit(trainee, hp, args, out, base_meta, started)
    return final_meta(trainee, progress, task, args, out)


# ---- the loop, for every trainee ------------------------------------------------------------------------------

@dataclass
class Progress:
    """Where a run is: its step and loss, its validations so far and the best one."""

    started: float  # time.perf_counter() at the start of the run
    step: int = 0
    loss: float = float("nan")  # the last training batch's
    first_loss: float | None = None
    last_eval: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    best_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0  # training time (the final evaluation excluded)


def fit(trainee, hp: HyperParams, args: TrainArgs, out: Path, base_meta: dict[str, Any],
        started: float) -> Progress:
    """Train ``trainee.model`` for ``hp.steps`` steps (or until ``args.stop_at``), validating every
    ``hp.eval_every`` steps, keeping the best checkpoint in ``out`` and the snapshots asked for."""
    model = trainee.model
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr, betas=(0.9, 0.98), eps=1e-9)
    shape = noam_lr if hp.schedule == "noam" else constant_lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: shape(s + 1, 1.0, hp.warmup))
    progress = Progress(started=started)
    snapshot_steps = set(args.snapshots)
    if 0 in snapshot_steps:
        _save_snapshot(trainee, out, 0, {**base_meta, "step": 0, **trainee.validate()})
    model.train()
    bar = tqdm(total=hp.steps, disable=not args.progress, unit="step", dynamic_ncols=True, file=sys.stderr)
    n_seen, t_last = 0, time.perf_counter()
    for step in range(1, hp.steps + 1):
        loss, acc, n = trainee.batch_loss(hp.batch_size, hp.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp.clip)
        optimizer.step()
        scheduler.step()
        progress.step, progress.loss = step, loss.item()
        if progress.first_loss is None:
            progress.first_loss = round(progress.loss, 4)
        n_seen += n
        bar.update(1)
        if step % 10 == 0 or step == hp.steps:
            now = time.perf_counter()
            bar.set_postfix({"loss": f"{progress.loss:.3f}", "acc": f"{acc:.3f}",
                             trainee.rate_unit: f"{n_seen / (now - t_last):.0f}"})
            n_seen, t_last = 0, now
        if _validate_at(trainee, progress, acc, hp, args, out, base_meta, snapshot_steps):
            break
    bar.close()
    progress.wall_s = time.perf_counter() - started
    if snapshot_steps and progress.step not in snapshot_steps:  # the end of training, as a snapshot too
        _save_snapshot(trainee, out, progress.step, {**base_meta, "step": progress.step, "train_loss":
                                                     round(progress.loss, 4), **(progress.last_eval
                                                                                 or trainee.validate())})
    return progress


def _validate_at(trainee, progress: Progress, acc: float, hp: HyperParams, args: TrainArgs, out: Path,
                 base_meta: dict[str, Any], snapshot_steps: set[int]) -> bool:
    """After a step: validate, snapshot and keep the best checkpoint when it is time; True to stop here."""
    step = progress.step
    evaluate_now = step % hp.eval_every == 0 or step == hp.steps
    if evaluate_now or step in snapshot_steps:
        progress.last_eval = trainee.validate()
    if step in snapshot_steps:
        _save_snapshot(trainee, out, step, {**base_meta, "step": step, "train_loss": round(progress.loss, 4),
                                            **progress.last_eval})
    if not evaluate_now:
        return False
    entry = history_entry(step, progress.loss, trainee.accuracy_key, acc, progress.last_eval)
    progress.history.append(entry)
    tqdm.write(f"step {step}: " + " ".join(f"{k} {v}" for k, v in entry.items() if k != "step"), file=sys.stderr)
    if progress.best is None or trainee.score(progress.last_eval) > trainee.score(progress.best):
        progress.best, progress.best_step = progress.last_eval, step
        meta = {**base_meta, "steps": step, **progress.last_eval,
                "wall_time_s": round(time.perf_counter() - progress.started, 1)}
        trainee.save(out, trainee.model, meta)
    score = trainee.score(progress.last_eval)
    if args.stop_at is not None and score >= args.stop_at:
        tqdm.write(f"validation {trainee.score_name} {score:.4f} >= {args.stop_at}: stopping at step {step}",
                   file=sys.stderr)
        return True
    return False


def history_entry(step: int, loss: float, accuracy_key: str, acc: float, result: dict[str, Any]) -> dict[str, Any]:
    """One line of meta.json's history: the step's training loss and accuracy, the validation's figures."""
    entry = {"step": step, "loss": round(loss, 4), accuracy_key: round(acc, 4),
             **{k: v for k, v in result.items() if k != "induction"}}
    if "induction" in result:
        ind = result["induction"]
        entry.update(loss_first=ind["loss_first"], loss_repeated=ind["loss_repeated"],
                     best_induction=ind["best_induction_last_layer"],
                     best_prev_token=ind["best_prev_token_first_layer"])
    return entry


def _save_snapshot(trainee, out: Path, step: int, meta: dict[str, Any]) -> None:
    """A float16 copy (half the bytes) in out/snapshots/step_XXXXX; loads like any checkpoint (as float32)."""
    half = copy.deepcopy(trainee.model).to("cpu").half()
    trainee.save(out / "snapshots" / f"step_{step:05d}", half, {**meta, "dtype": "float16"})


def final_meta(trainee, progress: Progress, task: Task | None, args: TrainArgs, out: Path) -> dict[str, Any]:
    """meta.json of the best checkpoint, completed: the run's figures, the fresh-example evaluation (generated tasks),
    sizes and snapshots."""
    meta = json.loads((out / META_FILE).read_text())
    wall = progress.wall_s
    meta.update({"steps_trained": progress.step, "best_step": progress.best_step, "wall_time_s": round(wall, 1),
                 "minutes": round(wall / 60, 2), "first_loss": progress.first_loss, "history": progress.history})
    if task is not None:
        meta["eval"] = trainee.evaluate(out, task, args)
    meta["size_bytes"] = _size_bytes(out)
    meta["weights_bytes"] = (out / WEIGHTS_FILE).stat().st_size
    if args.snapshots:
        meta["snapshots"] = sorted(p.name for p in (out / "snapshots").iterdir())
        meta["snapshots_bytes"] = sum(f.stat().st_size for f in (out / "snapshots").rglob("*") if f.is_file())
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


__all__ = ["EVAL_SEED_OFFSET", "MAX_AUTO_LEN", "SCHEDULES", "Progress", "TextData", "TextTrainee", "VALID_SEED_OFFSET",
           "check_trainable", "constant_lr", "final_meta", "fit", "history_entry", "noam_lr", "text_data", "train"]
