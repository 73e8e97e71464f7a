"""What a training run was asked (``TrainArgs``, the command line's options) and the hyper-parameters it runs with
(``HyperParams``: one frozen record, resolved once by ``resolved``: the command line's value, else the task's, else
the default written beside the field).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..safe.memory import max_model_bytes
from .data import TrainError
from .tasks import Task

EVAL_SEED_OFFSET = 7_777  # final evaluation examples use seed + this: different from training and validation
VALID_SEED_OFFSET = 1_000_003
TRAINING_BYTES_PER_PARAMETER = 16  # float32 weights, gradients and Adam's two moments


def check_trainable(n_parameters: int) -> None:
    """Refuse, before it is built, a model whose training (weights, gradients, Adam) is over the memory budget."""
    need = n_parameters * TRAINING_BYTES_PER_PARAMETER
    if need > max_model_bytes():
        raise TrainError(f"a model of {n_parameters:,} parameters needs about {need / 2**30:.1f} GiB to train "
                         f"(weights, gradients, Adam), over the memory budget of {max_model_bytes() / 2**30:.1f} GiB "
                         "(INSPECTOR_MAX_MODEL_MB); try a smaller --d-model, --layers or --d-ff")


@dataclass(frozen=True)
class HyperParams:
    """One run's hyper-parameters, resolved: the command line's, else the task's (``Task.defaults``), else these."""

    # the model
    arch: str = "encoder-decoder"  # "encoder-decoder" or "decoder-only" (--data); a task brings its own ("vit")
    d_model: int = 128  # width of every residual stream
    n_heads: int = 4  # attention heads per layer; d_model must divide by it
    layers: int = 2  # encoder layers = decoder layers (decoder-only: decoder layers; vit: encoder layers)
    d_ff: int = 256  # feed-forward width; 0 = attention-only
    dropout: float = 0.1  # on embeddings and sub-layer outputs (never on the recorded attention weights)
    norm: str = "post"  # LayerNorm after each sub-layer ("post", the paper) or before it ("pre")
    max_len: int | None = None  # longest sequence, specials included; None: from the data (longest + a margin)
    patch_size: int = 8  # vit: side of a square image patch, in pixels (one token per patch)
    # the optimisation
    steps: int = 2000  # optimizer steps (each task names its own)
    batch_size: int = 128  # examples per step
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    warmup: int = 200  # steps of linear warm-up
    schedule: str = "noam"  # after warm-up: "noam" (the paper's 1/sqrt decay) or "constant"
    clip: float = 1.0  # max gradient norm
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    eval_every: int = 250  # validate, and keep the checkpoint if it is the best so far, every this many steps

    @property
    def decoder_only(self) -> bool:
        return self.arch == "decoder-only"

    def architecture(self) -> dict[str, Any]:
        """The config.json fields that make a checkpoint the same model as this run's (StagedOutput keeps an --out
        of another architecture unless --overwrite)."""
        if self.arch == "vit":
            return {"arch": self.arch, "d_model": self.d_model, "n_heads": self.n_heads,
                    "n_encoder_layers": self.layers, "d_ff": self.d_ff, "norm": self.norm,
                    "patch_size": self.patch_size}
        return {"arch": self.arch, "d_model": self.d_model, "n_heads": self.n_heads,
                "n_encoder_layers": 0 if self.decoder_only else self.layers, "n_decoder_layers": self.layers,
                "d_ff": self.d_ff, "norm": self.norm}

    def optimisation(self) -> dict[str, Any]:
        """The optimisation's settings, as meta.json records them."""
        return {"batch_size": self.batch_size, "lr": self.lr, "warmup": self.warmup, "clip": self.clip,
                "label_smoothing": self.label_smoothing, "schedule": self.schedule,
                "optimizer": f"Adam(0.9, 0.98, 1e-9), {self.schedule} schedule"}


HYPER_FIELDS = tuple(f.name for f in dataclasses.fields(HyperParams))


@dataclass(frozen=True)
class TrainArgs:
    """One training run as asked (the command line's options). A hyper-parameter left None takes the task's value,
    else HyperParams' default: ``resolved(args, task)`` is the one place they meet."""

    out: str
    task: str | None = None  # a name in TASKS, or None with data
    data: str | None = None  # a TSV file of source<TAB>target lines (decoder-only: one text per line)
    seed: int = 0
    device: str = "cpu"
    threads: int | None = 1  # CPU threads for torch; 1 is fastest for these small models on a busy machine
    src_level: str = "word"  # tokenizer levels ("word" or "char") for --data (tasks bring their own)
    tgt_level: str = "char"
    n_valid: int = 500  # held-out validation examples
    n_eval: int = 1000  # fresh examples scored at the end (generated tasks only)
    stop_at: float | None = None  # stop once the validation score (exact match, accuracy) reaches this
    snapshots: list[int] = field(default_factory=list)  # steps at which to also save a small fp16 snapshot
    progress: bool = True
    overwrite: bool = False  # replace an --out directory that holds something else
    # hyper-parameters (None: the task's, else HyperParams'); see HyperParams for what each does
    arch: str | None = None
    d_model: int | None = None
    n_heads: int | None = None
    layers: int | None = None
    d_ff: int | None = None
    dropout: float | None = None
    norm: str | None = None
    max_len: int | None = None
    patch_size: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    warmup: int | None = None
    schedule: str | None = None
    clip: float | None = None
    label_smoothing: float | None = None
    eval_every: int | None = None


def resolved(args: TrainArgs, task: Task | None) -> HyperParams:
    """Each hyper-parameter: the command line's, else the task's default, else HyperParams'."""
    from_task = {} if task is None else {"arch": task.arch, **task.defaults}
    given = {name: getattr(args, name) for name in HYPER_FIELDS if getattr(args, name) is not None}
    return HyperParams(**{**from_task, **given})


__all__ = ["HYPER_FIELDS", "HyperParams", "TrainArgs", "resolved"]
