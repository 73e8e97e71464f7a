"""Entry point: `streamlit run app.py`. Opens on the attention inspector; the teaching playground sits beside it."""

from pathlib import Path

import streamlit as st

from model.runtime import configure_cpu

HERE = Path(__file__).resolve().parent


@st.cache_resource
def configure_once() -> dict:
    """Once per server process: torch threads (ATTN_TORCH_THREADS, default 1: small models, sessions side by
    side, threads of concurrent calls would spin against each other) and the allocator (model/runtime.py)."""
    return configure_cpu()


configure_once()
st.set_page_config(page_title="Attention inspector", page_icon=":material/search:", layout="wide")

# The pages live in app_pages/, not pages/: a pages/ folder next to st.navigation turns on Streamlit's older
# folder-based routing too, and a visitor opening /playground directly got that page without this entry point.
pages = [st.Page(str(HERE / "app_pages" / "inspector.py"), title="Attention inspector", icon=":material/search:",
                 default=True),
         st.Page(str(HERE / "app_pages" / "playground.py"), title="Teaching playground", icon=":material/school:")]
st.navigation(pages).run()
