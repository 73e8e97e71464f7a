"""The inspector through Streamlit's AppTest: first screen, controls, every view, bad input, budgets, no needless
model runs, and the first-use bugs of issue 14."""

import base64
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import clear_app_caches
from streamlit.testing.v1 import AppTest

import viz
from model import (
    ModelConfig,
    Tokenizer,
    Transformer,
    TransformerPipeline,
    allowed_matrix,
    estimate_bytes,
    intervened_outputs,
    load,
    save_checkpoint,
)
from model.analysis import align_tokens, effect_of, head_js_distances, source_attribution
from tests.canvas_parts import canvas_matrix, canvas_overview, canvas_parts, col_labels, row_labels
from ui.views.registry import NAMES as VIEWS

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SOURCE = "Saturday, November 21, 2026"


def make_checkpoint(path: Path, n_decoder_layers: int = 3, max_len: int = 24, seed: int = 0) -> str:
    """A tiny random-weight checkpoint shaped like the dates model (word source, char target)."""
    torch.manual_seed(seed)
    src = Tokenizer.train(["Saturday, 21 November 2026", "Monday 3 March 1999", "the cat"], level="word")
    tgt = Tokenizer.train(["2026-11-21", "1999-03-03"], level="char")
    cfg = ModelConfig(src_vocab_size=src.vocab_size, tgt_vocab_size=tgt.vocab_size, d_model=16, n_heads=2,
                      n_encoder_layers=2, n_decoder_layers=n_decoder_layers, d_ff=32, max_len=max_len)
    save_checkpoint(path, Transformer(cfg).eval(), src, tgt, {"task": "test"})
    return str(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "tiny")


@pytest.fixture(scope="module")
def ckpt_small(tmp_path_factory) -> str:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "one_layer", n_decoder_layers=1)


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch, tmp_path):
    """Each test starts with empty Streamlit caches and no shipped checkpoints (unless it asks for them)."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.delenv("INSPECTOR_MODELS", raising=False)
    clear_app_caches()
    yield
    clear_app_caches()


def plotly_array(value) -> np.ndarray:
    """A Plotly array as sent: a list, or a base64 typed array {"dtype", "bdata"}."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=float)


def app(path: str | None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if path is not None:
        at.session_state["model_path"] = path
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def charts(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def main_matrix(at) -> np.ndarray:
    """The exact cells of the head the attention map shows (the canvas's parts)."""
    return canvas_matrix(at)


def reference(path: str, source: str = SOURCE, target: str | None = None):
    return load(path, "cpu").run(source, target)


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plain(text: str) -> str:
    """Page text without the bidi isolates that wrap model and user text (ui.text.isolate)."""
    return text.replace("\u2068", "").replace("\u2069", "")


def page_text(at) -> str:
    return " ".join(m.value for m in list(at.markdown) + list(at.caption) + list(at.info) + list(at.warning)
                    + list(at.error))


# the first screen ---------------------------------------------------------------------------------------------------

def test_opens_on_the_dates_story(monkeypatch):
    dates = ROOT / "checkpoints" / "dates"
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(ROOT / "checkpoints"))
    at = app(None)
    assert_clean(at)
    assert at.selectbox(key="model").value == "dates" and at.text_area(key="source").value == SOURCE
    # the story: task and accuracy from meta.json, and where to look
    story = plain(at.markdown[0].value)
    assert "dates model" in story and "100" in story and "exact match on 1,000 fresh pairs" in story
    assert "layer 1 cross\\-attention, head 3" in story or "layer 1 cross-attention, head 3" in story.replace("\\", "")
    # ...and the map shows exactly that head
    assert at.radio(key="kind").value == "cross"
    assert at.selectbox(key="layer").value == 1 and at.selectbox(key="head").value == 3
    ref = reference(str(dates))
    assert ref.output_text == "2026-11-21"
    np.testing.assert_array_equal(main_matrix(at), ref.trace.numpy()["decoder.1.cross_attn"].weights[0, 3])
    # rows say what they read and what they produce; labels never read as numbers
    ov = canvas_overview(at)
    assert row_labels(ov)[0] == "0·[BOS] → 2" and col_labels(ov)[3] == "3·2"
    # the output and its probability in the header
    output = at.markdown[1].value.replace("\\", "")
    assert "2026-11-21" in output and "probability of this output" in output
    # snapshots are offered beside their model
    assert at.selectbox(key="snapshot").options[0] == "final" and "step 250" in at.selectbox(key="snapshot").options


def test_picking_a_shipped_model_loads_its_example_and_story(monkeypatch):
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(ROOT / "checkpoints"))
    at = app(None)
    assert at.selectbox(key="model").options == ["dates", "induction", "numbers", "reverse", "shapes"]
    at.selectbox(key="model").set_value("reverse").run()
    assert_clean(at)
    assert at.text_area(key="source").value == "red fox owl blue cat"
    assert at.selectbox(key="head").value == 2 and at.radio(key="kind").value == "cross"
    at.selectbox(key="model").set_value("induction").run()
    assert_clean(at)
    assert at.radio(key="kind").value == "decoder masked self" and at.radio(key="kind").options == [
        "decoder masked self"]
    assert at.selectbox(key="layer").value == 1 and at.selectbox(key="head").value == 1
    assert "induction head" in at.markdown[0].value


