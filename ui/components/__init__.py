"""Custom Streamlit components (components v2): thin Python wrappers (the attention canvas's JS, CSS: viz/canvas/)."""

from .attention_canvas import attention_canvas

__all__ = ["attention_canvas"]
