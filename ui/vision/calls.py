"""An image model's traced call as the image page reads it: the encoder's self-attentions, the patch grid and the
position of each patch, the token labels, the picture as the model saw it, and the prediction.

The one module of the page that reads the model's result (model.call.run on an image); everything else reads an
``ImageCall``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model import RecordName

from ..tracing import Traced

DEFAULT_IMAGE_MODEL = "shapes"  # the shipped image model (the shapes task), opened first
TOP_CLASSES = 5  # the prediction's table: at most this many classes


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


def image_call(pipe, traced: Traced) -> ImageCall:
    """Read one traced call of an image model (``pipe.info.modality == "image"``): the picture is the one the model
    saw (``result.image.seen()``), the classes ``pipe.info.classes`` in the order of the (1, n_classes) logits."""
    result = traced.result
    names = sorted((n for n in result.trace if RecordName.parse(n).kind == "encoder self"),
                   key=lambda n: RecordName.parse(n).layer)
    rows, cols = result.patch_grid
    classes, probs = [], np.zeros(0, np.float32)
    if result.logits is not None:  # a classifier (a bare encoder has no logits): softmax as result.probability's
        probs = torch.softmax(result.logits.row(len(result.logits) - 1), -1).numpy()
        classes = list(pipe.info.classes) or [str(i) for i in range(len(probs))]
    return ImageCall(traced=traced, names=names, grid=(int(rows), int(cols)),
                     positions=[int(p) for p in result.patch_positions],
                     labels=[str(t) for t in result.tokens_for("encoder")], picture=result.image.seen(),
                     classes=classes, probs=probs)
