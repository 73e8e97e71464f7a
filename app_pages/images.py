"""Image attention: an image model's prediction and its attention over the picture, patch by patch.

Thin page: the sidebar (model and picture), the prediction, and the view in a fragment (ui/vision/). The numbers come
from the model's trace and model.analysis.patch_maps, the figures from viz.overlay.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/images.py` / AppTest.from_file
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from ui import boot  # noqa: E402

st.title("Image attention")
with boot.first_load("the image model"):
    from model import CaptureBudgetError, CheckpointError
    from ui.text import md, short
    from ui.tracing import trace_image
    from ui.vision import links
    from ui.vision.calls import image_call
    from ui.vision.inputs import image_model_sidebar, picture_sidebar
    from ui.vision.page import show_prediction
    from ui.vision.view import image_view

    links.read_link()
    with st.sidebar:
        pick = image_model_sidebar()
        picture = picture_sidebar() if pick is not None else None
        links.session_uploader()
    links.expected_upload(picture)
    if pick is None:
        st.info("No image model here: the shipped `shapes` model, or a ViT, DeiT, CLIP, SigLIP or DINOv2 checkpoint "
                "in the models directory (INSPECTOR_MODELS), opens on this page.")
        boot.stop()
    if picture is None:
        st.info("Upload a picture in the sidebar (PNG, JPEG or WebP), or pick a sample.")
        boot.stop()
    for note in picture.notes:
        st.caption(f"{md(picture.name)}: {md(note)}.")
    try:
        traced = trace_image(pick.path, pick.device, picture.key, picture.image)
        call = image_call(pick.pipe, traced)
    except (CaptureBudgetError, ValueError) as e:
        st.error(md(short(e, 600)))
        boot.stop()
    except CheckpointError as e:
        st.error(f"Could not run the model: {md(short(e, 600))}")
        boot.stop()
show_prediction(call, picture)
image_view(pick, call, picture)