def test_an_image_model_picked_or_linked_here_is_sent_to_the_image_page(monkeypatch):
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(ROOT / "checkpoints"))
    at = app(None)
    at.selectbox(key="model").set_value("shapes").run()
    assert_clean(at)
    assert not at.error and "reads images, not text" in plain(page_text(at))
    link = at.get("page_link")[0].proto
    assert link.page == "images" and link.query_string == "model=shapes"
    assert not at.get("plotly_chart") and "source" not in [t.key for t in at.sidebar.text_area]
    linked = AppTest.from_file(APP, default_timeout=90)
    linked.query_params["model"] = "shapes"
    linked.run()
    assert_clean(linked)
    assert "reads images, not text" in plain(page_text(linked)) and linked.get("page_link")


def test_untrained_snapshot_gets_a_message_that_fits(monkeypatch):
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(ROOT / "checkpoints"))
    at = app(None)
    at.selectbox(key="snapshot").set_value("step 0").run()
    assert_clean(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "not yet learned to end its output" in warnings and "Max generated tokens" not in warnings
    assert any("at step 0" in c.value for c in at.sidebar.caption)


def test_first_screen_is_a_cross_attention_map(ckpt):
    at = app(ckpt)
    assert_clean(at)
    ref = reference(ckpt)
    ov = canvas_overview(at)
    assert col_labels(ov) == [f"{i}·{t}" for i, t in enumerate(ref.source.tokens)]
    assert row_labels(ov) == [f"{i}·{t} → {p}" for i, (t, p) in enumerate(zip(ref.target.tokens, ref.output_tokens,
                                                                               strict=True))]
    np.testing.assert_array_equal(main_matrix(at), ref.trace.numpy()["decoder.2.cross_attn"].weights[0, 0])
    assert any("running on" in c.value for c in at.sidebar.caption)


def test_stage_menu_in_pipeline_order(ckpt):
    at = app(ckpt)
    assert at.selectbox(key="stage").options == ["scores", "scaled scores", "masked scores", "weights"]


def test_controls_change_what_they_should(ckpt):
    at = app(ckpt)
    tr = reference(ckpt).trace.numpy()
    at.radio(key="kind").set_value("encoder self").run()
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="head").set_value(1).run()
    np.testing.assert_array_equal(main_matrix(at), tr["encoder.0.self_attn"].weights[0, 1])
    at.radio(key="kind").set_value("decoder masked self").run()
    at.selectbox(key="layer").set_value(1).run()
    w = tr["decoder.1.self_attn"].weights[0, 1]
    np.testing.assert_array_equal(main_matrix(at), w)  # masked weights are 0, drawn hatched
    ov = canvas_overview(at)
    causal = np.triu(np.ones(w.shape, dtype=bool), 1)
    assert ((ov["reasons"][1] & 2) != 0).tolist() == causal.tolist()  # the causal bit of the reason table
    assert {"bit": 2, "name": "causal", "hatch": "\\"} in ov["reason_table"]
    at.selectbox(key="stage").set_value("scaled").run()
    ov = canvas_overview(at)
    assert ov["colormap"] == "rdbu_r" and ov["lo"] == -ov["hi"]  # diverging around 0
    np.testing.assert_array_equal(main_matrix(at), tr["decoder.1.self_attn"].scaled[0, 1])
    at.selectbox(key="head").set_value(-1).run()  # all heads: the head grid
    assert len(viz.figure_matrices(charts(at)[0])) == 2
    assert_clean(at)


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_renders_from_the_trace(ckpt, view):
    at = app(ckpt, view=view)
    assert_clean(at)
    specs = charts(at)
    ref = reference(ckpt).trace.numpy()
    if view == "Attention map":
        np.testing.assert_array_equal(main_matrix(at), ref["decoder.2.cross_attn"].weights[0, 0])
    elif view == "Head grid":
        mats = viz.figure_matrices(specs[0])
        np.testing.assert_array_equal(mats[1], ref["decoder.2.cross_attn"].weights[0, 1])
    elif view == "Model overview":
        assert [t["type"] for t in specs[0]["data"]] == ["image", "scatter"]
        assert len(specs[0]["layout"]["meta"]["cells"]) == 3 * 2  # layers x heads
    elif view == "Head view":
        assert any("iframe" in str(type(e)).lower() or e.type == "iframe" for e in at.main) or at.get("iframe")
    elif view == "Step by step":
        keys = [p.key for p in viz.stage_panels(ref["decoder.2.cross_attn"], 0, ["t"] * 30, ["s"] * 30)]
        assert "X_kv" in keys
        assert len(specs) == len(keys)
        assert len(at.get("latex")) == len(specs)
    elif view == "One query":
        assert len(at.dataframe) == 1 and len(specs) == 6
    elif view == "Decoding":
        assert len(specs) == 2 and any("with probability" in m.value for m in at.markdown)
        at.select_slider(key="step").set_value(3).run()
        assert_clean(at)
        rows = viz.figure_matrices(charts(at)[1])[0]
        np.testing.assert_array_equal(rows[:2], ref["decoder.2.cross_attn"].weights[0, :, 3])
    elif view == "Statistics":
        assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 8 * 2  # 2 + 3 x 2 attentions, 2 heads
    elif view == "Rollout":  # the default: the encoder-decoder's source attribution, from model.analysis
        S, _ = source_attribution(*[[ref[f"{stack}.{i}.{sub}"].weights[0] for i in range(n)] for stack, sub, n in
                                    (("encoder", "self_attn", 2), ("decoder", "self_attn", 3),
                                     ("decoder", "cross_attn", 3))], "mean")
        np.testing.assert_allclose(viz.figure_matrices(specs[0])[0], S.astype(np.float32), atol=1e-6)
    elif view == "Ablation":  # ablate one head: the chart's "after" is a direct ablated call's probability
        at.multiselect(key="abl_heads").set_value(["decoder.2.cross_attn|1"]).run()
        assert_clean(at)
        pipe, res = load(ckpt, "cpu"), reference(ckpt)
        after = intervened_outputs(pipe, res, [{"ablations": {"decoder.2.cross_attn": {1: "zero"}}}])[0]
        eff = effect_of(res.logits, after)
        np.testing.assert_allclose(plotly_array(charts(at)[0]["data"][1]["y"]), eff.p_after, atol=1e-6)
    elif view == "Compare":  # input B: the distance table is head_js_distances of the two traces
        assert any("second input" in i.value for i in at.info)
        at.text_area(key="cmp_source").input("Monday 3 March 1999").run()
        assert_clean(at)
        a, b = reference(ckpt), reference(ckpt, "Monday 3 March 1999")
        table = at.dataframe[-1].value
        name = "decoder.2.cross_attn"
        qa, ka = a.axes(name)
        qb, kb = b.axes(name)
        ar, ac = align_tokens(qa, qb), align_tokens(ka, kb)
        ra, rb = a.trace.numpy()[name], b.trace.numpy()[name]
        want = head_js_distances(ra.weights[0], rb.weights[0], ar.a, ac.a, ar.b, ac.b, allowed_matrix(ra),
                                 allowed_matrix(rb))
        got = table[table["attention"] == name].sort_values("head")["js_distance"].to_numpy()
        np.testing.assert_allclose(got, np.round(want, 4), atol=1e-4)
    elif view == "Export":
        df = at.dataframe[0].value
        assert set(df["head"]) == {0} and len(df) == ref["decoder.2.cross_attn"].weights[0, 0].size


