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

from model import CaptureBudgetError, CheckpointError, TokenizerError  # noqa: E402
from ui.header import show_output, show_story, show_warnings  # noqa: E402
from ui.inspector import inspector  # noqa: E402
from ui.models import example_for, snapshots  # noqa: E402
from ui.sidebar import input_sidebar, model_caption, model_sidebar  # noqa: E402
from ui.text import md, short  # noqa: E402
from ui.tracing import trace  # noqa: E402

st.title("Attention inspector")
with st.sidebar:
    pick = model_sidebar()
    inputs = input_sidebar(pick.pipe)
    caption = st.empty()

if inputs is None:
    what = "a source sentence" if pick.pipe.arch == "encoder-decoder" else "a text"
    example = example_for(pick.base)
    st.info(f"Type {what} in the sidebar" + (f" (for this model, e.g. “{md(example)}”)." if example else "."))
    st.stop()

try:
    traced, notes = trace(pick.path, pick.device, inputs.source, inputs.target, inputs.max_new)
except (CaptureBudgetError, TokenizerError) as e:
    st.error(md(short(e, 600)))
    st.stop()
except CheckpointError as e:
    st.error(f"Could not run the model: {md(short(e, 600))}")
    st.stop()
caption.caption(model_caption(pick, traced.device))
show_story(pick)
show_output(pick, traced.result, inputs.target)
show_warnings(pick, traced.result, notes, traced.lazy, traced.estimate_bytes)
inspector(pick, traced, inputs, bool(snapshots(pick.base)))
