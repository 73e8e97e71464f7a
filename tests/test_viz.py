"""viz/: pure figure and table builders, checked against the trace they are given."""

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

import viz
from model import ModelConfig, Transformer, allowed_matrix
from tests.forward import forward
from viz.heatmap import payload

SRC = ["the", "cat", "<script>", "the", "[EOS]"]  # repeated token + HTML
TGT = ["[BOS]", "a", "b", "a"]


@pytest.fixture(scope="module")
def trace():
    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab_size=20, tgt_vocab_size=12, d_model=16, n_heads=2, n_encoder_layers=1,
                      n_decoder_layers=2, d_ff=32, max_len=16)
    model = Transformer(cfg).eval()
    src = torch.tensor([[5, 6, 7, 5, 2, 0]])  # one [PAD] at the end: a real padding mask
    tgt = torch.tensor([[1, 4, 5, 4]])
    with torch.no_grad():
        out = forward(model, src, tgt, capture=True)
    return out.trace.numpy()


SRC_PADDED = SRC + ["[PAD]"]


def spec(fig) -> dict:
    return json.loads(pio.to_json(fig.to_dict(), validate=False))


def validated(fig) -> go.Figure:
    """Plotly's own validation of a figure we built without it (catches misspelt properties)."""
    return go.Figure(fig.to_dict())


def test_token_labels_distinct_escaped_and_never_read_as_numbers():
    labels = viz.token_labels(SRC)
    assert len(set(labels)) == len(SRC)
    assert labels[0] == "0·the" and labels[3] == "3·the"  # position·token: "1·2" never reads as twelve
    assert "<script>" not in "".join(labels) and "&lt;script&gt;" in labels[2]
    assert viz.token_labels(["[BOS]", "2"], ["2", "0"]) == ["0·[BOS] → 2", "1·2 → 0"]  # what a decoder row produces


def reasons_of(rec, head=0):
    return viz.head_reasons(rec, head)


def test_attention_heatmap_axes_hover_values_and_masks(trace):
    rec = trace["decoder.1.self_attn"]
    w = rec.weights[0, 1]
    labels = viz.token_labels(TGT)
    fig = viz.attention_heatmap(w, labels, labels, reasons=reasons_of(rec, 1))
    validated(fig)
    s = spec(fig)
    hm = s["data"][0]
    assert hm["x"] == labels and hm["y"] == labels
    assert len(set(hm["x"])) == 4  # "a" repeats but the labels stay distinct
    assert "query %{y}" in hm["hovertemplate"] and "key %{x}" in hm["hovertemplate"] and "%{z" in hm["hovertemplate"]
    assert hm["z"]["dtype"] == "f4"
    (z,) = viz.figure_matrices(s)
    allowed = np.tril(np.ones((4, 4), bool))
    assert (w[~allowed] == 0).all()
    np.testing.assert_array_equal(z, w.astype(np.float32))  # masked weights are exactly 0, under the overlay
    assert np.isfinite(z).all()
    overlay = [t for t in s["data"] if t["type"] == "scatter"]
    assert len(overlay) == 1 and "masked (causal)" in overlay[0]["text"] and overlay[0]["fillpattern"]["shape"]
    assert overlay[0]["fillcolor"] == viz.MASK_COLOUR  # one grey for every masked cell, in every view
    assert hm["zmin"] == 0 and hm["zmax"] == 1 and hm["colorscale"] == "Viridis"  # sequential 0..1 for weights