def test_training_view_is_offered_only_with_snapshots(ckpt):
    at = app(ckpt)
    assert "Training" not in at.segmented_control(key="view").options


def test_layer_head_view_changes_do_not_rerun_the_model(ckpt, monkeypatch):
    calls = []
    original = TransformerPipeline.forward

    def counting(self, *args, **kwargs):  # the traced forward of each call (decoding runs greedy_batch)
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TransformerPipeline, "forward", counting)
    at = app(ckpt)
    assert len(calls) == 1
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="head").set_value(1).run()
    at.radio(key="kind").set_value("encoder self").run()
    at.selectbox(key="stage").set_value("scores").run()
    for view in ("Step by step", "Statistics", "Rollout", "Head view", "Export"):
        at.session_state["view"] = view
        at.run()
    assert_clean(at)
    assert len(calls) == 1
    at.text_area(key="source").input("Monday 3 March 1999").run()
    assert len(calls) == 2  # a new source is a new call


def test_a_widget_change_does_not_tokenise_again(ckpt, monkeypatch):
    """A megabyte pasted into the box used to be tokenised on every click: a change of view re-encodes nothing."""
    from model.own import tokenizer as tok_module

    at = app(ckpt)
    calls = []
    original = tok_module.Tokenizer.tokenize
    monkeypatch.setattr(tok_module.Tokenizer, "tokenize", lambda self, *a, **k: (calls.append(1),
                                                                                original(self, *a, **k))[1])
    for view in ("Head grid", "Step by step", "Attention map"):
        at.session_state["view"] = view
        at.run()
    at.selectbox(key="head").set_value(1).run()
    assert_clean(at)
    assert calls == []


