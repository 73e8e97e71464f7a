"""The app's figures and files (AppTest, the shipped dates model): the map as one self-contained HTML file from the
Export view, and the chart camera's format (PNG at 2x, or SVG) for every Plotly chart."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from tests.e2e_support import ROOT
from viz import standalone

SOURCE = "Saturday, November 21, 2026"


def app(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def cameras(at) -> list[dict]:
    return [json.loads(el.proto.config)["toImageButtonOptions"] for el in at.get("plotly_chart")]


def test_the_export_view_writes_the_map_as_one_html_file(shipped_app, monkeypatch):
    written = []
    original = standalone.standalone_html

    def spy(result, name, stage, head, view, **kw):
        written.append((name, stage, head, view, original(result, name, stage, head, view, **kw)))
        return written[-1][-1]
    monkeypatch.setattr(standalone, "standalone_html", spy)
    at = app(view="Export")
    assert not at.exception and written == []  # built only when asked
    at.button(key="prep_html").click().run()
    assert not at.exception
    ((name, stage, head, view, out),) = written
    assert (name, stage, head, view) == ("decoder.1.cross_attn", "weights", at.session_state["head"], None)
    label = next(b.proto.label for b in at.get("download_button") if b.proto.id.endswith("dl_html"))
    assert label == f"HTML of this map ({out.nbytes / 2**20:,.1f} MB)"
    assert out.exact_heads == (0, 1, 2, 3) and SOURCE in out.html  # the caption: the model and the text
    at.session_state["view"] = "Attention map"
    at.run()
    at.session_state["view"] = "Export"
    at.run()
    assert len(written) == 1  # kept with the traced call: not written again


def test_every_chart_camera_saves_png_at_2x_or_svg(shipped_app):
    at = app(view="Head grid")  # the attention map is the canvas, with its own PNG button
    assert not at.exception
    assert cameras(at) and all(c["format"] == "png" and c["scale"] == 2 for c in cameras(at))
    at.session_state["view"] = "Export"
    at.run()
    at.segmented_control(key="figure_format").set_value("SVG (vector)").run()
    for view in ("Head grid", "Step by step", "Statistics"):
        at.session_state["view"] = view
        at.run()
        assert not at.exception
        assert cameras(at) and all(c["format"] == "svg" for c in cameras(at)), view
        assert all(c["filename"] for c in cameras(at))
