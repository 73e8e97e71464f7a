"""Training the vision transformer on an image task (the shapes task): its trainee for the shared loop, and the
measurement its story rests on, the share of [CLS]'s attention that lands on the target object's patches.

Batches are fresh generated scenes; validation and the final evaluation are the accuracy on held-out scenes (the
final one read back from the saved checkpoint, as the app reads it, on scenes from a seed used for nothing else).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..capture.recorder import Recorder
from ..own.checkpoint import expected_vision_shapes, load_vision_checkpoint, save_vision_checkpoint
from ..own.config import VisionConfig
from ..own.vit import VisionTransformer
from .data import TrainError
from .params import EVAL_SEED_OFFSET, VALID_SEED_OFFSET, HyperParams, TrainArgs, check_trainable
from .shapes import TARGET, Scene
from .tasks import Task

EVAL_BATCH = 250  # scenes per forward when scoring


def batch_pixels(scenes: list[Scene], config: VisionConfig, device=None) -> torch.Tensor:
    """Scenes -> (B, C, H, W) pixels as the model reads them (the arithmetic of own.pipeline.pixels_of)."""
    values = torch.from_numpy(np.stack([s.pixels for s in scenes]))  # (B, H, W, 3) uint8
    x = values.permute(0, 3, 1, 2).float() / 255  # (B, C, H, W) in [0, 1]
    mean = torch.tensor(config.pixel_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(config.pixel_std, dtype=torch.float32)[:, None, None]
    return ((x - mean) / std).to(device)


@torch.inference_mode()
def accuracy(model: VisionTransformer, scenes: list[Scene]) -> float:
    """The share of ``scenes`` whose label the model predicts (the fast path: nothing recorded)."""
    hits = 0
    for start in range(0, len(scenes), EVAL_BATCH):
        chunk = scenes[start: start + EVAL_BATCH]
        logits = model(batch_pixels(chunk, model.config, model.device))  # (B, n_classes)
        hits += int((logits.argmax(-1).cpu() == torch.tensor([s.label for s in chunk])).sum())
    return hits / max(len(scenes), 1)


@torch.inference_mode()
def score_scenes(model: VisionTransformer, scenes: list[Scene], colour: str = TARGET) -> dict[str, Any]:
    """Accuracy on ``scenes``, and per layer and head the mean share of the [CLS] row's attention on the patches
    holding the ``colour`` object (with what uniform attention would give: the mean share of such positions), from
    the traced forward (the records' weights)."""
    cfg = model.config
    L, H = cfg.n_encoder_layers, cfg.n_heads
    share, hits, chance = np.zeros((L, H)), 0, 0.0
    for start in range(0, len(scenes), EVAL_BATCH):
        chunk = scenes[start: start + EVAL_BATCH]
        recorder = Recorder(capture=True)
        logits = model(batch_pixels(chunk, cfg, model.device), recorder)  # (B, n_classes)
        hits += int((logits.argmax(-1).cpu() == torch.tensor([s.label for s in chunk])).sum())
        # the object's patches, as positions 1.. of the sequence (position 0 is [CLS])
        on = torch.from_numpy(np.stack([s.patches(cfg.patch_size, colour).reshape(-1) for s in chunk])).float()
        chance += float(on.sum(-1).sum()) / cfg.seq_len
        for layer in range(L):
            cls_row = recorder.records[f"encoder.{layer}.self_attn"].weights[:, :, 0, 1:].float().cpu()  # (B, H, N)
            share[layer] += (cls_row * on[:, None, :]).sum(-1).sum(0).numpy()
    n = max(len(scenes), 1)
    share /= n
    layer, head = np.unravel_index(int(share.argmax()), share.shape)
    return {"accuracy": hits / n, "n_images": len(scenes), "target": colour,
            "cls_share": np.round(share, 4).tolist(),  # [layer][head]
            "chance_share": round(chance / n, 4),
            "best_head": {"name": f"encoder.{layer}.self_attn", "head": int(head),
                          "share": round(float(share[layer, head]), 4)}}


class VisionTrainee:
    """A vision transformer on an image task: one step's loss on fresh scenes, validation accuracy, saving, and the
    final evaluation (accuracy and the [CLS] share per head) of the saved checkpoint."""

    accuracy_key = "batch_accuracy"  # the history's name for a training batch's accuracy
    rate_unit = "img_s"  # the progress bar's throughput: images per second
    score_name = "accuracy"  # what --stop-at compares with

    def __init__(self, task: Task, args: TrainArgs, hp: HyperParams, device: torch.device):
        self.task, self.device = task, device
        self.rng = random.Random(args.seed)  # the training scenes
        self.valid = task.scenes(args.n_valid, args.seed + VALID_SEED_OFFSET)
        try:
            self.config = VisionConfig(class_names=tuple(task.classes), image_size=task.image_size,
                                       patch_size=hp.patch_size, d_model=hp.d_model, n_heads=hp.n_heads,
                                       n_encoder_layers=hp.layers, d_ff=hp.d_ff, dropout=hp.dropout, norm=hp.norm)
        except ValueError as e:
            raise TrainError(str(e).removeprefix("invalid VisionConfig: ")) from None
        check_trainable(sum(int(np.prod(s)) for s in expected_vision_shapes(self.config).values()))
        self.model = VisionTransformer(self.config).to(device)

    @property
    def n_valid(self) -> int:
        return len(self.valid)

    def facts(self) -> dict[str, Any]:
        """What meta.json says about this model and its inputs."""
        c = self.config
        return {"config_summary": f"vit d_model={c.d_model} heads={c.n_heads} layers={c.n_encoder_layers} "
                                  f"d_ff={c.d_ff or 'none (attention-only)'} patch={c.patch_size} "
                                  f"image={c.image_size}x{c.image_size} tokens={c.seq_len}",
                "class_names": list(c.class_names),
                "image": {"size": c.image_size, "patch_size": c.patch_size, "grid": list(c.grid),
                          "mean": list(c.pixel_mean), "std": list(c.pixel_std)}}

    def batch_loss(self, batch_size: int, label_smoothing: float) -> tuple[torch.Tensor, float, int]:
        """One batch of fresh scenes -> (loss, accuracy, images)."""
        scenes = [self.task.make_scene(self.rng) for _ in range(batch_size)]
        labels = torch.tensor([s.label for s in scenes], device=self.device)
        logits = self.model(batch_pixels(scenes, self.config, self.device))  # (B, n_classes)
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        acc = (logits.argmax(-1) == labels).float().mean().item()
        return loss, acc, len(scenes)

    def validate(self) -> dict[str, Any]:
        """Accuracy on the held-out scenes."""
        self.model.eval()
        try:
            return {"valid_accuracy": accuracy(self.model, self.valid)}
        finally:
            self.model.train()

    def score(self, result: dict[str, Any]) -> float:
        return result["valid_accuracy"]

    def save(self, path: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
        save_vision_checkpoint(path, model, meta)

    def evaluate(self, out: Path, task: Task, args: TrainArgs) -> dict[str, Any]:
        """The saved (best) checkpoint, read back, on ``args.n_eval`` fresh scenes: accuracy, and the share of the
        [CLS] row on the red object's patches per head (the best head is the task's story)."""
        eval_seed = args.seed + EVAL_SEED_OFFSET
        _, model, _ = load_vision_checkpoint(out, device=self.device)
        return {**score_scenes(model, task.scenes(args.n_eval, eval_seed)), "seed": eval_seed}


__all__ = ["EVAL_BATCH", "VisionTrainee", "accuracy", "batch_pixels", "score_scenes"]