def test_layer_clamps_when_the_model_has_fewer_layers(ckpt, ckpt_small):
    at = app(ckpt)
    at.selectbox(key="layer").set_value(2).run()
    at.text_input(key="model_path").input(ckpt_small).run()
    assert_clean(at)
    assert at.selectbox(key="layer").value == 0 and at.selectbox(key="layer").options == ["0"]
    ref = reference(ckpt_small)
    np.testing.assert_array_equal(main_matrix(at), ref.trace.numpy()["decoder.0.cross_attn"].weights[0, 0])


def test_empty_source_is_a_friendly_prompt(ckpt):
    at = app(ckpt, source="   ")
    assert_clean(at)
    assert not at.get("plotly_chart") and not at.error
    assert "Type a source sentence" in at.info[0].value


def test_long_source_is_truncated_with_a_warning(ckpt):
    at = app(ckpt, source=" ".join(["Saturday"] * 60))
    assert_clean(at)
    assert any("cut off" in w.value for w in at.warning)
    assert canvas_overview(at)["n_cols"] == 24  # max_len tokens, [EOS] included


def test_text_the_model_cannot_read_is_named(monkeypatch):
    """The dates model's vocabulary has no "cat": the page says how many source tokens are [UNK], and what the
    model reads; a date gets no such line."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(ROOT / "checkpoints"))
    at = app(None, source="The cat sat on the mat.")
    assert_clean(at)
    notes = [plain(w.value) for w in at.warning if "unknown to this model" in w.value]
    assert len(notes) == 1 and "6 of the 7 source tokens" in notes[0] and "a date as people write it" in notes[0]
    at = app(None, source="March 3, 1999")
    assert not any("unknown to this model" in w.value for w in at.warning)


def test_hostile_text_is_never_html(ckpt):
    text = "<script>alert(1)</script> **bold** 😀 日本 \x07 Saturday"
    at = app(ckpt, source=text)
    assert_clean(at)
    ov = canvas_overview(at)
    labels = col_labels(ov)
    assert not any("<script>" in t for t in labels) and any("[UNK]" in t for t in labels)  # tokens, drawn as text
    for view in VIEWS:
        at.session_state["view"] = view
        at.run()
        assert_clean(at)


def test_broken_checkpoint_keeps_the_previous_model(ckpt, tmp_path):
    at = app(ckpt)
    before = main_matrix(at)
    at.text_input(key="model_path").input(str(tmp_path / "missing")).run()
    assert_clean(at)
    assert "no such checkpoint directory" in at.error[0].value
    np.testing.assert_array_equal(main_matrix(at), before)
    broken = Path(make_checkpoint(tmp_path / "broken"))
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    at.text_input(key="model_path").input(str(broken)).run()
    assert "model\\.safetensors" in at.error[0].value or "model.safetensors" in at.error[0].value
    np.testing.assert_array_equal(main_matrix(at), before)


def test_a_retrained_checkpoint_is_reloaded(tmp_path):
    path = make_checkpoint(tmp_path / "ck")
    at = app(path)
    before = main_matrix(at)
    make_checkpoint(tmp_path / "ck", seed=1)  # retrained in place
    for f in Path(path).iterdir():
        os.utime(f, (time.time() + 5, time.time() + 5))
    at.run()
    after = main_matrix(at)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, reference(path).trace.numpy()["decoder.2.cross_attn"].weights[0, 0])


def test_broken_checkpoint_on_first_load_is_an_error_box(tmp_path):
    at = app(str(tmp_path / "missing"))
    assert_clean(at)
    assert "no such checkpoint directory" in at.error[0].value


def test_out_of_memory_falls_back_to_cpu(ckpt, monkeypatch):
    original = TransformerPipeline.forward
    state = {"failed": False}

    def oom_once(self, *args, **kwargs):
        if not state["failed"]:
            state["failed"] = True
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TransformerPipeline, "forward", oom_once)
    at = app(ckpt, device="auto")
    assert_clean(at)
    assert state["failed"]
    assert any("Out of memory" in w.value and "CPU" in w.value for w in at.warning)
    np.testing.assert_array_equal(main_matrix(at), reference(ckpt).trace.numpy()["decoder.2.cross_attn"].weights[0, 0])


def wire_per_cell(z: dict) -> float:
    """Bytes per cell of a typed array as sent: base64 float32, with Plotly's "/" -> \\u002f escape."""
    cells = np.prod([int(s) for s in z["shape"].split(",")])
    return len(json.dumps(z).replace("/", "\\u002f")) / cells


