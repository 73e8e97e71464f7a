"""The image page's sidebar: which image model, and which picture (a sample of the shapes task, or an upload)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from model import CheckpointError, modality_of
from model.safe.images import EXTENSIONS, ImageError, limits, read_image

from .. import state
from ..models import ModelChoice, model_choices, model_name, path_policy, pipeline
from ..page_types import ModelPick
from ..text import md, short
from .calls import DEFAULT_IMAGE_MODEL

SAMPLE_MAX = 1_000_000  # sample seeds 0..SAMPLE_MAX
SOURCES = ("a sample", "an upload")


@dataclass(frozen=True)
class Picture:
    """The picture the page traces, and how a link or a saved session can name it."""

    image: object  # PIL image, RGB
    key: str  # the cache's name for it: "sample:12", "upload:<sha256>"
    name: str  # for people: "sample 12", the file's name
    notes: tuple[str, ...] = ()  # what reading it changed (model.safe.images)
    seed: int | None = None  # a sample's seed (a link holds it); None for an upload
    digest: str = ""  # an upload's SHA-256 (a saved session refers to it; the image itself is never saved)
    target: np.ndarray | None = None  # (H, W) bool: a sample's red object, for "knock out the red object"
    label: str = ""  # a sample's true class (the red object's shape)


def image_model_choices() -> list[ModelChoice]:
    """The listed models that read images (model.modality_of: as ``load`` will decide), none that cannot open."""
    policy = path_policy()
    return [c for c in model_choices() if c.reason is None and modality_of(c.path, policy) == "image"]


def image_model_sidebar() -> ModelPick | None:
    """The model picker (the image models among the shipped ones, the models directory's and the Hugging Face
    cache's); None when there is none (the page says so)."""
    choices = image_model_choices()
    st.header("Model")
    if not choices:
        return None
    labels = [c.label for c in choices]
    default = next((c.label for c in choices if Path(c.path).name == DEFAULT_IMAGE_MODEL), labels[0])
    label = state.selectbox("Image model", labels, key="image_model", default=default,
                            help="The image models among the shipped checkpoints, the models directory "
                                 "(INSPECTOR_MODELS) and the Hugging Face cache; text models open on the "
                                 "Attention inspector.")
    path = next(c.path for c in choices if c.label == label)
    device = st.session_state.get("device", "auto")
    try:
        pipe = pipeline(path, device)
    except CheckpointError as e:
        st.error(f"Could not open {md(model_name(path))}: {md(short(e, 400))}")
        return None
    return ModelPick(path=path, base=path, device=device, pipe=pipe, step=None)


def sample_picture(seed: int) -> Picture:
    """A scene of the shapes task (model.training.shapes), drawn from ``seed``."""
    from model.training.shapes import SHAPES, scenes

    scene = scenes(1, int(seed))[0]
    from PIL import Image

    return Picture(image=Image.fromarray(scene.pixels, "RGB"), key=f"sample:{int(seed)}", name=f"sample {int(seed)}",
                   seed=int(seed), target=scene.mask(), label=SHAPES[scene.label])


def uploaded_picture(upload) -> Picture:
    """An upload read through model.safe.images (ImageError for anything it refuses)."""
    opened = read_image(upload)
    digest = hashlib.sha256(upload.getvalue()).hexdigest()
    return Picture(image=opened.image, key=f"upload:{digest}", name=opened.name, notes=opened.notes, digest=digest)


def next_sample() -> None:
    st.session_state["image_seed"] = (int(st.session_state.get("image_seed") or 0) + 1) % (SAMPLE_MAX + 1)


def picture_sidebar() -> Picture | None:
    """The picture section: a sample (its seed; "Another sample") or an upload (PNG, JPEG or WebP, within the
    deployment's caps); None, with a message, when there is no picture to trace."""
    st.header("Picture")
    source = state.radio("Picture", SOURCES, key="image_source", default=SOURCES[0], horizontal=True,
                         label_visibility="collapsed")
    if source == SOURCES[0]:
        st.session_state.setdefault("image_seed", 0)
        seed = st.number_input("Sample", 0, SAMPLE_MAX, step=1, key="image_seed",
                               help="A scene of the shapes task: 2 to 4 shapes, one of them red; the shipped "
                                    "shapes model says which shape the red one is.")
        st.button("Another sample", key="image_next", on_click=next_sample)
        return sample_picture(int(seed))
    max_bytes, max_pixels = limits()
    mb = max(1, int(max_bytes // 2**20))
    upload = st.file_uploader("Image", type=list(EXTENSIONS), key="image_file", max_upload_size=mb,
                              help=f"PNG, JPEG or WebP, at most {mb} MB and {max_pixels / 1e6:.0f} megapixels; "
                                   "the model sees it resized to its input size.")
    if upload is None:
        return None
    try:
        return uploaded_picture(upload)
    except ImageError as e:
        st.error(md(short(e, 400)))
        return None
