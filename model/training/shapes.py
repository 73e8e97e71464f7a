"""The shapes task: a generated scene of 2 to 4 coloured shapes; which shape is the red one?

A 64 x 64 RGB image on black; each object is a filled square, circle or upright triangle whose bounding box is
12 to 20 pixels, boxes at least 2 pixels apart, positions uniform; the colours all differ and exactly one object is
red. The label is the red object's shape. A model can only answer by finding the red pixels and reading their
outline: a vision transformer's [CLS] token has to look at the red object's patches.

Scenes are drawn with PIL from a seeded ``random.Random`` (same seed, same scenes); nothing is downloaded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64  # pixels per side
SHAPES = ("square", "circle", "triangle")  # the classes, in the order of the model's logits
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40),
           "white": (235, 235, 235)}
BACKGROUND = (0, 0, 0)
N_OBJECTS = (2, 4)  # objects per scene, inclusive
BOX_SIDES = (12, 20)  # side of an object's (square) bounding box, inclusive
GAP = 2  # the least number of background pixels between two bounding boxes
TARGET = "red"  # the colour whose shape is the label
EXAMPLE_SEED = 5  # example_scene(): four objects, three of them circles, the red one a circle too


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene."""

    shape: str  # one of SHAPES
    colour: str  # a key of COLOURS
    box: tuple[int, int, int, int]  # (left, top, right, bottom) in pixels, right and bottom exclusive


@dataclass(frozen=True)
class Scene:
    """A generated image and what is in it."""

    pixels: np.ndarray  # (IMAGE_SIZE, IMAGE_SIZE, 3) uint8, RGB
    objects: tuple[ShapeObject, ...]

    @property
    def target(self) -> ShapeObject:
        """The red object."""
        return next(o for o in self.objects if o.colour == TARGET)

    @property
    def label(self) -> int:
        """The index in SHAPES of the red object's shape."""
        return SHAPES.index(self.target.shape)

    def mask(self, colour: str = TARGET) -> np.ndarray:
        """(H, W) bool: the pixels of that colour's object."""
        return (self.pixels == np.array(COLOURS[colour], dtype=np.uint8)).all(-1)

    def describe(self) -> str:
        """The scene in words (what a caption or a log line shows): "red circle at x 12 y 30 side 15; ..."."""
        return "; ".join(f"{o.colour} {o.shape} at x {o.box[0]} y {o.box[1]} side {o.box[2] - o.box[0]}"
                         for o in self.objects)

    def patches(self, patch_size: int, colour: str = TARGET) -> np.ndarray:
        """(rows, cols) bool: the patches holding at least one pixel of that colour's object."""
        m = self.mask(colour)
        rows, cols = m.shape[0] // patch_size, m.shape[1] // patch_size
        return m[:rows * patch_size, :cols * patch_size].reshape(rows, patch_size, cols, patch_size).any((1, 3))


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """At least GAP background pixels between the two boxes, horizontally or vertically."""
    return max(b[0] - a[2], a[0] - b[2]) >= GAP or max(b[1] - a[3], a[1] - b[3]) >= GAP


def _boxes(rng: random.Random, n: int) -> list[tuple[int, int, int, int]] | None:
    """``n`` boxes, each side uniform in BOX_SIDES and position uniform, pairwise apart; None if they do not fit."""
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(n):
        side = rng.randint(*BOX_SIDES)
        for _ in range(200):
            x, y = rng.randint(0, IMAGE_SIZE - side), rng.randint(0, IMAGE_SIZE - side)
            box = (x, y, x + side, y + side)
            if all(_apart(box, other) for other in boxes):
                boxes.append(box)
                break
        else:
            return None
    return boxes


def draw(objects: tuple[ShapeObject, ...]) -> np.ndarray:
    """The scene's pixels: filled shapes on BACKGROUND, no anti-aliasing (every pixel is one of the colours)."""
    from PIL import Image, ImageDraw  # imported when a scene is drawn: the app's start does not pay for it

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND)
    pen = ImageDraw.Draw(image)
    for o in objects:
        left, top, right, bottom = o.box
        colour = COLOURS[o.colour]
        if o.shape == "square":
            pen.rectangle((left, top, right - 1, bottom - 1), fill=colour)
        elif o.shape == "circle":
            pen.ellipse((left, top, right - 1, bottom - 1), fill=colour)
        else:  # an upright triangle: apex at the top centre, base along the bottom
            pen.polygon([((left + right - 1) / 2, top), (left, bottom - 1), (right - 1, bottom - 1)], fill=colour)
    return np.asarray(image, dtype=np.uint8).copy()


def scene(rng: random.Random) -> Scene:
    """One random scene (see the module docstring)."""
    while True:
        n = rng.randint(*N_OBJECTS)
        boxes = _boxes(rng, n)
        if boxes is not None:
            break
    others = [c for c in COLOURS if c != TARGET]
    colours = [TARGET] + rng.sample(others, n - 1)
    rng.shuffle(colours)  # the red object is placed first, last or between, as any other
    objects = tuple(ShapeObject(shape=rng.choice(SHAPES), colour=c, box=b) for c, b in zip(colours, boxes,
                                                                                           strict=True))
    return Scene(pixels=draw(objects), objects=objects)


def scenes(n: int, seed: int) -> list[Scene]:
    """``n`` scenes from a generator seeded with ``seed`` (same seed, same scenes)."""
    rng = random.Random(seed)
    return [scene(rng) for _ in range(n)]


# every word describe() writes (digits are tokens of their own at the "word" level)
WORDS = " ".join([*COLOURS, *SHAPES, "at", "x", "y", "side", ";", *"0123456789"])


def example_scene() -> Scene:
    """The scene the task's story shows (the app's first image for a model trained on it)."""
    return scenes(1, EXAMPLE_SEED)[0]


__all__ = ["BOX_SIDES", "COLOURS", "EXAMPLE_SEED", "GAP", "IMAGE_SIZE", "N_OBJECTS", "SHAPES", "Scene", "ShapeObject",
           "TARGET", "WORDS", "draw", "example_scene", "scene", "scenes"]
