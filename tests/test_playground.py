"""AppTest of app_pages/playground.py and tests of the pure figures in viz/playground.py."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from viz import playground as vp

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "playground.py")
NUMERIC_KEYS = ("x", "y", "z")


def decode(value):
    """A Plotly JSON array, plain list or base64 typed array {"dtype", "bdata", "shape"}, as a float array."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            shape = value["shape"]
            shape = [int(s) for s in shape.split(",")] if isinstance(shape, str) else list(shape)
            arr = arr.reshape(shape)
        return arr.astype(float)
    return np.array([[np.nan if x is None else x for x in row] if isinstance(row, list) else
                      (np.nan if row is None else row) for row in value], dtype=float)


def specs(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def traces(at) -> dict[str, np.ndarray]:
    """Trace name -> decoded z (heatmaps) of every chart on the page (first occurrence wins)."""
    out: dict[str, np.ndarray] = {}
    for spec in specs(at):
        for trace in spec["data"]:
            if trace.get("type") == "heatmap" and "name" in trace:
                out.setdefault(trace["name"], decode(trace["z"]))
    return out


def assert_no_nan(at):
    for spec in specs(at):
        for trace in spec["data"]:
            if trace.get("fill") == "toself":  # mask outlines: None separates the polygons
                continue
            for key in NUMERIC_KEYS:
                if key in trace and not (isinstance(trace[key], list) and trace[key] and isinstance(
                        trace[key][0], str)):
                    assert np.isfinite(decode(trace[key])).all(), f"non-finite {key} in {trace.get('name')}"


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def run_page(**state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def text_of(at) -> str:
    parts = [e.value for kind in ("info", "warning", "error", "success", "markdown", "caption")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


@pytest.fixture(scope="module")
def default_page() -> AppTest:
    return run_page()


def test_renders_with_defaults(default_page):
    at = default_page
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 20
    assert len(at.latex) >= 8
    assert_no_nan(at)


def test_chart_values_equal_an_independent_numpy_computation(default_page):
    t = traces(default_page)
    X, Wq, Wk, Wv = t["X"], t["W_query"], t["W_key"], t["W_value"]
    assert X.shape == (7, 8) and Wq.shape == (8, 4) and Wv.shape == (8, 3)
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    omega = Q @ K.T
    alpha = softmax(omega / np.sqrt(4))
    np.testing.assert_allclose(t["Q"], Q, atol=1e-5)
    np.testing.assert_allclose(t["omega"], omega, atol=1e-4)
    np.testing.assert_allclose(t["alpha"], alpha, atol=1e-5)
    np.testing.assert_allclose(t["Z"], alpha @ V, atol=1e-5)
    # masking before and after softmax agree, and match a NumPy -inf masked softmax
    ref = softmax(np.where(np.triu(np.ones((7, 7)), 1) > 0, -np.inf, omega / 2.0))
    np.testing.assert_allclose(t["masked_before"], ref, atol=1e-5)
    np.testing.assert_allclose(t["masked_after"], t["masked_before"], atol=1e-6)


def test_query_bar_is_the_second_row_of_alpha(default_page):
    alpha = traces(default_page)["alpha"]
    bars = [tr for s in specs(default_page) for tr in s["data"] if tr.get("type") == "bar"]
    np.testing.assert_allclose(decode(bars[0]["y"]), alpha[1], atol=1e-6)
    assert default_page.selectbox(key="pg_query").value == 1


def test_diagonal_zero_no_nan_in_charts_and_explained():
    at = run_page(pg_diagonal=0, pg_causal=True)
    assert not at.exception
    assert_no_nan(at)
    text = text_of(at)
    assert "NaN" in text and "diagonal=0" in text
    naive = [df.value for df in at.dataframe if "NaN" in df.value.astype(str).to_numpy()]
    assert naive and (naive[0].iloc[0] == "NaN").all()  # first row fully masked -> NaN
    t = traces(at)
    assert np.all(t["masked_before"][0] == 0) and np.all(t["alpha"][0] == 0)  # the app's attention: zeros


def test_scaling_off_feeds_the_raw_scores():
    t = traces(run_page(pg_scale=False, pg_d_k=16))
    np.testing.assert_allclose(t["alpha"], softmax(t["omega"]), atol=1e-5)


def test_cross_attention_lengths_6_and_4():
    at = run_page(pg_sentence="one two three four five six", pg_sentence2="a b c d", pg_d_in2=3)
    assert not at.exception
    t = traces(at)
    assert t["cross_alpha"].shape == (6, 4) and t["X2"].shape == (4, 3)
    np.testing.assert_allclose(t["cross_alpha"].sum(axis=1), 1.0, atol=1e-5)


def test_every_control_can_change():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    changes = [("text_input", "pg_sentence", "the cat saw the cat"), ("number_input", "pg_seed", 7),
               ("slider", "pg_d_in", 5), ("slider", "pg_d_k", 1), ("slider", "pg_d_v", 2),
               ("toggle", "pg_scale", False), ("toggle", "pg_causal", True), ("select_slider", "pg_diagonal", 2),
               ("selectbox", "pg_query", 4), ("slider", "pg_heads", 3), ("toggle", "pg_common_dhead", False),
               ("text_input", "pg_sentence2", "x y"), ("slider", "pg_d_in2", 9), ("toggle", "pg_cross", False)]
    for kind, key, value in changes:
        getattr(at, kind)(key=key).set_value(value)
        at.run()
        assert not at.exception, (key, at.exception)
    assert_no_nan(at)
    # repeated tokens stay distinct on the axes
    assert traces(at)["alpha"].shape == (5, 5)


@pytest.mark.parametrize("sentence, message", [
    ("", "Type a sentence"),
    ("   ,", None),
    (" ".join(["word"] * 300), "only the first 64"),
    ("I 💖 🍰 <b>cake</b> & <script>x</script>", None),
    ("alone", "Only one token"),
])
def test_bad_inputs_render_with_a_message(sentence, message):
    at = run_page(pg_sentence=sentence, pg_d_k=1)
    assert not at.exception
    if message:
        assert message in text_of(at)
    assert_no_nan(at)
    if sentence.strip() and message != "Type a sentence":
        assert traces(at)["alpha"].shape[0] <= 64


def test_issue_14_playground_query_selection_survives_any_input_sequence():
    """Reported: causal mask on -> diagonal 0 -> a 2,000-character sentence -> an emoji sentence -> HTML raised
    TypeError ('>=' between str and int) at the pg_query selection, and it stayed on the page."""
    at = run_page()
    at.toggle(key="pg_causal").set_value(True).run()
    at.select_slider(key="pg_diagonal").set_value(0).run()
    for sentence in ("word " * 400, "😀 🎉 💖 🍰", "<script>alert(1)</script>", "Life is short, eat dessert first"):
        at.text_input(key="pg_sentence").set_value(sentence).run()
        assert not at.exception, (sentence[:20], at.exception)
    assert at.selectbox(key="pg_query").value in range(7)


def test_labels_are_0_based_as_in_the_inspector(default_page):
    spec = next(s for s in specs(default_page) if any(t.get("name") == "alpha" for t in s["data"]))
    assert spec["layout"]["yaxis"]["ticktext"][0] == "0·Life"
    assert any(t.get("colorscale") for t in spec["data"] if t.get("name") == "alpha")


def test_shrinking_sentence_keeps_query_valid():
    at = run_page()
    at.selectbox(key="pg_query").set_value(6).run()
    at.text_input(key="pg_sentence").set_value("short one").run()
    assert not at.exception and at.selectbox(key="pg_query").value == 1


# --- pure figures ---

def test_labels_are_escaped_and_shortened():
    fig = vp.matrix_figure(np.eye(2), "m", ["<b>x</b>", "y" * 40], ["a", "b"])
    ticks = fig.layout.yaxis.ticktext
    assert ticks[0] == "&lt;b&gt;x&lt;/b&gt;" and len(ticks[1]) <= vp.MAX_LABEL_CHARS
    assert "(2 × 2)" in fig.layout.title.text


def test_weights_use_fixed_0_1_scale_and_scores_diverge():
    w = vp.matrix_figure(np.full((2, 2), 0.5), "w", kind="weights").data[0]
    s = vp.matrix_figure(np.array([[-3.0, 1.0]]), "s").data[0]
    assert (w.zmin, w.zmax) == (0.0, 1.0) and s.zmid == 0.0
    assert w.texttemplate and vp.matrix_figure(np.zeros((20, 20)), "big").data[0].texttemplate is None
    assert vp.matrix_figure(np.zeros((3, 11)), "wide").data[0].texttemplate is None


def test_figures_refuse_nan():
    with pytest.raises(ValueError, match="NaN"):
        vp.matrix_figure(np.array([[np.nan, 1.0]]), "bad")


def test_one_query_tables_and_formulas_come_from_the_breakdown():
    from model import teaching

    sent = teaching.tokenize("the cat saw the cat")
    steps = teaching.self_attention(teaching.embed(5, 8, 1), 7, 3, 1, causal=True)
    b = teaching.query_breakdown(steps, 3)
    table = vp.query_table(b, sent.labels)
    np.testing.assert_array_equal(table["α_3,j"], steps.weights[3])
    assert table["visible"].tolist() == [True] * 4 + [False]
    z = vp.weighted_values_table(b)
    np.testing.assert_allclose(z.loc["sum = z_3"], z.loc["row 3 of Z from attention()"], atol=1e-6)
    formulas = vp.query_formulas(b, steps.K[0], scale=True, show_row=True)
    assert f"= {b.omega[0]:.2f}" in formulas[1] and r"\dots" in formulas[1]  # d_k = 7: six terms shown
    assert r"\sqrt{7}" in formulas[2] and f"{b.weights[0]:.2f}" in formulas[2]
    assert "[" not in vp.query_formulas(b, steps.K[0], scale=False, show_row=False)[2]
    naive = vp.naive_table(np.array([[np.nan, np.nan], [0.25, 0.75]]), ["0·a", "1·b"])
    assert naive.loc["0·a"].tolist() == ["NaN", "NaN"] and naive.loc["1·b", "1·b"] == "0.75"


def test_each_sections_figures_carry_the_matrices_names():
    from model import teaching

    X = teaching.embed(4, 6, 2)
    steps = teaching.self_attention(X, 4, 3, 2, causal=True)
    labels = teaching.tokenize("a b c d").labels

    def names(figures):
        return [f.data[0].name for f in figures]

    assert {k: names(v) for k, v in vp.projection_figures(steps, labels).items()} == {
        "Q": ["X", "W_query", "Q"], "K": ["X", "W_key", "K"], "V": ["X", "W_value", "V"]}
    scores, context = vp.score_figures(steps, labels)
    assert names(scores) == ["Q", "K^T", "omega"] and names(context) == ["alpha", "V", "Z"]
    assert len(context[0].data) == 2  # alpha with the mask's hatching
    mh = teaching.multi_head(X, 2, 3, 3, 2)
    weights, outputs, projection = vp.multi_head_figures(mh, labels)
    assert len(weights.data) == 2 and names(projection) == ["concat", "W_out", "mh_output"]
    assert teaching.head_widths(6, 4, 5, 2, split=True) == (1, 1)
    assert teaching.head_widths(6, 4, 5, 2, split=False) == (5, 2)
