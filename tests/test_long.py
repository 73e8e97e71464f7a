"""Long inputs: 8,192 tokens through a tiny Llama and a sliding-window Mistral, never holding T x T x H; rows sum to
1, causal and window cells are zero, and lazy, windowed and column answers agree."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model import load, run
from model.analysis.needle import needle_table
from tests.hf_models import byte_level_tokenizer

T = 8192


def tiny_long(path, family: str):
    import transformers as tf

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    tok = byte_level_tokenizer(["<|begin_of_text|>", "<|end_of_text|>"], "<|begin_of_text|> $A")
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=T, vocab_size=tok.get_vocab_size() + 3,
                  bos_token_id=tok.token_to_id("<|begin_of_text|>"), eos_token_id=tok.token_to_id("<|end_of_text|>"))
    if family == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common))
    else:
        model = tf.MistralForCausalLM(tf.MistralConfig(sliding_window=64, **common))
    model.eval().save_pretrained(path)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": T}))
    return path


def long_text(pipe, n: int) -> str:
    from benchmarks.gpt2small import text_of_tokens

    return text_of_tokens(pipe.tokenizer.hf, n)


@pytest.fixture(scope="module")
def long_runs(tmp_path_factory):
    out = {}
    for family in ("llama", "mistral"):
        pipe = load(tiny_long(tmp_path_factory.mktemp(family), family), "cpu")
        text = long_text(pipe, T)
        out[family] = (pipe, run(pipe, text, mode="lazy"))
    return out


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_8192_tokens_rows_sum_to_one_and_masked_cells_are_zero(long_runs, family):
    pipe, res = long_runs[family]
    trace = res.trace
    assert len(res.target.ids) == T and trace.lazy and not trace.exact  # the fast first pass
    for name in trace:
        shape = trace.shape(name)
        assert (shape.tq, shape.tk) == (T, T)
        # never T x T x H: what the call keeps grows with T (q, k, v, context, inputs, overviews)
        assert trace.inputs_of(name).nbytes() + trace.lse(name).numel() * 4 < T * T, name
        for q in (0, 1, 700, T // 2, T - 1):
            row = trace.row(name, 3, q)
            assert abs(float(row.weights.sum()) - 1) < 1e-5
            assert np.all(row.weights[q + 1:] == 0)  # causal: nothing from the future
            if family == "mistral":
                assert np.all(row.weights[: max(0, q - 64 + 1)] == 0)  # outside the window
                assert row.allowed.sum() == min(q + 1, 64)
        win = trace.window(name, 1, range(T - 300, T - 44), range(T - 300, T - 44), "weights")
        assert win.values.shape == (256, 256) and set(win.reasons) <= {"causal", "window", "causal+window"}
        forbidden = np.zeros((256, 256), bool)
        for cells in win.reasons.values():
            forbidden |= cells
        assert np.all(win.values[forbidden] == 0)
        # the same cells through the columns path (normalised by the kept log-sum-exp)
        cols = trace.columns(name, range(T - 300, T - 44), rows=range(T - 300, T - 44))[1]
        np.testing.assert_allclose(cols, win.values, rtol=1e-5, atol=1e-7)


def test_the_overview_of_8192_tokens_is_pooled_and_its_blocks_name_their_masks(long_runs):
    _, res = long_runs["mistral"]
    trace = res.trace
    name = "decoder.1.self_attn"
    ov = trace.overview(name)
    assert ov.shape == (4, 512, 512) and trace.overview_pool(name) == 16 and ov.dtype == np.uint8
    reasons = trace.block_reasons(name)
    assert reasons["causal"][0, 511] and not reasons["causal"][511, 511]  # the future of the first rows
    assert reasons["window"][511, 0] and not reasons["window"][511, 510]
    # the diagonal blocks hold the strongest weights, and nothing is drawn where every cell is masked
    assert np.all(ov[:, reasons["causal"]] == 0) and np.all(ov[:, reasons["window"]] == 0)


def test_statistics_and_the_needle_at_8192_tokens(long_runs):
    from model.analysis.heads import head_table

    _, res = long_runs["llama"]
    trace = res.trace
    table = head_table(trace)
    assert len(table) == 2 * 4 and table["entropy"].notna().all() and table["local_64"].between(0, 1).all()
    assert table["sink_share"].between(0, 1).all()
    needle, seconds = needle_table(trace, range(100, 110))
    assert len(needle) == 8 and needle["queries"].eq(T - 110).all() and needle["mean_on_span"].between(0, 1).all()


def test_a_long_input_is_traced_lazily_by_the_app_budget(long_runs):
    from model import CaptureBudget

    pipe, _ = long_runs["llama"]
    text = long_text(pipe, 2047)
    res = run(pipe, text, budget=CaptureBudget(full_bytes=64 * 2**20, record_bytes=64 * 2**20))
    assert res.mode == "lazy" and res.estimate_bytes > 64 * 2**20
    with pytest.raises(ValueError, match="one record may take"):
        res.trace["decoder.0.self_attn"]  # a complete record over the budget is refused; windows answer
    assert res.trace.window("decoder.0.self_attn", 0, range(0, 8), range(0, 8)).values.shape == (8, 8)


@pytest.mark.parametrize("view", ["Attention map", "Head grid", "Model overview", "Head view", "Step by step",
                                  "One query", "Decoding", "Statistics", "Rollout", "Needle", "Ablation", "Export"])
def test_every_view_at_2000_tokens(long_runs, view, tmp_path, monkeypatch):
    """At a length where the app captures lazily (fast first pass) and no complete record fits: every view either
    works from windows, rows and the first pass, or says what it needs and offers the map; never a traceback."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import clear_app_caches

    pipe, _ = long_runs["llama"]
    import ui.tracing

    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", "64")
    monkeypatch.setattr(ui.tracing, "MIN_RECORD_CAP", 16 * 2**20)  # no complete record of this length fits
    clear_app_caches()
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300)
    at.session_state["model_path"] = pipe.path
    at.session_state["source"] = long_text(pipe, 2000)
    at.session_state["view"] = view
    at.session_state["needle_text"] = "the"
    at.run()
    assert not at.exception, at.exception
    if view in ("Head view", "Step by step", "One query", "Rollout"):
        assert any("too much to compute at once" in w.value for w in at.warning), view
    if view == "Statistics":
        table = at.dataframe[0].value
        assert len(table) == 2 * 4 and table[[c for c in table.columns if "entropy" in c.lower()][0]].notna().all()
    if view == "Export":
        df = at.dataframe[0].value
        from ui.tracing import capture_budget
        trace = run(pipe, long_text(pipe, 2000), budget=capture_budget()).trace
        win = trace.window("decoder.1.self_attn", 0, range(0, 512), range(0, 512))
        np.testing.assert_array_equal(df["weight"].to_numpy(np.float32), win.values.ravel()[: len(df)])
        assert at.get("download_button")
    if view == "Needle":
        assert len(at.dataframe[0].value) == 8


