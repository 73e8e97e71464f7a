"""Custom Streamlit components (components v2): thin Python wrappers, their HTML/JS/CSS in folders of their own."""

from .attention_canvas import attention_canvas

__all__ = ["attention_canvas"]