def test_chart_payload_is_binary_float32(ckpt):
    at = app(ckpt)  # the first screen: cross-attention weights, exact float32 cells on the canvas
    part = [e.proto.bytes for e in at.get("bidi_component") if e.proto.id.endswith("-map")][0]
    ov = canvas_overview(at)
    cells = ov["values"].size
    assert ov["values"].dtype == np.float32 and len(part) <= 4 * cells + 2500  # labels, reason table, header
    at.session_state["view"] = "Step by step"
    at.run()
    for spec in charts(at):
        assert spec["layout"]["template"] == {}  # no 9 kB default template in every chart
        for trace in spec["data"]:
            if trace["type"] == "heatmap":
                cells = np.prod([int(n) for n in trace["z"]["shape"].split(",")])
                assert trace["z"]["dtype"] == "f4" and wire_per_cell(trace["z"]) <= 7.5 + 60 / cells


def test_over_budget_input_is_captured_lazily_and_bitwise(ckpt, monkeypatch):
    pipe = load(ckpt, device="cpu")
    ref = reference(ckpt)
    S, T = len(ref.source.ids), len(ref.target.ids)
    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", str(estimate_bytes(pipe, S, T) / 2 / 2**20))
    runs = []
    original = TransformerPipeline.forward

    def recording(self, src, tgt, recorder, **kwargs):
        runs.append(recorder.lazy)
        return original(self, src, tgt, recorder, **kwargs)

    monkeypatch.setattr(TransformerPipeline, "forward", recording)
    at = app(ckpt)
    assert_clean(at)
    assert runs == [True] and any("computed when you open them" in i.value for i in at.info)
    at.run()  # the page asks for the new map's exact cells (deferred: the map is drawn first): the next run
    np.testing.assert_array_equal(main_matrix(at), ref.trace.numpy()["decoder.2.cross_attn"].weights[0, 0])
    at.session_state["layer"] = 0  # another layer: one attention computed on demand, no new model run
    at.run().run()
    assert_clean(at)
    assert runs == [True]
    np.testing.assert_array_equal(main_matrix(at), ref.trace.numpy()["decoder.0.cross_attn"].weights[0, 0])
    at.session_state["view"] = "Model overview"  # thumbnails from the first pass (pooled uint8)
    at.run()
    assert_clean(at)
    assert "max-pooled" in json.dumps(charts(at)[0]["layout"]["title"])


