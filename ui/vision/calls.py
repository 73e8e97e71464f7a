"""An image model's traced call as the image page reads it: the encoder's self-attentions, the patch grid and the
position of each patch, the token labels, the picture as the model saw it, and the prediction.

The one module of the page that reads the model's result (model.call.run on an image); everything else reads an
``ImageCall``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import RecordName
from model.safe.files import read_json_file

from ..tracing import Traced

DEFAULT_IMAGE_MODEL = "shapes"  # the shipped image model (the shapes task), opened first
TOP_CLASSES = 5  # the prediction's table: at most this many classes


def is_image_model(path: str) -> bool:
    """Whether the checkpoint at ``path`` reads pictures (its config.json says so); False for anything unreadable."""
    try:
        config = read_json_file(Path(path) / "config.json")
    except Exception:  # a broken checkpoint is the inspector's to report, not this picker's
        return False
    if not isinstance(config, dict):
        return False
    return bool(config.get("image_size")) or "vision_config" in config


@dataclass(frozen=True)
class ImageCall:
    """One traced call on a picture."""

    traced: Traced
    names: list[str]  # the encoder's self-attentions, bottom to top ("encoder.0.self_attn", ...)
    grid: tuple[int, int]  # (rows, cols) of patches
    positions: list[int]  # the sequence position of each patch, row-major
    labels: list[str]  # every token's label: "[CLS]", "r0c0", ..., "reg0"
    picture: np.ndarray  # (H, W, 3) uint8: the picture the patches cut, as the model saw it
    classes: list[str]  # the classifier's classes (empty for a model without one)
    probs: np.ndarray  # (n_classes,) the predicted distribution

    @property
    def trace(self):
        return self.traced.trace

    @property
    def n_heads(self) -> int:
        return self.trace.shape(self.names[0]).n_heads

    @property
    def n_tokens(self) -> int:
        return len(self.labels)

    @property
    def patch_labels(self) -> list[str]:
        return [self.labels[p] for p in self.positions]

    @property
    def cls(self) -> int:
        """The position of [CLS] (the token a classifier reads), else the first token."""
        return next((i for i, t in enumerate(self.labels) if t == "[CLS]"), 0)

    @property
    def predicted(self) -> tuple[str, float]:
        """(class, probability) of the prediction; ("", nan) without a classifier."""
        if not self.classes:
            return "", float("nan")
        i = int(np.argmax(self.probs))
        return self.classes[i], float(self.probs[i])

    def top(self, n: int = TOP_CLASSES) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs, kind="stable")[:n]
        return [(self.classes[i], float(self.probs[i])) for i in order]

    def patch_of(self, position: int) -> int | None:
        """The patch index (row-major) at a sequence position; None for [CLS], registers and the like."""
        try:
            return self.positions.index(int(position))
        except ValueError:
            return None


def image_call(pipe, traced: Traced, image) -> ImageCall:
    """Read one traced call of an image model (``image``: the PIL picture it was given)."""
    result = traced.result
    names = sorted((n for n in result.trace if RecordName.parse(n).kind == "encoder self"),
                   key=lambda n: RecordName.parse(n).layer)
    grid = tuple(int(x) for x in result.patch_grid)
    labels = [str(t) for t in result.tokens_for("encoder")]
    seen = getattr(result, "image", None)  # the ImageEncoding: the pixels the model read
    picture = seen.seen() if seen is not None else np.asarray(image.convert("RGB"), dtype=np.uint8)
    classes, probs = [], np.zeros(0, np.float32)
    if result.logits is not None:
        logits = np.asarray(result.logits, dtype=np.float64).reshape(-1)
        probs = np.exp(logits - logits.max())
        probs = (probs / probs.sum()).astype(np.float32)
        classes = list(getattr(pipe.info, "classes", ()) or [str(i) for i in range(len(probs))])
    return ImageCall(traced=traced, names=names, grid=(grid[0], grid[1]), positions=[int(p) for p in
                     result.patch_positions], labels=labels, picture=picture, classes=classes, probs=probs)