def test_the_whole_map_over_the_detail_cap_is_drawn_from_the_overview(long_runs, monkeypatch):
    """A view over tiles.DETAIL_MAX_CELLS (the whole map above 4,096 tokens; here the cap is lowered to 1,000 x
    1,000 for a 2,000-token input) gets no detail tile: the page is told, and the caption says what the hover reads."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import clear_app_caches
    from viz import tiles, wire

    pipe, _ = long_runs["llama"]
    monkeypatch.setattr(tiles, "DETAIL_MAX_CELLS", 1000 * 1000)
    clear_app_caches()
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300)
    at.session_state["model_path"] = pipe.path
    at.session_state["source"] = long_text(pipe, 2000)
    at.session_state["view"] = "Attention map"
    at.run()
    assert not at.exception, at.exception
    parts = {e.proto.id.rsplit("-", 1)[-1]: wire.unpack(e.proto.bytes) for e in at.get("bidi_component")}
    ov, detail = parts["map"], parts["map.detail"]
    assert detail["skipped"] and detail["overview"] == ov["id"] and detail["max_cells"] == 1000 * 1000
    assert "tile" not in detail and detail["view"] == {"r0": 0, "r1": 2000, "c0": 0, "c1": 2000}
    assert any("exact once at most 1,000 × 1,000 cells are in view" in c.value for c in at.caption)


def test_a_new_overview_goes_alone_and_its_detail_follows_the_pages_request(long_runs):
    """Streamlit draws the map when the run ends: a new overview (first map, another layer) is sent with a deferred
    detail; the page's request reruns the script, which then computes the detail for the same overview."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import clear_app_caches
    from viz import wire

    pipe, _ = long_runs["llama"]
    clear_app_caches()
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300)
    at.session_state["model_path"] = pipe.path
    at.session_state["source"] = long_text(pipe, 1500)
    at.session_state["view"] = "Attention map"

    def parts():
        return {e.proto.id.rsplit("-", 1)[-1]: wire.unpack(e.proto.bytes) for e in at.get("bidi_component")}

    at.run()
    assert not at.exception, at.exception
    first = parts()
    assert first["map.detail"]["deferred"] and "tile" not in first["map.detail"]
    at.run()  # what the page's detail_request triggers
    second = parts()
    assert second["map"]["id"] == first["map"]["id"] and second["map.detail"]["overview"] == first["map"]["id"]
    tile = second["map.detail"]["tile"]
    assert tile["pool"] == 4 and tile["values"].shape == (375, 375)  # 1,500 tokens, blocks of 4 x 4
    at.session_state["layer"] = 0
    at.run()  # another layer: its overview alone again
    assert parts()["map"]["id"] != first["map"]["id"] and parts()["map.detail"]["deferred"]


def test_a_knockout_at_8192_tokens_stays_within_300_mib_of_the_traced_call(tmp_path):
    """Issue 32: one knocked-out cell held T x T (+4.9 GB at 8,192 tokens). In a fresh process (the figures of
    benchmarks/bench_knockout.py): the what-if's peak within BOUND_MB of the app's traced call."""
    from benchmarks.bench_knockout import BOUND_MB, ROOT, long_gpt2, measure

    r = measure(ROOT, long_gpt2(tmp_path / "gpt2long", positions=T), T)
    assert r["mode"] == "lazy" and r["T"] == T and r["knocked"] == 1
    assert r["beyond_traced_MiB"] <= BOUND_MB, r