def test_traced_calls_shared_by_sessions_are_bounded_in_bytes(ckpt, monkeypatch):
    import ui.tracing

    at = app(ckpt)
    assert_clean(at)
    held = ui.tracing._TRACED.nbytes
    assert len(ui.tracing._TRACED) == 1 and held > 0
    monkeypatch.setenv("INSPECTOR_TRACE_CACHE_MB", str(1.5 * held / 2**20))  # room for one such call, not two
    for text in ("Monday, 1 May 2000", "Tuesday, 2 May 2000"):
        at.session_state["source"] = text
        at.run()
        assert_clean(at)
        assert len(ui.tracing._TRACED) == 1  # the older call went; the one on screen stays
    at.session_state["source"] = "Monday, 1 May 2000"
    at.run()  # computed again, the same numbers
    assert_clean(at)
    np.testing.assert_array_equal(main_matrix(at), load(ckpt, device="cpu").run("Monday, 1 May 2000").trace.numpy()[
        "decoder.2.cross_attn"].weights[0, 0])


def test_input_whose_single_record_is_too_big_is_drawn_from_windows(ckpt, monkeypatch):
    import ui.tracing

    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", "0.0001")
    monkeypatch.setattr(ui.tracing, "MIN_RECORD_CAP", 100)
    at = app(ckpt)
    assert_clean(at)  # no refusal: the map is drawn from windows, as at any length
    assert not at.error and any("the whole map is exact" in c.value for c in at.caption)
    at.session_state["view"] = "Step by step"  # a view that needs the complete record says so and offers the map
    at.run()
    assert any("too much to compute at once" in w.value for w in at.warning)
    assert at.button(key="needs_record_map") is not None


def test_generation_cap_and_its_warning(ckpt):
    at = app(ckpt, max_new=3)  # random weights: no [EOS] within 3 tokens
    assert_clean(at)
    ref = load(ckpt, device="cpu").run(SOURCE, max_new_tokens=3)
    assert main_matrix(at).shape[0] == len(ref.target.ids) <= 4
    assert any("did not end its output" in w.value for w in at.warning) == (not ref.stopped_at_eos)
    assert not ref.stopped_at_eos


def test_torch_threads_are_set_once_at_start_up(ckpt, monkeypatch):
    monkeypatch.setenv("ATTN_TORCH_THREADS", "1")
    calls = []
    original = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), original(n)))
    at = app(ckpt)
    at.session_state["layer"] = 0
    at.run()
    assert_clean(at)
    assert calls == [1] and torch.get_num_threads() == 1


# issue 14: first-use bugs, each reproduced ---------------------------------------------------------------------------

def test_selectors_always_show_what_is_drawn(ckpt):
    """Reported: clear the source, type a new one, and the selectors read "layer 0 / all heads / weights" while the
    chart title said "layer 0 · head 1 · scaled"."""
    at = app(ckpt)
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="head").set_value(1).run()
    at.selectbox(key="stage").set_value("scaled").run()
    at.text_area(key="source").input("").run()  # the page stops early: the selectors are not drawn
    assert_clean(at)
    at.text_area(key="source").input("Monday 3 March 1999").run()
    assert_clean(at)
    assert (at.selectbox(key="layer").value, at.selectbox(key="head").value, at.selectbox(key="stage").value) == \
        (0, 1, "scaled")
    ov = canvas_overview(at)
    assert "layer 0 · scaled scores" in ov["title"] and canvas_parts(at)["map.sync"]["head"] == 1
    ref = reference(ckpt, "Monday 3 March 1999").trace.numpy()
    np.testing.assert_array_equal(main_matrix(at), ref["decoder.0.cross_attn"].scaled[0, 1])


def test_teacher_forcing_names_the_target_and_the_prediction(ckpt):
    """Reported: with target "1999-03-22" typed, the header read "teacher-forced output: 1999-03-21" (the model's
    prediction labelled as the target)."""
    at = app(ckpt, source="Monday 3 March 1999", target_mode="type a target (teacher forcing)", target="1999-03-22")
    assert_clean(at)
    header = plain(at.markdown[1].value).replace("\\", "").replace("**", "")
    assert "typed target: 1999-03-22" in header and "model's prediction" in header
    assert "teacher-forced output" not in header
    table = at.dataframe[0].value
    assert list(table.index) == ["typed target", "model predicts", "differs"]
    assert list(table.iloc[0]) == list("1999-03-22")
    ref = reference(ckpt, "Monday 3 March 1999", "1999-03-22")
    assert list(table.iloc[1]) == ref.output_tokens[:10]
    marks = [("✗" if a != b else "") for a, b in zip(list("1999-03-22"), ref.output_tokens, strict=False)]
    assert list(table.iloc[2]) == marks
    differ = marks.count("✗")
    assert f"{differ} of 10 positions differ" in " ".join(c.value for c in at.caption)


