"""The image page (app_pages/images.py, ui/vision/) through Streamlit's AppTest, on the shipped shapes model: the
overlay draws the trace's own row for every selection, links and saved sessions reopen a view, hostile uploads end in
messages, and knocking out the red object's patches is a call of its own whose prediction the page reports."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import clear_app_caches
from PIL import Image
from streamlit.testing.v1 import AppTest

from model import RecordName, load, run
from model.analysis.patch_maps import patch_knockouts, query_row
from model.analysis.tokens import token_norms
from ui.vision.inputs import Picture, sample_picture
from ui.vision.links import parse_session, session_bytes
from ui.vision.page import ImageSelection
from ui.vision.view import WHAT_IF
from ui.vision.whatif import target_patches
from viz import figure_matrices, overlay

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "app_pages" / "images.py")
SHIPPED = ROOT / "checkpoints"
SEED = 7


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """Shipped checkpoints, no models directory, local use, empty caches."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    for name in ("INSPECTOR_MODELS", "INSPECTOR_PUBLIC", "INSPECTOR_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    clear_app_caches()
    yield
    clear_app_caches()


@pytest.fixture(scope="module")
def shapes():
    return load(SHIPPED / "shapes", "cpu")


@pytest.fixture(scope="module")
def traced(shapes):
    """The sample's call, run here as the page runs it."""
    return run(shapes, sample_picture(SEED).image)


def names_of(result) -> list[str]:
    return sorted((n for n in result.trace if RecordName.parse(n).kind == "encoder self"),
                  key=lambda n: RecordName.parse(n).layer)