def test_padding_mask_is_its_own_overlay(trace):
    rec = trace["decoder.0.cross_attn"]
    reasons = reasons_of(rec)
    assert list(reasons) == ["padding"]
    assert reasons["padding"][:, -1].all() and not reasons["padding"][:, :-1].any()
    s = spec(viz.attention_heatmap(rec.masked[0, 0], viz.token_labels(TGT), viz.token_labels(SRC_PADDED),
                                   stage="masked", reasons=reasons))
    assert s["data"][0]["zmid"] == 0 and "zmin" not in s["data"][0]  # diverging around 0 for scores
    assert [t["name"] for t in s["data"][1:]] == ["masked (padding)"]
    (z,) = viz.figure_matrices(s)
    assert (z[:, -1] == 0).all() and np.isfinite(z).all()  # -inf is drawn by the overlay, 0 underneath
    np.testing.assert_array_equal(z[:, :-1], rec.masked[0, 0][:, :-1])
    x0 = [x for x in s["data"][1]["x"] if x is not None]
    assert min(x0) == len(SRC_PADDED) - 1.5 and max(x0) == len(SRC_PADDED) - 0.5  # overlay covers the [PAD] column


def test_every_mask_reason_gets_its_own_hatch_in_the_same_grey():
    reasons = np.array([["", "causal", "causal"], ["window", "", "causal"], ["padding", "other", ""]], dtype=object)
    s = spec(viz.attention_heatmap(np.eye(3), ["a", "b", "c"], ["a", "b", "c"], reasons=reasons))
    overlays = {t["name"]: t for t in s["data"][1:]}
    assert set(overlays) == {"masked (causal)", "masked (window)", "masked (padding)", "masked (other)"}
    assert len({o["fillpattern"]["shape"] for o in overlays.values()}) == 4
    assert {o["fillcolor"] for o in overlays.values()} == {viz.MASK_COLOUR}


def wire_bytes(z: dict) -> int:
    """Bytes of a typed array as Streamlit sends it: Plotly's to_json escapes "/" as \\u002f."""
    return len(json.dumps(z).replace("/", "\\u002f"))


def softmax_rows(T: int, seed: int = 0) -> np.ndarray:
    s = np.random.default_rng(seed).normal(size=(T, T)) * 2
    return (np.exp(s) / np.exp(s).sum(1, keepdims=True)).astype(np.float32)


def test_payload_bytes_per_cell():
    for T, limit, dtype in ((200, 6.0, "f4"), (300, 1.5, "u1")):
        w = softmax_rows(T)
        causal = np.tril(np.ones((T, T), bool))
        labels = [str(i) for i in range(T)]
        for fig in (viz.attention_heatmap(w, labels, labels),
                    viz.attention_heatmap(w * causal, labels, labels, reasons=np.where(causal, "", "causal"))):
            z = spec(fig)["data"][0]["z"]
            assert z["dtype"] == dtype
            per_cell = wire_bytes(z) / (T * T)
            assert per_cell <= limit, (T, per_cell)
    q, extra = payload(w)
    lo, step = extra["quantised"]
    assert np.abs(viz.decode_quantised(q, lo, step) - w).max() <= step / 2 + 1e-6


def test_quantised_hover_names_the_scale():
    w = np.linspace(0, 1, 300 * 300, dtype=np.float32).reshape(300, 300)
    s = spec(viz.attention_heatmap(w, [str(i) for i in range(300)], [str(i) for i in range(300)]))
    assert "quantised" in s["data"][0]["hovertemplate"]
    assert len(s["layout"]["xaxis"]["tickvals"]) <= 40  # long sequences: sparse ticks


def test_stage_panels_follow_the_record(trace):
    rec = trace["decoder.1.self_attn"]
    labels = viz.token_labels(TGT)
    panels = viz.stage_panels(rec, 1, labels, labels)
    keys = [p.key for p in panels]
    assert keys == ["X", "Q", "K", "V", "scores", "scaled", "mask", "masked", "weights", "context", "concat",
                    "output"]
    by = {p.key: p for p in panels}
    for key, field in (("Q", rec.q[0, 1]), ("K", rec.k[0, 1]), ("V", rec.v[0, 1]), ("scores", rec.scores[0, 1]),
                       ("scaled", rec.scaled[0, 1]), ("context", rec.context[0, 1]), ("concat", rec.concat[0]),
                       ("output", rec.output[0])):
        (z,) = viz.figure_matrices(spec(by[key].figure))
        np.testing.assert_array_equal(z, field.astype(np.float32))
        assert by[key].shape == viz.shape_text(field)
        validated(by[key].figure)
    s = spec(by["masked"].figure)
    (z,) = viz.figure_matrices(s)
    forbidden = np.isneginf(rec.masked[0, 1])
    assert forbidden.any() and (z[forbidden] == 0).all() and "−∞" in s["data"][1]["text"]
    np.testing.assert_array_equal(z[~forbidden], rec.masked[0, 1][~forbidden])
    assert by["scores"].shape == "(4 x 4)" and "sqrt" in by["scaled"].latex
    mask = spec(by["mask"].figure)  # the mask panel: white = may attend, hatched grey = forbidden (no red/green)
    assert mask["data"][0]["colorscale"] == [[0, "#ffffff"], [1, "#ffffff"]]
    assert mask["data"][1]["fillcolor"] == viz.MASK_COLOUR