def test_a_long_typed_target_is_compared_one_row_per_position(tmp_path):
    long = make_checkpoint(tmp_path / "long", max_len=64)
    target = "1999-03-22" * 5  # 50 positions: too many to read side by side
    at = app(long, source="Monday 3 March 1999", target_mode="type a target (teacher forcing)", target=target)
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table.columns) == ["position", "typed target", "model predicts", "differs"] and len(table) == 50
    ref = reference(long, "Monday 3 March 1999", target)
    assert list(table["typed target"]) == list(target) and list(table["model predicts"]) == ref.output_tokens[:50]
    assert (table["differs"] == "✗").sum() == sum(a != b for a, b in zip(target, ref.output_tokens, strict=False))


def test_clicking_anywhere_on_a_thumbnail_opens_that_head(ckpt, monkeypatch):
    """Reported: clicking the centre of a thumbnail did nothing (the click targets were small markers)."""
    at = app(ckpt, view="Model overview")
    spec = charts(at)[0]
    cells = spec["layout"]["meta"]["cells"]
    assert spec["layout"]["hoverdistance"] == -1  # the nearest target takes the click, wherever it lands
    targets = spec["data"][1]
    per_thumb = {}
    for x, y, (idx,) in zip(targets["x"], targets["y"], targets["customdata"], strict=True):
        per_thumb.setdefault(idx, []).append((x, y))
    assert sorted(per_thumb) == list(range(len(cells)))
    # the centre of each thumbnail is closer to one of its own targets than to any other thumbnail's
    for idx, pts in per_thumb.items():
        cx, cy = np.mean([p[0] for p in pts]), np.mean([p[1] for p in pts])
        nearest = min(((x - cx) ** 2 + (y - cy) ** 2, i) for i, ps in per_thumb.items() for x, y in ps)[1]
        assert nearest == idx
    # a click (Streamlit's selection state) opens that head on the attention map (the browser test clicks for real)
    import types

    import ui.state as state_module
    import ui.views.common as inspector_module

    fake = types.SimpleNamespace(session_state={"overview": {"selection": {"points": [{"customdata": [3]}]}}})
    monkeypatch.setattr(inspector_module, "st", fake)
    monkeypatch.setattr(state_module, "st", fake)
    cells_t = [tuple(c) for c in cells]
    inspector_module.open_cell("overview", cells_t, "cross")
    assert (fake.session_state["layer"], fake.session_state["head"], fake.session_state["view"]) == \
        (cells_t[3][0], cells_t[3][1], "Attention map")


# issue 30: one renderer, maps switched in the page ---------------------------------------------------------------