def page(query: dict | None = None, state: dict | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    for k, v in ({"sample": str(SEED)} if query is None else query).items():
        at.query_params[k] = v
    for k, v in (state or {}).items():
        at.session_state[k] = v
    return at.run()


def specs(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def drawn(at) -> np.ndarray:
    """The heat layer of the overlay on the page (the chart whose meta names a query patch), as sent."""
    spec = next(s for s in specs(at) if "query_patch" in (s["layout"].get("meta") or {}))
    return figure_matrices(spec)[0]


def plain(text: str) -> str:
    """Page text as read: markdown escapes and bidi isolates (ui.text.md) removed."""
    return str(text).replace("\\", "").replace("\u2068", "").replace("\u2069", "")


def text_of(at) -> str:
    return plain("\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "success")
                            for e in getattr(at, kind)))


def test_the_page_opens_on_a_sample_with_its_prediction_and_the_cls_row(traced):
    at = page()
    assert not at.exception, [e.value for e in at.exception]
    label, p = traced.output_text, traced.probability
    assert f"Prediction for sample {SEED}: {label}**, probability {p:.3f}" in text_of(at)
    names = names_of(traced)
    cls = traced.source.tokens.index("[CLS]")
    expected = overlay.patch_values(query_row(traced.trace, names, len(names) - 1, "mean", cls),
                                    traced.patch_positions, traced.patch_grid)
    np.testing.assert_allclose(drawn(at), expected, rtol=0, atol=1e-6)  # the overlay is the trace's own row
    assert at.query_params["sample"] == str(SEED) and at.query_params["head"] == "mean"
    assert at.sidebar.selectbox(key="image_model").options == ["shapes"]  # the text models open on the inspector


@pytest.mark.parametrize("how", [0, 1, "rollout"])
def test_every_selection_draws_the_traces_row(traced, how):
    names = names_of(traced)
    query = traced.source.tokens.index("r3c5")
    at = page(state={"img_layer": 0, "img_how": how, "img_query": query})
    assert not at.exception
    row = query_row(traced.trace, names, 0, how, query)
    if isinstance(how, int):
        np.testing.assert_array_equal(row, traced.trace.row(names[0], how, query).weights)
    values = drawn(at)
    np.testing.assert_allclose(values, overlay.patch_values(row, traced.patch_positions, traced.patch_grid), atol=1e-6)
    other = query_row(traced.trace, names, 0, 1 if how == 0 else 0, query)
    assert not np.allclose(values.ravel(), np.asarray(other)[list(traced.patch_positions)], atol=1e-4)
    spec = next(s for s in specs(at) if "query_patch" in (s["layout"].get("meta") or {}))
    assert spec["layout"]["meta"]["query_patch"] == list(traced.patch_positions).index(query)


def test_a_link_opens_its_view_and_bad_values_end_in_messages(traced):
    at = page({"model": "shapes", "sample": str(SEED), "layer": "1", "head": "2", "query": "5"})
    assert not at.exception
    assert (at.session_state["img_layer"], at.session_state["img_how"], at.session_state["img_query"]) == (1, 2, 5)
    assert not at.warning
    bad = page({"model": "nope", "sample": "-4", "layer": "99", "head": "x", "query": "1e9"})
    assert not bad.exception
    warning = plain("\n".join(w.value for w in bad.warning))
    for needle in ("no image model called “nope”", "sample -4 is outside", "layer 99 is outside",
                   "head “x” is not a number", "query “1e9” is not a number"):
        assert needle in warning, needle
    assert bad.session_state["img_how"] == "mean"  # the default stands


def test_a_link_followed_later_in_the_session_is_read_and_the_pages_own_address_is_not():
    at = page()
    at.selectbox(key="img_how").set_value(1).run()
    assert at.session_state["img_how"] == 1 and at.query_params["head"] == "1"  # not undone by its own address
    at.query_params.clear()
    at.query_params.update({"model": "shapes", "sample": "3"})  # the inspector's link, or one pasted in
    at.run()
    assert not at.exception and at.session_state["image_seed"] == 3


def test_a_saved_session_reopens_the_view_and_an_upload_is_only_named(traced):
    sel = ImageSelection(layer=1, how="rollout", query=3)
    sample = sample_picture(SEED + 1)
    data = session_bytes(str(SHIPPED / "shapes"), sample, sel)
    at = page({})
    at.sidebar.file_uploader(key="img_session_file").upload("s.json", data, "application/json")
    at.run()
    assert not at.exception
    assert (at.session_state["image_seed"], at.session_state["img_layer"], at.session_state["img_how"],
            at.session_state["img_query"]) == (SEED + 1, 1, "rollout", 3)
    upload = Picture(image=sample.image, key="upload:x", name="cat.png", digest="ab" * 32)
    doc = json.loads(session_bytes(str(SHIPPED / "shapes"), upload, sel))
    assert doc["picture"] == {"upload": {"name": "cat.png", "sha256": "ab" * 32}}  # never the picture itself
    at = page({})
    at.sidebar.file_uploader(key="img_session_file").upload("s.json", json.dumps(doc).encode(), "application/json")
    at.run()
    assert "upload **cat.png**" in text_of(at)
    for broken, why in ((b"{", "not JSON"), (json.dumps({**doc, "extra": 1}).encode(), "fields"),
                        (json.dumps({**doc, "picture": {"upload": {"name": "x", "sha256": "zz"}}}).encode(),
                         "SHA-256")):
        with pytest.raises(ValueError, match=why):
            parse_session(broken)


def hostile_files() -> dict[str, tuple[bytes, str]]:
    """The issue's hostile pictures, made here: name -> (bytes, the message's words)."""
    def encoded(im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    jpeg = encoded(Image.new("RGB", (128, 128), "red"), "JPEG")
    return {
        "strip.png": (encoded(Image.new("RGB", (100_000, 1)), "PNG"), "is a strip, not a picture"),
        "bomb.png": (bomb, "20,000 x 20,000 pixels"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated or damaged"),
        "cmyk.png": (encoded(Image.new("CMYK", (8, 8)), "TIFF"), "a TIFF file (named .png)"),
        "spin.png": (gif.getvalue(), "a GIF file"),
    }


@pytest.mark.parametrize("name", list(hostile_files()))
def test_hostile_uploads_end_in_messages(name):
    data, words = hostile_files()[name]
    at = page({}, state={"image_source": "an upload"})
    at.sidebar.file_uploader(key="image_file").upload(name, data, "image/png")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = plain("\n".join(e.value for e in at.error))
    assert words in errors and name in errors


def test_a_16_bit_upload_is_read_with_a_note():
    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "PNG")
    at = page({}, state={"image_source": "an upload"})
    at.sidebar.file_uploader(key="image_file").upload("deep.png", buf.getvalue(), "image/png")
    at.run()
    assert not at.exception and not at.error
    assert "16-bit greyscale, reduced to 8 bits" in text_of(at)
    assert "Prediction for deep.png:" in text_of(at)


def test_knocking_out_the_red_object_is_a_call_of_its_own(shapes, traced):
    picture = sample_picture(SEED)
    names = names_of(traced)
    T = len(traced.source.tokens)
    red = target_patches(tuple(traced.patch_grid), picture)
    assert red, "a sample always holds a red object"
    spec = patch_knockouts(names, shapes.info.n_heads, T, [traced.patch_positions[p] for p in red])
    after = run(shapes, picture.image, knockouts=spec)
    truth = list(shapes.info.classes).index(picture.label)

    def probs(result):
        logits = result.logits.rows().numpy().astype(np.float64).reshape(-1)
        e = np.exp(logits - logits.max())
        return e / e.sum()
    assert probs(after)[truth] < probs(traced)[truth]  # without the red object the model is less sure of its shape
    at = page(state={"img_section": WHAT_IF})
    at.button(key="img_ko_red").click().run()
    at.button(key="img_ko_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = text_of(at)
    assert f"With {len(red)} patch(es) knocked out in every layer and head" in shown
    before = f"{picture.label} ({probs(traced)[truth]:.3f})"
    assert f"the prediction **changes**: {before} → **{after.output_text}**" in shown
    assert after.output_text != picture.label  # the shapes model answers from the red object: without it, a guess
    table = next(df.value for df in at.dataframe if "after" in df.value.columns)
    np.testing.assert_allclose(table.set_index("class").loc[list(shapes.info.classes), "after"], probs(after),
                               atol=1e-5)


def statistics_meta(at) -> dict:
    return next(s for s in specs(at) if "thresholds" in (s["layout"].get("meta") or {}))["layout"]["meta"]


def test_the_statistics_are_token_norms_and_flag_by_its_rule(traced):
    at = page(state={"img_section": "Statistics"})
    assert not at.exception
    norms = token_norms(traced.trace, names_of(traced)[-1])
    meta = statistics_meta(at)
    assert meta["thresholds"] == {"value norm": pytest.approx(4 * np.median(norms.value), rel=1e-5),
                                  "output norm": pytest.approx(4 * np.median(norms.output), rel=1e-5)}
    assert meta["flagged"] == sorted(set(norms.outliers()) | set(norms.outliers(of="output"))) == []
    table = next(df.value for df in at.dataframe if "output norm" in df.value.columns)
    np.testing.assert_allclose(table["value norm"], norms.value, rtol=1e-6)
    np.testing.assert_allclose(table["output norm"], norms.output, rtol=1e-6)
    np.testing.assert_allclose(table["attention received"], norms.received, rtol=1e-6)
    assert "No high-norm token in this layer" in text_of(at)


def test_a_model_with_a_high_norm_token_has_it_called_out(tmp_path, monkeypatch):
    """A post-LN ViT with a huge vector at position 6 (patch r0c5) from the start: the artefact tokens of Darcet et
    al. (as tests/test_tokens.py builds it), saved to the models directory."""
    import torch

    from model.own.checkpoint import save_vision_checkpoint
    from model.own.config import VisionConfig
    from model.own.vit import VisionTransformer
    from model.training.shapes import SHAPES

    torch.manual_seed(0)
    config = VisionConfig(class_names=SHAPES, d_model=32, n_heads=4, n_encoder_layers=2, d_ff=64, norm="post")
    model = VisionTransformer(config).eval().requires_grad_(False)
    with torch.no_grad():
        model.positions[0, 6] += 40.0
    save_vision_checkpoint(tmp_path / "artefact", model, {})
    monkeypatch.setenv("INSPECTOR_MODELS", str(tmp_path))
    at = page({"model": "artefact", "sample": str(SEED), "layer": "0"}, state={"img_section": "Statistics"})
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["image_model"] == "artefact (models directory)"
    assert 6 in statistics_meta(at)["flagged"]
    warning = plain("\n".join(w.value for w in at.warning))
    assert "High-norm tokens" in warning and "r0c5" in warning
