"""Trained models in the Hugging Face layout, run by transformers, every attention traced by ``attention()``.

Imported lazily (by ``model.load`` when a directory holds a transformers config): the app's cold start on its own
models does not pay for importing transformers. Offline always: nothing is downloaded.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import transformers  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

from .capture import ATTENTION_NAME, inspector_attention, traced_call  # noqa: E402
from .pipeline import HFPipeline, load_hf  # noqa: E402
from .tokens import TextTokenizer  # noqa: E402

__all__ = ["ATTENTION_NAME", "HFPipeline", "TextTokenizer", "inspector_attention", "load_hf", "traced_call"]