def test_a_short_input_sends_every_map_once_exact(monkeypatch):
    """The dates model: every kind, layer and stage, float32, in one stack that does not change with the selection."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(ROOT / "checkpoints"))
    at = app(None)
    assert_clean(at)
    parts = canvas_parts(at)
    stack = parts["map.stack"]["overviews"]
    assert len(stack) == 3 * 2 * 4  # kinds x layers x stages
    assert all("values" in o for o in stack)
    total = sum(viz.wire.part_bytes(o) for o in stack)
    assert total < 64 * 2**10  # 46 kB of float32 cells
    ref = reference(str(ROOT / "checkpoints" / "dates")).trace.numpy()
    enc = next(o for o in stack if o["choice"] == {"kind": "encoder self", "layer": 0, "stage": "scaled"})
    np.testing.assert_array_equal(enc["values"], ref["encoder.0.self_attn"].scaled[0])
    shown = parts["map"]
    assert shown["id"] in {o["id"] for o in stack}  # the shown map is one of them: the page holds it once
    groups = {g["name"]: [v for v, _ in g["options"]] for g in shown["choices"]["groups"]}
    assert groups == {"kind": ["cross", "encoder self", "decoder masked self"], "layer": [0, 1],
                      "stage": ["scores", "scaled", "masked", "weights"]}
    before = [e.proto.bytes for e in at.get("bidi_component") if e.proto.id.endswith("-map.stack")]
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="stage").set_value("masked").run()
    after = [e.proto.bytes for e in at.get("bidi_component") if e.proto.id.endswith("-map.stack")]
    assert before == after  # the same bytes: Streamlit sends them once


def test_the_stack_and_its_neighbours_within_their_budgets(ckpt, monkeypatch):
    import ui.views.canvas as canvas_view

    at = app(ckpt)  # 3 kinds, 2 + 3 + 3 layers, 4 stages, 2 heads
    every = len(canvas_parts(at)["map.stack"]["overviews"])
    assert every == (2 + 3 + 3) * 4
    ov = canvas_overview(at)
    one = ov["values"].nbytes  # a decoder-cross map: the largest kind here
    monkeypatch.setattr(canvas_view, "STACK_BYTES", 3 * one)  # room for the shown kind and stage's 3 layers only
    at.session_state["source"] = "Monday 3 March 1999"
    at.run()
    stack = canvas_parts(at)["map.stack"]["overviews"]
    assert sorted(o["choice"]["layer"] for o in stack) == [0, 1, 2]
    assert {(o["choice"]["kind"], o["choice"]["stage"]) for o in stack} == {("cross", "weights")}
    near = canvas_parts(at)["map.near"]  # the rest beside the shown map: its other stages, the other kinds
    got = {json.dumps(o["choice"], sort_keys=True) for o in near["overviews"]}
    want = {json.dumps({"kind": k, "layer": 2, "stage": s}, sort_keys=True) for k, s in
            [("cross", "scores"), ("cross", "scaled"), ("cross", "masked"), ("decoder masked self", "weights")]}
    # (the layers beside it, 1 and 0, are in the stack)
    assert got == want  # encoder self has no layer 2
    monkeypatch.setattr(canvas_view, "STACK_BYTES", 0)
    monkeypatch.setattr(canvas_view, "NEAR_NOW_BYTES", 0)  # neighbours after the map is drawn
    at.session_state["source"] = "the cat"
    at.run()
    assert canvas_parts(at)["map.near"]["deferred"] is True  # the page asks once it has drawn the map
    at.run()  # the page's request (detail_request) reruns the script
    near = canvas_parts(at)["map.near"]["overviews"]
    assert {"kind": "cross", "layer": 1, "stage": "weights"} in [o["choice"] for o in near]


def test_a_map_picked_on_the_page_moves_the_selectors(monkeypatch):
    """The page reports {kind, layer, stage} (component state "choice"); the selectors take it, bad values aside."""
    import types

    import ui.state as state_module
    import ui.views.canvas as canvas_view

    fake = types.SimpleNamespace(session_state={"map": {"choice": {"kind": "encoder self", "layer": 1,
                                                                   "stage": "scores"}}})
    monkeypatch.setattr(canvas_view, "st", fake)
    monkeypatch.setattr(state_module, "st", fake)
    canvas_view._choice_from_page()
    assert (fake.session_state["kind"], fake.session_state["layer"], fake.session_state["stage"]) == \
        ("encoder self", 1, "scores")
    fake.session_state["map"] = {"choice": {"kind": 3, "layer": "1", "stage": None}}
    canvas_view._choice_from_page()  # nothing of the wrong type is taken
    assert (fake.session_state["kind"], fake.session_state["layer"], fake.session_state["stage"]) == \
        ("encoder self", 1, "scores")


def test_a_pooled_maps_neighbours_are_counted_by_their_pooled_bytes(monkeypatch):
    """Reported while measuring: a 1,024-token map's neighbours were counted at T x T bytes each, so one fitted the
    16 MiB budget and the next layer's never came. A pooled overview holds its blocks: H x (T / pool)^2 bytes."""
    import types

    import ui.views.canvas as canvas_view

    shape = types.SimpleNamespace(n_heads=12, tq=1024, tk=1000)
    trace = types.SimpleNamespace(shape=lambda name: shape, overview_pool=lambda name: 2)
    ctx = types.SimpleNamespace(traced=types.SimpleNamespace(trace=trace, lazy=True))
    assert canvas_view.precision_of(ctx, "decoder.0.self_attn") == "p2"
    assert canvas_view.overview_bytes(ctx, "decoder.0.self_attn") == 12 * 512 * 500
    assert 4 * canvas_view.overview_bytes(ctx, "decoder.0.self_attn") <= canvas_view.NEAR_BYTES  # 2 layers each way
