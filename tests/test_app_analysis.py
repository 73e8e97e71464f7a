"""The analysis views in the app: each shows what model.analysis computes from the call's own trace."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import viz
from model import intervened_outputs, load, mask_reason_matrix
from model.analysis import effect_of, flow, rank_heads, rollout, source_attribution
from tests.canvas_parts import canvas_matrix, canvas_parts
from tests.test_app import APP, assert_clean, charts

ROOT = Path(__file__).resolve().parent.parent
DATES = ROOT / "checkpoints" / "dates"
SOURCE = "Saturday, November 21, 2026"

pytestmark = pytest.mark.usefixtures("shipped_app")


@pytest.fixture(scope="module")
def ref():
    return load(DATES, "cpu").run(SOURCE)


def view(name: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["view"] = name
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def array(value) -> np.ndarray:
    """A Plotly array as sent: a list, or a base64 typed array."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=float)


def weights(ref, stack, kind, n):
    return [ref.trace[f"{stack}.{i}.{kind}"].weights[0].numpy() for i in range(n)]


def test_statistics_view_is_the_head_table_of_the_trace(ref):
    at = view("Statistics")
    assert_clean(at)
    table = at.dataframe[0].value
    assert len(table) == 6 * 4  # 2 encoder + 2 x 2 decoder attentions, 4 heads
    row = table[(table["attention"] == "decoder.1.cross_attn") & (table["head"] == 3)].iloc[0]
    w = ref.trace["decoder.1.cross_attn"].weights[0, 3].numpy()
    assert row["max_weight"] == pytest.approx(w.max(-1).mean(), abs=1e-4)
    strip = viz.figure_matrices(charts(at)[0])[0]  # layers x heads of the selected kind (cross)
    assert strip.shape == (2, 4)
    assert strip[1, 3] == pytest.approx(row["entropy_norm"], abs=1e-4)


def test_rollout_view_shows_the_attribution_and_the_rollout(ref):
    at = view("Rollout")
    assert_clean(at)
    S, _ = source_attribution(weights(ref, "encoder", "self_attn", 2), weights(ref, "decoder", "self_attn", 2),
                              weights(ref, "decoder", "cross_attn", 2))
    np.testing.assert_allclose(viz.figure_matrices(charts(at)[0])[0], S.astype(np.float32), atol=1e-6)
    at.radio(key="ro_scope").set_value("encoder self-attention").run()
    assert_clean(at)
    r = rollout(weights(ref, "encoder", "self_attn", 2))
    np.testing.assert_allclose(viz.figure_matrices(charts(at)[0])[0], r.astype(np.float32), atol=1e-6)
    at.radio(key="ro_method").set_value("flow").run()
    assert_clean(at)
    f = flow(weights(ref, "encoder", "self_attn", 2))
    np.testing.assert_allclose(viz.figure_matrices(charts(at)[0])[0], f.astype(np.float32), atol=1e-6)
    bars = array(charts(at)[1]["data"][0]["y"])
    assert len(bars) == len(ref.source.ids)
    token = at.selectbox(key="ro_token").value  # the most informative row (issue 22: 6), no longer the last one
    np.testing.assert_allclose(bars, f[token].astype(np.float32), atol=1e-6)  # the strip of the picked token


def test_ablation_view_runs_the_intervention_in_the_call(ref):
    at = view("Ablation")
    at.multiselect(key="abl_heads").set_value(["decoder.1.cross_attn|3", "decoder.1.cross_attn|0"]).run()
    assert_clean(at)
    pipe = load(DATES, "cpu")
    spec = {"decoder.1.cross_attn": {3: "zero", 0: "zero"}}
    after = intervened_outputs(pipe, ref, [{"ablations": spec}])[0]
    eff = effect_of(ref.logits, after)
    chart = charts(at)[0]
    p_after = array(chart["data"][1]["y"])
    np.testing.assert_allclose(p_after, eff.p_after, atol=1e-6)
    text = " ".join(m.value for m in at.markdown).replace("\\", "").replace("\u2068", "").replace("\u2069", "")
    assert "Output before:** 2026-11-21" in text and "Output after ablating 2 head(s)" in text
    ablated = pipe.run(SOURCE, ablations=spec)
    assert ablated.output_text.replace("-", "") in text.replace("-", "")
    parts = canvas_parts(at)  # the original and the ablated run, side by side, on canvases
    assert {"abl_map_original", "abl_map_ablated"} <= set(parts)
    np.testing.assert_array_equal(canvas_matrix(at, "abl_map_ablated"),
                                  ablated.trace["decoder.1.cross_attn"].weights[0, 3])
    np.testing.assert_array_equal(canvas_matrix(at, "abl_map_original"),
                                  ref.trace["decoder.1.cross_attn"].weights[0, 3])


