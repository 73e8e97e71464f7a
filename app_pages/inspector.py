"""The attention inspector: every layer, head and stage of one traced call, and analyses of it.

Thin page: the sidebar (model and input), the header, and the views in a fragment (ui/). The numbers come from
the model's trace and model.analysis, the figures from viz/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/inspector.py` / AppTest.from_file
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from ui import boot  # noqa: E402

st.title("Attention inspector")  # painted before torch is imported: a cold start shows the page at once
with boot.first_load():  # a line saying what is loading, until the traced call is ready
    from model import CaptureBudgetError, CheckpointError, TokenizerError
    from ui import links
    from ui.header import show_image_model, show_output, show_story, show_warnings
    from ui.inspector import inspector
    from ui.models import example_for, snapshots
    from ui.sidebar import input_sidebar, model_caption, model_sidebar
    from ui.text import md, short
    from ui.tracing import trace

    links.read_link()  # a session's first run: the link's model, text and view
    with st.sidebar:
        pick = model_sidebar()
        reads_text = pick.pipe.info.modality == "text"
        inputs = input_sidebar(pick.pipe) if reads_text else None
        caption = st.empty()
        links.session_uploader()
    links.show_notes()
    if not reads_text:  # an image model: the image page shows it
        show_image_model(pick)
        boot.stop()

    if inputs is None:
        what = "a source sentence" if pick.pipe.arch == "encoder-decoder" else "a text"
        example = example_for(pick.base)
        st.info(f"Type {what} in the sidebar" + (f" (for this model, e.g. “{md(example)}”)." if example else "."))
        boot.stop()

    try:
        traced, notes = trace(pick.path, pick.device, inputs.source, inputs.target, inputs.max_new)
    except (CaptureBudgetError, TokenizerError) as e:
        st.error(md(short(e, 600)))
        boot.stop()
    except CheckpointError as e:
        st.error(f"Could not run the model: {md(short(e, 600))}")
        boot.stop()
caption.caption(model_caption(pick, traced.device))
show_story(pick)
show_output(pick, traced.result, inputs.target)
show_warnings(pick, traced.result, notes, traced.lazy, traced.estimate_bytes)
inspector(pick, traced, inputs, bool(snapshots(pick.base)))
