"""The shapes task's generator: every scene is what the task says (sizes, gaps, colours, one red object, its label),
the same seed gives the same scenes, and the drawn pixels are the objects."""

import random
from collections import Counter

import numpy as np
import pytest

from model.training.shapes import BOX_SIDES, COLOURS, GAP, IMAGE_SIZE, N_OBJECTS, SHAPES, TARGET, scene, scenes
from model.training.tasks import get_task

SCENES = scenes(400, 11)


def test_every_scene_is_what_the_task_says():
    for s in SCENES:
        assert s.pixels.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and s.pixels.dtype == np.uint8
        assert N_OBJECTS[0] <= len(s.objects) <= N_OBJECTS[1]
        colours = [o.colour for o in s.objects]
        assert len(set(colours)) == len(colours) and colours.count(TARGET) == 1
        for i, a in enumerate(s.objects):
            left, top, right, bottom = a.box
            assert BOX_SIDES[0] <= right - left == bottom - top <= BOX_SIDES[1]
            assert 0 <= left and 0 <= top and right <= IMAGE_SIZE and bottom <= IMAGE_SIZE
            for b in s.objects[i + 1:]:  # at least GAP background pixels between two boxes
                gap_x = max(b.box[0] - a.box[2], a.box[0] - b.box[2])
                gap_y = max(b.box[1] - a.box[3], a.box[1] - b.box[3])
                assert max(gap_x, gap_y) >= GAP
        assert s.label == SHAPES.index(s.target.shape) and s.target.colour == "red"


def test_the_pixels_are_the_objects_and_the_shapes_differ_where_they_should():
    for s in SCENES:
        drawn = np.zeros(s.pixels.shape[:2], bool)
        for o in s.objects:
            m = s.mask(o.colour)
            ys, xs = np.nonzero(m)
            left, top, right, bottom = o.box
            assert xs.min() == left and xs.max() == right - 1 and ys.min() == top and ys.max() == bottom - 1
            area = m.sum() / (right - left) ** 2
            assert {"square": area == 1.0, "circle": 0.7 < area < 0.86, "triangle": 0.4 < area < 0.62}[o.shape], \
                (o, area)
            drawn |= m
        assert (s.pixels[~drawn] == 0).all()  # the rest is background
        assert set(map(tuple, s.pixels.reshape(-1, 3))) <= {(0, 0, 0), *COLOURS.values()}  # no anti-aliasing


def test_labels_sizes_and_counts_are_spread():
    labels = Counter(s.label for s in SCENES)
    counts = Counter(len(s.objects) for s in SCENES)
    assert all(labels[i] > 90 for i in range(3)) and all(counts[n] > 90 for n in range(2, 5))
    sides = Counter(o.box[2] - o.box[0] for s in SCENES for o in s.objects)
    assert set(sides) == set(range(BOX_SIDES[0], BOX_SIDES[1] + 1))
    red_left = [s.target.box[0] for s in SCENES]
    assert min(red_left) < 8 and max(red_left) > IMAGE_SIZE - BOX_SIDES[1] - 8  # red anywhere


def test_the_same_seed_gives_the_same_scenes():
    a, b, c = scenes(20, 3), scenes(20, 3), scenes(20, 4)
    assert all((x.pixels == y.pixels).all() and x.objects == y.objects for x, y in zip(a, b, strict=True))
    assert any(x.objects != z.objects for x, z in zip(a, c, strict=True))
    task = get_task("shapes")
    assert task.arch == "vit" and task.classes == SHAPES and task.image_size == IMAGE_SIZE
    assert [s.objects for s in task.scenes(5, 9)] == [scene(r).objects for r in [random.Random(9)] for _ in range(5)]


@pytest.mark.parametrize("patch", [8, 16])
def test_the_red_patches_hold_the_red_pixels(patch):
    for s in SCENES[:50]:
        on = s.patches(patch)
        m = s.mask()
        rows = IMAGE_SIZE // patch
        for r in range(rows):
            for c in range(rows):
                assert on[r, c] == m[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch].any()


def test_the_tasks_pairs_are_its_scenes_in_words_and_their_labels():
    task = get_task("shapes")
    pairs, described = task.pairs(5, 8), task.scenes(5, 8)
    for (text, label), s in zip(pairs, described, strict=True):
        assert label == s.target.shape and text.count(";") == len(s.objects) - 1
        left, top, right, _ = s.target.box
        assert f"red {s.target.shape} at x {left} y {top} side {right - left}" in text
