"""Training: generated tasks, the loop (encoder-decoder or decoder-only), metrics, and a never-half-written output."""

from .data import TrainError, exact_match, read_pairs, read_texts
from .loop import noam_lr, train
from .metrics import induction_report
from .params import EVAL_SEED_OFFSET, VALID_SEED_OFFSET, HyperParams, TrainArgs
from .tasks import TASKS, Task, get_task

__all__ = ["EVAL_SEED_OFFSET", "HyperParams", "TASKS", "Task", "TrainArgs", "TrainError", "VALID_SEED_OFFSET",
           "exact_match", "get_task", "induction_report", "noam_lr", "read_pairs", "read_texts", "train"]
