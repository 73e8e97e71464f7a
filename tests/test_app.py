"""The inspector app through Streamlit's AppTest: opens, controls, bad input, payloads, no needless model runs."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import viz
from model import ModelConfig, Pipeline, Tokenizer, Transformer, load, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SOURCE = "Saturday, November 21, 2026"


def make_checkpoint(path: Path, n_decoder_layers: int = 3, max_len: int = 24, seed: int = 0) -> str:
    """A tiny random-weight checkpoint shaped like the dates model (word source, char target)."""
    torch.manual_seed(seed)
    src = Tokenizer.train(["Saturday, 21 November 2026", "Monday 3 March 1999", "the cat"], kind="word")
    tgt = Tokenizer.train(["2026-11-21", "1999-03-03"], kind="char")
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
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def app(path: str | None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if path is not None:
        at.session_state["model_path"] = path
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def charts(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def main_matrix(at) -> np.ndarray:
    return viz.figure_matrices(charts(at)[0])[0]


def reference(path: str, source: str = SOURCE, target: str | None = None):
    return load(path, "cpu").run(source, target)


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_opens_on_the_shipped_dates_model(monkeypatch):
    dates = ROOT / "checkpoints" / "dates"
    assert (dates / "config.json").is_file(), "the shipped dates model is missing"
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(ROOT / "checkpoints"))
    at = app(None)
    assert_clean(at)
    assert at.selectbox(key="model").value == "dates"
    assert at.radio(key="kind").value == "cross" and at.text_area(key="source").value == SOURCE
    spec = charts(at)[0]
    assert spec["data"][0]["type"] == "heatmap"
    ref = reference(str(dates))
    assert ref.output_text == "2026-11-21"  # the first screen shows the model getting it right
    z = viz.figure_matrices(spec)[0]
    assert z.shape == (len(ref.target.tokens), len(ref.source.tokens))  # target queries x source keys
    layer = at.selectbox(key="layer").value
    np.testing.assert_array_equal(z, ref.trace.numpy()[f"decoder.{layer}.cross_attn"].weights[0, 0])


def test_picking_a_shipped_model_loads_its_example(monkeypatch, tmp_path):
    root = tmp_path / "shipped"
    make_checkpoint(root / "dates")
    make_checkpoint(root / "reverse", n_decoder_layers=1)
    make_checkpoint(root / "snapshots" / "x")  # never listed
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(root))
    at = app(None)
    assert at.selectbox(key="model").options == ["dates", "reverse"]
    at.selectbox(key="model").set_value("reverse").run()
    assert_clean(at)
    assert at.text_area(key="source").value == "red fox owl blue cat"
    ref = reference(str(root / "reverse"), "red fox owl blue cat")
    assert charts(at)[0]["data"][0]["x"] == viz.token_labels(ref.source.tokens)


def test_first_screen_is_a_cross_attention_map(ckpt):
    at = app(ckpt)
    assert_clean(at)
    ref = reference(ckpt)
    spec = charts(at)[0]
    assert spec["data"][0]["x"] == viz.token_labels(ref.source.tokens)
    assert spec["data"][0]["y"] == viz.token_labels(ref.target.tokens)
    np.testing.assert_array_equal(main_matrix(at), ref.trace.numpy()["decoder.2.cross_attn"].weights[0, 0])
    assert any("running on" in c.value for c in at.sidebar.caption)


def test_controls_change_what_they_should(ckpt):
    at = app(ckpt)
    tr = reference(ckpt).trace.numpy()
    at.radio(key="kind").set_value("encoder self").run()
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="head").set_value(1).run()
    np.testing.assert_array_equal(main_matrix(at), tr["encoder.0.self_attn"].weights[0, 1])
    at.radio(key="kind").set_value("decoder masked self").run()
    at.selectbox(key="layer").set_value(1).run()
    z = main_matrix(at)
    w = tr["decoder.1.self_attn"].weights[0, 1]
    allowed = np.broadcast_to(tr["decoder.1.self_attn"].mask[0, 0], w.shape)  # causal (and [PAD] if generated)
    assert not allowed[np.triu_indices_from(w, 1)].any()
    np.testing.assert_array_equal(z, w)  # masked weights are 0, drawn under a hatched overlay
    assert not allowed.all()
    assert any("masked (causal)" in t.get("text", "") for t in charts(at)[0]["data"][1:])
    at.selectbox(key="stage").set_value("scaled").run()
    spec = charts(at)[0]
    assert spec["data"][0]["zmid"] == 0
    np.testing.assert_array_equal(viz.figure_matrices(spec)[0], tr["decoder.1.self_attn"].scaled[0, 1])
    at.selectbox(key="head").set_value(-1).run()  # all heads: the head grid
    assert len(viz.figure_matrices(charts(at)[0])) == 2
    assert_clean(at)


def test_source_and_teacher_forced_target(ckpt):
    at = app(ckpt)
    at.text_area(key="source").input("Monday 3 March 1999").run()
    ref = reference(ckpt, "Monday 3 March 1999")
    assert charts(at)[0]["data"][0]["x"] == viz.token_labels(ref.source.tokens)
    at.radio(key="target_mode").set_value("type a target (teacher forcing)").run()
    at.text_input(key="target").input("1999-03-03").run()
    assert_clean(at)
    spec = charts(at)[0]
    assert spec["data"][0]["y"] == viz.token_labels(["[BOS]", *"1999-03-03"])
    ref = reference(ckpt, "Monday 3 March 1999", "1999-03-03")
    np.testing.assert_array_equal(viz.figure_matrices(spec)[0], ref.trace.numpy()["decoder.2.cross_attn"].weights[0, 0])
    assert "teacher-forced" in at.markdown[0].value


@pytest.mark.parametrize("view", ["Head grid", "Model overview", "Step by step", "One query", "Decoding",
                                  "Table & export"])
def test_every_view_renders(ckpt, view):
    at = app(ckpt, view=view)
    assert_clean(at)
    specs = charts(at)
    ref = reference(ckpt).trace.numpy()
    if view == "Model overview":
        mats = viz.figure_matrices(specs[0])
        assert len(mats) == 3 * 2  # layers x heads
        np.testing.assert_array_equal(mats[5], ref["decoder.2.cross_attn"].weights[0, 1])
    elif view == "Step by step":
        keys = [p.key for p in viz.stage_panels(ref["decoder.2.cross_attn"], 0, ["t"] * 30, ["s"] * 30)]
        assert "X_kv" in keys and "causal_mask" not in keys  # cross-attention: two inputs, no causal mask
        assert len(specs) == len(keys)
        assert any("(" in c.value and "x" in c.value for c in at.caption)
        assert len(at.get("latex")) == len(specs)
    elif view == "One query":
        assert len(at.dataframe) == 1 and len(specs) == 6
    elif view == "Decoding":
        assert len(specs) == 2 and any("with probability" in m.value for m in at.markdown)
        at.select_slider(key="step").set_value(3).run()
        assert_clean(at)
        rows = viz.figure_matrices(charts(at)[1])[0]
        np.testing.assert_array_equal(rows[:2], ref["decoder.2.cross_attn"].weights[0, :, 3])
    elif view == "Table & export":
        assert len(at.dataframe) == 1 and not specs
        df = at.dataframe[0].value
        assert set(df["head"]) == {0} and len(df) == ref["decoder.2.cross_attn"].weights[0, 0].size


def test_layer_head_view_changes_do_not_rerun_the_model(ckpt, monkeypatch):
    calls = []
    original = Pipeline.run

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "run", counting)
    at = app(ckpt)
    assert len(calls) == 1
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="head").set_value(1).run()
    at.radio(key="kind").set_value("encoder self").run()
    at.selectbox(key="stage").set_value("scores").run()
    at.session_state["view"] = "Step by step"
    at.run()
    assert_clean(at)
    assert len(calls) == 1
    at.text_area(key="source").input("Monday 3 March 1999").run()
    assert len(calls) == 2  # a new source is a new call


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
    assert len(charts(at)[0]["data"][0]["x"]) == 24  # max_len tokens, [EOS] included


def test_hostile_text_is_never_html(ckpt):
    text = "<script>alert(1)</script> **bold** 😀 日本 \x07 Saturday"
    at = app(ckpt, source=text)
    assert_clean(at)
    spec = at.get("plotly_chart")[0].proto.spec
    assert "<script>" not in spec and "[UNK]" in spec
    for view in ("Table & export", "One query", "Decoding"):
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
    assert "model.safetensors" in at.error[0].value
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
    original = Pipeline.run
    state = {"failed": False}

    def oom_once(self, *args, **kwargs):
        if not state["failed"]:
            state["failed"] = True
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "run", oom_once)
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
    at = app(ckpt)  # the first screen: cross-attention weights
    z = charts(at)[0]["data"][0]["z"]
    assert z["dtype"] == "f4" and wire_per_cell(z) <= 6 + 60 / 240  # ~50-byte header over 24 x 10 cells
    at.session_state["view"] = "Step by step"
    at.run()
    for spec in charts(at):
        assert spec["layout"]["template"] == {}  # no 9 kB default template in every chart
        for trace in spec["data"]:
            if trace["type"] == "heatmap":
                # signed activations escape more often ("/" is 0b111111: float32 exponent bytes 0x3F / 0xBF)
                cells = np.prod([int(n) for n in trace["z"]["shape"].split(",")])
                assert trace["z"]["dtype"] == "f4" and wire_per_cell(trace["z"]) <= 7.5 + 60 / cells  # + header


def test_over_budget_input_is_captured_one_attention_at_a_time(ckpt, monkeypatch):
    pipe = load(ckpt, device="cpu")
    ref = reference(ckpt)
    S, T = len(ref.source.ids), len(ref.target.ids)
    full, one = pipe.capture_bytes(S, T), pipe.capture_bytes(S, T, capture={"decoder.2.cross_attn"})
    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", str((full + one) / 2 / 2**20))  # one fits, all do not
    runs = []
    original = Pipeline.run

    def counting(self, *args, **kwargs):
        runs.append(kwargs.get("capture"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "run", counting)
    at = app(ckpt)
    assert_clean(at)
    assert any("capture budget" in w.value and "decoder.2.cross_attn" in w.value for w in at.warning)
    assert runs == [{"decoder.2.cross_attn"}]
    # the uncaptured layers ran the fast path: equal to the full trace within float error
    np.testing.assert_allclose(main_matrix(at), ref.trace.numpy()["decoder.2.cross_attn"].weights[0, 0], atol=1e-6)
    at.session_state["layer"] = 0  # another layer: traced on demand, and it is the right one
    at.run()
    assert_clean(at)
    assert runs[-1] == {"decoder.0.cross_attn"}
    np.testing.assert_allclose(main_matrix(at), ref.trace.numpy()["decoder.0.cross_attn"].weights[0, 0], atol=1e-6)
    at.session_state["view"] = "Model overview"
    at.run()
    assert_clean(at)
    assert any("one attention at a time" in i.value for i in at.info)


def test_input_over_budget_even_for_one_attention_is_refused(ckpt, monkeypatch):
    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", "0.0001")
    at = app(ckpt)
    assert not at.exception
    assert at.error and "shorten the text" in at.error[0].value
    assert not at.get("plotly_chart")


def test_generation_cap_and_its_warning(ckpt):
    at = app(ckpt, max_new=3)  # random weights: no [EOS] within 3 tokens
    assert_clean(at)
    ref = load(ckpt, device="cpu").run(SOURCE, max_new_tokens=3)
    assert main_matrix(at).shape[0] == len(ref.target.ids) <= 4
    assert any("did not end its output with [EOS]" in w.value for w in at.warning) == (not ref.stopped_at_eos)
    assert not ref.stopped_at_eos  # the fixture model is random: it runs to the cap


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