def test_which_heads_matter_ranks_every_head(ref):
    at = view("Ablation")
    at.button(key="rank_heads").click().run()
    assert_clean(at)
    table = at.dataframe[-1].value
    assert len(table) == 24 and list(table["rank"]) == list(range(1, 25))
    expected, _ = rank_heads(load(DATES, "cpu"), ref, "zero")
    assert list(zip(table["attention"], table["head"], strict=True))[:3] == \
        list(zip(expected["attention"], expected["head"], strict=True))[:3]
    assert any("24 heads in" in c.value for c in at.caption)


def test_compare_two_inputs_and_a_snapshot(ref):
    at = view("Compare", cmp_source="Monday, November 23, 2026")
    assert_clean(at)
    table = at.dataframe[0].value
    assert {"js_distance", "aligned_queries", "aligned_keys"} <= set(table.columns)
    assert table["js_distance"].between(0, 1).all()
    diff = [c for c in charts(at) if "A − B" in c["layout"]["title"]["text"]]
    assert diff and diff[0]["data"][0]["zmid"] == 0
    at.radio(key="cmp_mode").set_value("same input, another checkpoint").run()
    options = at.selectbox(key="cmp_model").options
    assert "dates (final)" not in options and "dates" not in options  # A itself is no B, under any name
    assert "dates at step 0" in options and "numbers" in options and len(options) == len(set(options))
    at.selectbox(key="cmp_model").set_value("dates at step 0").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert (table["aligned_queries"] == len(ref.target.ids)).all()  # same input: every position aligns
    assert table["js_distance"].mean() > 0.1  # an untrained model looks elsewhere


def test_head_view_draws_lines_above_the_threshold(ref):
    at = view("Head view")
    assert_clean(at)
    rec = ref.trace["decoder.1.cross_attn"].numpy()
    lines = viz.select_lines(rec.weights[0], [3], 0.02, mask_reason_matrix(rec) == "")
    captions = " ".join(c.value for c in at.caption)
    assert f"{len(lines.lines):,} lines drawn" in captions and f"{lines.hidden:,} of {lines.total:,}" in captions
    at.select_slider(key="hv_threshold").set_value(0.5).run()
    fewer = viz.select_lines(rec.weights[0], [3], 0.5, mask_reason_matrix(rec) == "")
    assert f"{len(fewer.lines):,} lines drawn" in " ".join(c.value for c in at.caption)


def test_training_view_every_step_and_head_without_rerunning_the_model(monkeypatch):
    from model import TransformerPipeline

    at = view("Training")
    assert_clean(at)
    parts = canvas_parts(at)
    slider = parts["train_map"]["choices"]["groups"][0]
    assert slider["control"] == "slider" and [v for v, _ in slider["options"]] == [0, 100, 250, 500, 750]
    # every snapshot's map of this attention (every head) is in the page: the slider scrubs without a rerun
    held = {o["choice"]["step"]: o for o in parts["train_map.stack"]["overviews"]}
    assert sorted(held) == [0, 100, 250, 500, 750]
    final_ids = load(DATES, "cpu").greedy(SOURCE)
    snap = load(DATES / "snapshots" / "step_00250", "cpu").run(SOURCE, generated_ids=final_ids)
    np.testing.assert_array_equal(held[250]["values"], snap.trace["decoder.1.cross_attn"].weights[0].numpy())
    runs = []
    original = TransformerPipeline.run
    monkeypatch.setattr(TransformerPipeline, "run", lambda self, *a, **k: (runs.append(1), original(self, *a, **k))[1])
    for step in (0, 100, 250, 500, 750):
        at.session_state["train_step"] = step  # what the page's slider reports (or a click on a thumbnail)
        at.run()
        assert_clean(at)
        assert canvas_parts(at)["train_map"]["choice"] == {"step": step}
    for head in range(4):
        at.selectbox(key="head").set_value(head).run()
        assert_clean(at)
    assert runs == []  # steps and heads come from the cached series: no model runs again
    snap = load(DATES / "snapshots" / "step_00750", "cpu")
    w = snap.run(SOURCE, generated_ids=final_ids).trace["decoder.1.cross_attn"].weights[0, 3].numpy()
    np.testing.assert_array_equal(canvas_matrix(at, "train_map"), w)


def test_the_induction_training_view_tells_what_to_look_for():
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["model"] = "induction"
    at.run()
    at.selectbox(key="model").set_value("induction")
    at.session_state["view"] = "Training"
    at.run()
    assert_clean(at)
    expander = " ".join(m.value for m in at.markdown)
    assert "induction head" in expander and "previous-token" in expander.lower()
    assert at.radio(key="train_score").value == "induction"
    lines = charts(at)[0]  # the map is on the canvas; the score lines are the first chart
    assert len([t for t in lines["data"] if t.get("name", "").startswith("head")]) == 4
    # the shipped model is the best step (2,900), its snapshots run to 3,000: the view says so
    assert any("checkpoint of step 2,900" in c.value and "to step 3,000" in c.value for c in at.caption)
