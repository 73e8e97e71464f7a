"""Trained models in the Hugging Face layout, run by transformers, every attention traced by ``attention()``.

Imported lazily (by ``model.load`` when a directory holds a transformers config): the app's cold start on its own
models does not pay for importing transformers. Offline always: every load passes ``local_files_only=True`` and
never runs remote code (the app also sets HF_HUB_OFFLINE at start-up).
"""

from .interface import ATTENTION_NAME, call_context, inspector_attention
from .pipeline import HFPipeline, load_hf
from .tokens import TextTokenizer

__all__ = ["ATTENTION_NAME", "HFPipeline", "TextTokenizer", "inspector_attention", "load_hf", "call_context"]
