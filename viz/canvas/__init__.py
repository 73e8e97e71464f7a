"""The attention canvas's JavaScript and CSS (plain files beside viz/tiles.py, which builds the parts they draw),
read as text by the hosts that mount it: ui/components/attention_canvas.py (Streamlit)."""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).parent
FILES = ("canvas.js",)  # one file for now


def renderer_js(host: str = "streamlit") -> str:
    """The renderer as one ES module text for ``host``."""
    if host != "streamlit":
        raise ValueError(f"no canvas host {host!r}: 'streamlit'")
    return "".join((DIR / name).read_text(encoding="utf-8") for name in FILES)


def renderer_css() -> str:
    """The renderer's stylesheet."""
    return (DIR / "style.css").read_text(encoding="utf-8")