def test_cross_attention_panels_show_both_inputs(trace):
    panels = viz.stage_panels(trace["decoder.0.cross_attn"], 0, viz.token_labels(TGT), viz.token_labels(SRC_PADDED))
    assert [p.key for p in panels][:2] == ["X", "X_kv"]


def test_stage_panels_say_what_a_family_does_not_record(trace):
    import dataclasses

    rec = dataclasses.replace(trace["encoder.0.self_attn"], query_input=None, key_input=None, output=None)
    panels = {p.key: p for p in viz.stage_panels(rec, 0, SRC_PADDED, SRC_PADDED, {"q": "after RoPE"})}
    assert panels["X"].figure is None and "not recorded" in panels["X"].caption
    assert panels["output"].figure is None and "not recorded" in panels["output"].caption
    assert "after RoPE" in panels["Q"].caption


def test_query_table_uses_captured_numbers(trace):
    rec = trace["decoder.1.self_attn"]
    t = viz.query_table(rec, 0, 2, TGT)
    np.testing.assert_array_equal(t["score q·k_j"], rec.scores[0, 0, 2])
    np.testing.assert_array_equal(t["weight"], rec.weights[0, 0, 2])
    np.testing.assert_allclose(t["sum(q*k_j) (display)"], t["score q·k_j"], atol=1e-5)
    assert list(t["masked_by"]) == ["", "", "", "causal"] and not t["may_attend"].iloc[3]
    labels = viz.token_labels(TGT)
    figs = viz.query_figures(rec, 0, 2, labels, labels)
    (ctx,) = viz.figure_matrices(spec(figs["context"]))
    np.testing.assert_array_equal(ctx[0], rec.context[0, 0, 2])
    (av,) = viz.figure_matrices(spec(figs["av"]))
    np.testing.assert_allclose(av.sum(0), rec.context[0, 0, 2], atol=1e-5)  # the weighted sum gives the context
    for f in figs.values():
        validated(f)


def test_thumbnail_grid_click_anywhere_opens_that_head(trace):
    names = ["decoder.0.cross_attn", "decoder.1.cross_attn"]
    w = np.concatenate([trace[n].weights[0] for n in names])  # (L * H, Tq, Tk)
    cells = [(layer, h) for layer in range(2) for h in range(2)]
    fig = viz.thumbnail_grid(w, viz.token_labels(TGT), viz.token_labels(SRC_PADDED), cells=cells, cols=2)
    validated(fig)
    s = spec(fig)
    mats = viz.figure_matrices(s)
    assert len(mats) == 4
    np.testing.assert_array_equal(mats[3], trace["decoder.1.cross_attn"].weights[0, 1])
    assert s["layout"]["hoverdistance"] == -1  # a click anywhere goes to the nearest target
    for n in range(4):  # every cell of every thumbnail is a click target of that thumbnail (short sequences)
        targets = s["data"][2 * n + 1]
        assert targets["type"] == "scatter" and {c[0] for c in targets["customdata"]} == {n}
        assert len(targets["x"]) == w.shape[1] * w.shape[2]
    assert viz.clicked_cell({"selection": {"points": [{"customdata": [3]}]}}, cells) == (1, 1)
    assert viz.clicked_cell({"selection": {"points": [{"customdata": [1]}]}}, cells) == (0, 1)
    assert viz.clicked_cell({"selection": {"points": []}}, cells) is None
    assert viz.clicked_cell(None, cells) is None
    assert viz.grid_is_readable(128, 128) and not viz.grid_is_readable(129, 10)


