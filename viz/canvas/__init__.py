"""The attention canvas's JavaScript and CSS: plain files beside viz/tiles.py (which builds the parts they draw),
read as text by a host's Python wrapper (ui/components/attention_canvas.py for Streamlit). No bundler: the files
are joined in ``ORDER`` into one ES module, whose last file, ``host_<host>.js``, adapts it to one framework (the
seam is described at the top of canvas.js)."""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).parent
# Each file defines top-level functions and constants; only the host's file exports. Anything evaluated at load
# time uses what the files before it define (colours.js builds its tables first).
ORDER = ("colours.js", "wire.js", "geometry.js", "draw.js", "axes.js", "tooltip.js", "choices.js", "input.js",
         "sync.js", "canvas.js")
HOSTS = ("streamlit",)  # host_<name>.js


def renderer_js(host: str) -> str:
    """The renderer for ``host`` as one ES module text: the ``ORDER`` files, then ``host_<host>.js``."""
    if host not in HOSTS:
        raise ValueError(f"no canvas host {host!r}: one of {HOSTS}")
    names = (*ORDER, f"host_{host}.js")
    return "\n".join(f"// ---- viz/canvas/{name}\n" + (DIR / name).read_text(encoding="utf-8") for name in names)


def renderer_css() -> str:
    """The renderer's stylesheet (shared by every host)."""
    return (DIR / "style.css").read_text(encoding="utf-8")
