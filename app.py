"""Entry point: `streamlit run app.py`. Opens on the attention inspector; other pages sit beside it."""

import os
from pathlib import Path

import streamlit as st
import torch

HERE = Path(__file__).resolve().parent


@st.cache_resource
def configure_torch() -> int:
    """Once per server process: torch's intra-op threads (ATTN_TORCH_THREADS, default 1).

    The models are small and sessions run side by side: one thread per call avoids threads of concurrent
    calls spinning against each other on a few cores (see the README's benchmarks).
    """
    threads = max(1, int(os.environ.get("ATTN_TORCH_THREADS", "1")))
    torch.set_num_threads(threads)
    return threads


configure_torch()
st.set_page_config(page_title="Attention inspector", page_icon=":material/search:", layout="wide")

pages = [st.Page(str(HERE / "pages" / "inspector.py"), title="Attention inspector", icon=":material/search:",
                 default=True)]
if (HERE / "pages" / "playground.py").is_file():
    pages.append(st.Page(str(HERE / "pages" / "playground.py"), title="Teaching playground", icon=":material/school:"))

st.navigation(pages).run()
