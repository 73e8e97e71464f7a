"""Test-wide settings."""

import torch

# The app computes with one intra-op thread (app.py, ATTN_TORCH_THREADS). Reference runs in the tests use the
# same, so that "the chart holds exactly the model's numbers" compares like with like: another thread count
# changes the summation order and the last float bits.
torch.set_num_threads(1)


def clear_app_caches() -> None:
    """Empty every cache the app shares between sessions (Streamlit's and the traced calls')."""
    import streamlit as st

    from ui.models import clear_models
    from ui.tracing import clear_cache

    st.cache_resource.clear()
    st.cache_data.clear()
    clear_cache()
    clear_models()