def test_overview_mosaic_is_one_png_under_a_byte_per_thumbnail_cell():
    rng = np.random.default_rng(0)
    thumbs = []
    for _ in range(144):  # a 12 x 12 model's heads, max-pooled to 64 x 64 (uint8, 255 = weight 1)
        x = rng.random((64, 64)) ** 8
        thumbs.append(np.round(np.tril(x / x.max(-1, keepdims=True)) * 255).astype(np.uint8))
    cells = [(layer, h) for layer in range(12) for h in range(12)]
    fig = viz.overview_mosaic(thumbs, cells, cols=12, title="t", note="max-pooled")
    validated(fig)
    s = spec(fig)
    assert [t["type"] for t in s["data"]] == ["image", "scatter"]
    png = s["layout"]["meta"]["png_bytes"]
    assert png / (144 * 64 * 64) <= 1.0, png
    assert len(json.dumps(s)) / (144 * 64 * 64) <= 1.0  # the whole figure, click targets included
    assert viz.clicked_cell({"selection": {"points": [{"customdata": [13]}]}}, cells) == (1, 1)
    assert len(s["data"][1]["x"]) == 144  # one click target per thumbnail (the nearest takes the click)


def test_small_thumbnails_are_scaled_by_the_browser_not_in_the_png():
    import base64
    import io

    from PIL import Image

    thumbs = [np.full((16, 16), n, np.uint8) for n in range(12)]
    cells = [(0, h) for h in range(12)]
    s = spec(viz.overview_mosaic(thumbs, cells, cols=12))
    image = s["data"][0]
    png = base64.b64decode(image["source"].split(",", 1)[1])
    W, H = Image.open(io.BytesIO(png)).size
    assert H == 16 and W == 12 * 16 + 11 * 1  # one pixel per thumbnail cell, 1-pixel gaps
    assert s["layout"]["height"] >= 16 * 4  # drawn at least ~64 px tall
    assert image.get("zsmooth") in (None, False)  # plotly.js then draws it pixelated


def test_mosaic_pixels_are_the_thumbnails():
    import base64
    import io

    from PIL import Image

    thumbs = [np.array([[255, 0], [0, 255]], np.uint8), np.array([[0.0, np.nan], [1.0, 0.5]], np.float32)]
    png, W, H = viz.mosaic_png(thumbs, cols=2, tile=(2, 2), gap=1)
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.shape == (H, W) == (2, 5)
    np.testing.assert_array_equal(img[:, :2], [[253, 0], [0, 253]])
    np.testing.assert_array_equal(img[:, 3:], [[0, 254], [253, 126]])  # NaN (masked) -> the grey entry
    assert (img[:, 2] == 255).all() and Image.open(io.BytesIO(png)).info["transparency"] == 255  # see-through gap
    del base64


def test_head_view_html_is_safe_and_counts_hidden_lines(trace):
    rec = trace["decoder.1.self_attn"]
    w = rec.weights[0]
    allowed = allowed_matrix(rec)
    sel = viz.select_lines(w, [0, 1], 0.2, allowed)
    assert sel.total == 2 * 10 and sel.hidden == sel.total - len(sel.lines)
    assert (sel.lines[:, 3] >= 0.2).all()
    page, height = viz.head_view_html(["<script>alert(1)</script>", "a", "b", "a"], TGT, sel, [0, 1],
                                      left_title="query", right_title="key")
    assert "<script>alert(1)" not in page and r"\u003cscript\u003ealert(1)" in page  # escaped JSON data
    assert page.count("<script>") == 1 and height > 0


def test_escaping_in_decoding_titles(trace):
    fig = viz.cross_row_figure(trace["decoder.1.cross_attn"].weights[0], 2, viz.token_labels(SRC_PADDED),
                               '<a href="javascript:alert(1)">x</a>', 1)
    assert "<a" not in json.dumps(spec(fig)) and "&lt;a href" in spec(fig)["layout"]["title"]["text"]


