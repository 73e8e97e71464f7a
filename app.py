"""Entry point: `streamlit run app.py`. Opens on the attention inspector; the teaching playground sits beside it."""

import os
from pathlib import Path

import streamlit as st

from model.runtime import configure_cpu

HERE = Path(__file__).resolve().parent


@st.cache_resource
def configure_once() -> dict:
    """Once per server process: never reach a model hub (transformers is imported later, when a model in the
    Hugging Face layout is opened); torch threads, the allocator and the worker lanes (model/runtime.py)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(name, "1")
    return configure_cpu()


configure_once()
st.set_page_config(page_title="Attention inspector", page_icon=":material/search:", layout="wide")

# The pages live in app_pages/, not pages/: a pages/ folder next to st.navigation turns on Streamlit's older
# folder-based routing too, and a visitor opening /playground directly got that page without this entry point.
pages = [st.Page(str(HERE / "app_pages" / "inspector.py"), title="Attention inspector", icon=":material/search:",
                 default=True),
         st.Page(str(HERE / "app_pages" / "playground.py"), title="Teaching playground", icon=":material/school:")]
st.navigation(pages).run()
