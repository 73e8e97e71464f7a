"""The attention canvas's JavaScript and CSS: plain files beside viz/tiles.py (which builds the parts they draw),
read as text by each host's Python side (ui/components/attention_canvas.py for Streamlit, viz/notebook.py for
Jupyter, viz/standalone.py for a self-contained HTML file). No bundler: the files are joined in ``ORDER`` into one
ES module, then the host's own helpers (``HOSTS``), then ``host_<host>.js``, which adapts it to one framework (the
seam is described at the top of canvas.js)."""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).parent
# Each file defines top-level functions and constants; only the host's file exports. Anything evaluated at load
# time uses what the files before it define (colours.js builds its tables first).
ORDER = ("colours.js", "wire.js", "geometry.js", "draw.js", "axes.js", "tooltip.js", "choices.js", "input.js",
         "sync.js", "snapshot.js", "held.js", "canvas.js")
# host -> the framework-free helpers it uses besides the core (find in text and the query strip, for hosts whose
# Python side has no page of its own to put them on), joined before host_<host>.js
HOSTS = {"streamlit": (), "anywidget": ("find.js", "strip.js"), "static": ("find.js",)}


def renderer_js(host: str) -> str:
    """The renderer for ``host`` as one ES module text: the ``ORDER`` files, the host's helpers, ``host_<host>.js``."""
    if host not in HOSTS:
        raise ValueError(f"no canvas host {host!r}: one of {tuple(HOSTS)}")
    names = (*ORDER, *HOSTS[host], f"host_{host}.js")
    return "\n".join(f"// ---- viz/canvas/{name}\n" + (DIR / name).read_text(encoding="utf-8") for name in names)


def renderer_css() -> str:
    """The renderer's stylesheet (shared by every host)."""
    return (DIR / "style.css").read_text(encoding="utf-8")