def test_csv_neutralises_formulas_and_json_keeps_the_text():
    import pandas as pd

    df = pd.DataFrame({"query_token": ["=1+1", "+SUM(A1)", "-", "@x", "\tx", "ok"], "weight": [-0.5, 1, 2, 3, 4, 5]})
    lines = viz.to_csv_bytes(df).decode().splitlines()
    assert lines[1].startswith("'=1+1") and lines[2].startswith("'+SUM") and lines[3].startswith("'-,")
    assert lines[4].startswith("'@x") and lines[6] == "ok,5.0"
    assert lines[1].endswith(",-0.5")  # numbers are untouched
    assert [r["query_token"] for r in json.loads(viz.to_json_bytes(df))["rows"]][:2] == ["=1+1", "+SUM(A1)"]


def test_decoding_rows_and_alternatives(trace):
    w = trace["decoder.1.cross_attn"].weights[0]
    rows = viz.cross_rows(w, 2)
    np.testing.assert_array_equal(rows[:2], w[:, 2])
    np.testing.assert_allclose(rows[2], w[:, 2].mean(0), atol=1e-6)
    fig = viz.cross_row_figure(w, 2, viz.token_labels(SRC_PADDED), "a", 1)
    validated(fig)
    assert spec(fig)["data"][0]["y"][-1].startswith("mean of heads")
    probs = np.array([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    alt = viz.top_alternatives(probs[0], lambda i: "<x>" if i == 1 else str(i), k=2)
    assert list(alt["token"]) == ["<x>", "2"] and list(alt["probability"]) == [0.6, 0.3]
    fig = viz.alternatives_figure(alt)
    validated(fig)
    assert "&lt;x&gt;" in spec(fig)["data"][0]["y"][0]


def test_tables_and_exports(trace):
    df = viz.selection_table(trace, "decoder.1.self_attn", 1, SRC_PADDED, TGT)
    assert len(df) == 16 and set(df["head"]) == {1}
    assert df["masked"].sum() == 6 and set(df.loc[df["masked"], "mask_reason"]) == {"causal"}
    assert viz.to_csv_bytes(df).decode().splitlines()[0].startswith("stack,layer,sublayer,kind,head")
    data = json.loads(viz.to_json_bytes(df, {"source": "x"}))
    assert data["meta"] == {"source": "x"} and len(data["rows"]) == 16
    assert any(r["masked_score"] is None for r in data["rows"])  # -inf has no JSON form: null
    assert len(viz.selection_table(trace, "decoder.1.self_attn", None, SRC_PADDED, TGT)) == 32


@pytest.mark.parametrize("kind", ["causal", "padding", "both", "scattered"])
def test_mask_regions_cover_exactly_the_forbidden_cells(kind):
    T = 9
    causal = np.triu(np.ones((T, T), bool), 1)
    padding = np.zeros((T, T), bool)
    padding[:, -3:] = True
    forbidden = {"causal": causal, "padding": padding, "both": causal | padding,
                 "scattered": np.random.default_rng(1).random((T, T)) < 0.3}[kind]
    xs, ys = viz.heatmap.mask_regions(forbidden)
    covered = np.array([[_inside(xs, ys, j + 0.1, i + 0.2) for j in range(T)] for i in range(T)])
    np.testing.assert_array_equal(covered, forbidden)
    if kind != "scattered":
        assert len(xs) <= 2 * T + 4  # one staircase polygon, not a rectangle per row


def _inside(xs, ys, px, py) -> bool:
    """Even-odd point-in-polygon test over None-separated polygons."""
    inside = False
    polys, cur = [], []
    for x, y in zip(xs, ys, strict=True):
        if x is None:
            polys.append(cur)
            cur = []
        else:
            cur.append((x, y))
    for poly in polys:
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
            if (y1 > py) != (y2 > py) and px < x1 + (py - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
    return inside
