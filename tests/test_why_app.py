"""The logit lens, patching and knockout views in the app (Streamlit's AppTest): each shows what model.analysis
computes from the call, says how long it took, exports, and survives hostile input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import viz
from model import load, run
from model.analysis import (
    knockout_effect,
    knockout_spec,
    logit_lens,
    patch_each_position,
    patch_heads,
    rerun,
    run_corrupt,
    select_cells,
    token_id,
)
from tests.canvas_parts import canvas_matrix, canvas_parts
from tests.conftest import wait_for_jobs
from tests.hf_models import build
from tests.test_app import APP, assert_clean, charts, page_text, plain, plotly_array
from tests.test_hardening import HOSTILE, check_charts

ROOT = Path(__file__).resolve().parent.parent
INDUCTION = ROOT / "checkpoints" / "induction"
SOURCE = "Saturday, November 21, 2026"
OTHER = "Monday, March 13, 1999"  # as many source tokens as SOURCE
WHY_VIEWS = ("Logit lens", "Patching", "Knockout")

pytestmark = pytest.mark.usefixtures("shipped_app")


def view(name: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["view"] = name
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def heatmap(spec: dict) -> dict:
    return next(t for t in spec["data"] if t["type"] == "heatmap")


def text_of(at) -> str:
    """The page's text as read (markdown escapes and bidi isolates dropped)."""
    return plain(page_text(at)).replace("\\", "")


def downloads(at) -> list[str]:
    return [b.label for b in at.get("download_button") if not b.label.startswith("Save session")]  # the sidebar's


# the logit lens ----------------------------------------------------------------------------------------------------

def test_the_lens_view_is_the_lens_of_the_call(dates):
    at = view("Logit lens")
    assert_clean(at)
    ref = dates.run(SOURCE)
    lens = logit_lens(dates, rerun(dates, ref, SOURCE, capture=False, hidden_states=True))
    spec = charts(at)[0]
    np.testing.assert_allclose(viz.figure_matrices(spec)[0], np.exp(lens.token_log_probs), atol=1e-6)
    heat = heatmap(spec)
    assert heat["y"] == lens.depth_labels and heat["zmin"] == 0 and heat["zmax"] == 1
    words = next(t for t in spec["data"] if t.get("mode") == "text")["text"]  # the top token written in each cell
    assert words[0] == viz.esc(dates.token_label(int(lens.top_ids[0, 0, 0])))
    hover = heat["customdata"][-1][0]
    assert "top 5:" in hover and hover.count("<br>") >= 7  # the five most likely tokens
    text = text_of(at)
    assert "the last row is the model's output itself" in text and " s (plus " in text
    assert downloads(at) == ["CSV of the lens", "JSON of the lens"]


def test_the_lens_follows_a_typed_token(dates):
    at = view("Logit lens", lens_token="5")
    assert_clean(at)
    lens = logit_lens(dates, rerun(dates, dates.run(SOURCE), SOURCE, capture=False, hidden_states=True))
    np.testing.assert_allclose(viz.figure_matrices(charts(at)[0])[0], np.exp(lens.log_probs[..., token_id(dates, "5")]),
                               atol=1e-6)
    at.text_input(key="lens_token").set_value("55 November").run()
    assert_clean(at)
    assert any("not one" in w.value for w in at.warning)  # several tokens: said, and the final prediction followed


def test_the_lens_shows_a_window_of_a_long_input():
    words = ("red fox blue owl green cat gold bee sun cup map jar " * 4).split()[:45]
    at = view("Logit lens", model="induction", source=" ".join(words))
    assert_clean(at)
    z = viz.figure_matrices(charts(at)[0])[0]
    assert z.shape == (3, 24)  # 46 positions, 24 shown (the last ones first); the window moves with a slider
    at.selectbox(key="lens_width").set_value(46).run()
    assert viz.figure_matrices(charts(at)[0])[0].shape == (3, 46)
    assert not any(t.get("mode") == "text" for t in charts(at)[0]["data"])  # too narrow for text: hover only
    assert any("too narrow for text" in c.value for c in at.caption)


def test_a_costly_lens_is_a_job_started_by_a_click(monkeypatch):
    import ui.views.lens

    monkeypatch.setattr(ui.views.lens, "CONFIRM_FLOPS", 0)  # as for GPT-2 small above about 130 tokens
    at = view("Logit lens")
    assert_clean(at)
    text = plain(page_text(at)).replace("\\", "")
    assert not charts(at) and "3 steps (a run keeping the residual streams" in text and "runs as a job" in text
    at.button(key="lens_run").click().run()
    wait_for_jobs(at)
    assert_clean(at)
    assert viz.figure_matrices(charts(at)[0])[0].shape == (3, 11)
    at.run()  # computed once: shown again without a click
    assert charts(at)


# patching ----------------------------------------------------------------------------------------------------------

def test_the_patching_view_patches_every_head(dates):
    at = view("Patching", patch_source=OTHER)
    assert_clean(at)
    assert "Patch all 24 heads" in [b.label for b in at.button]
    at.button(key="patch_run").click().run()
    assert_clean(at)
    clean = rerun(dates, dates.run(SOURCE), SOURCE, capture=False, keep_contexts=True)
    corrupt = run_corrupt(dates, clean, OTHER)
    res = patch_heads(dates, clean, corrupt)
    specs = charts(at)
    strips = [s for s in specs if "metric change when the head is patched" in s["layout"]["title"]["text"]]
    assert len(strips) == 3
    ranges = {(heatmap(s)["zmin"], heatmap(s)["zmax"]) for s in strips}
    assert len(ranges) == 1 and ranges.pop() == pytest.approx((-res.scale, res.scale))  # one scale, centred on 0
    for s in strips:
        kind = s["layout"]["title"]["text"].split(":")[0]
        np.testing.assert_allclose(viz.figure_matrices(s)[0], res.effect[kind], atol=1e-4)
    text = text_of(at)
    assert "One colour scale for every kind" in text and "24 patched runs in" in text
    assert f"clean {res.clean_value:.4f}" in text
    # the head with the largest effect, in both runs side by side, and patched position by position
    kind, layer, head = max(((k, r, h) for k, e in res.effect.items() for r in range(e.shape[0])
                             for h in range(e.shape[1])), key=lambda c: abs(res.effect[c[0]][c[1], c[2]]))
    name = {"cross": "decoder.{}.cross_attn", "encoder self": "encoder.{}.self_attn",
            "decoder masked self": "decoder.{}.self_attn"}[kind].format(res.layers[kind][layer])
    assert {"patch_map_clean", "patch_map_corrupted"} <= set(canvas_parts(at))  # both runs, side by side
    corrupt_traced = dates.run(OTHER, generated_ids=list(clean.target.ids))
    np.testing.assert_array_equal(canvas_matrix(at, "patch_map_corrupted"), corrupt_traced.trace[name].weights[0, head])
    assert not any("patched at one query position" in s["layout"]["title"]["text"] for s in specs)  # when asked
    at.button(key="patch_positions_run").click().run()
    assert_clean(at)
    specs = charts(at)
    pp = patch_each_position(dates, clean, corrupt, name, head)
    bars = next(s for s in specs if "patched at one query position" in s["layout"]["title"]["text"])
    np.testing.assert_allclose(plotly_array(bars["data"][0]["y"]), pp.effect, atol=1e-4)
    assert downloads(at) == ["CSV of the effects", "JSON of the effects", "CSV of the per-position effects"]


def test_a_click_on_the_grid_opens_that_head():
    at = view("Patching", patch_source=OTHER)
    at.button(key="patch_run").click().run()
    at.session_state["patch_pick"] = ("encoder.0.self_attn", 2)  # what the click callback stores
    at.run()
    assert_clean(at)
    assert any("encoder self · layer 0 · head 2" in m.value for m in at.markdown)


def test_patching_refuses_inputs_of_different_lengths():
    at = view("Patching", patch_source="21 November 2026")
    assert_clean(at)
    text = text_of(at)
    assert "tokenize to 11 and 8 tokens" in text and "does not guess one" in text
    assert "patch_run" not in [b.key for b in at.button]
    assert len(at.dataframe) == 1 and list(at.dataframe[0].value["tokens"]) == [11, 8]


def test_patching_by_logit_difference(dates):
    at = view("Patching", model="induction", source="red fox blue owl green cat gold bee red fox blue owl green cat "
              "gold bee", patch_source="red fox blue owl green cat gold bee lime fox blue owl green cat gold bee")
    at.radio(key="patch_metric").set_value("logit difference: answer − wrong").run()
    assert_clean(at)
    answer, wrong = at.selectbox(key="patch_answer").value, at.selectbox(key="patch_wrong").value
    pipe = load(INDUCTION, "cpu")
    assert pipe.token_label(answer) == "red" and pipe.token_label(wrong) == "lime"  # each run's prediction
    at.button(key="patch_run").click().run()
    assert_clean(at)
    assert "logit(red) − logit(lime) at position 16" in text_of(at)


# knockouts ---------------------------------------------------------------------------------------------------------

def test_the_knockout_view_knocks_out_a_key_column(dates):
    at = view("Knockout")
    assert_clean(at)
    assert at.multiselect(key="ko_keys").value == [0]
    at.multiselect(key="ko_keys").set_value([9]).run()  # the year's last digit, in layer 1's cross-attention head 3
    at.button(key="ko_run").click().run()
    assert_clean(at)
    ref = dates.run(SOURCE)
    name = "decoder.1.cross_attn"
    Tq, Tk = ref.trace[name].weights.shape[2:]
    spec = knockout_spec(name, [3], select_cells(Tq, Tk, keys=[9]))
    eff = knockout_effect(dates, ref, spec)
    effects = next(s for s in charts(at) if s["layout"]["title"]["text"].startswith("the original prediction"))
    np.testing.assert_allclose(plotly_array(effects["data"][1]["y"]), eff.effect.p_after, atol=1e-6)
    assert effects["data"][1]["name"] == "after knockout"
    knocked = dates.run(SOURCE, generated_ids=list(ref.target.ids), knockouts=spec)
    np.testing.assert_array_equal(canvas_matrix(at, "ko_map_knocked"), knocked.trace[name].weights[0, 3])
    after = canvas_parts(at)["ko_map_knocked"]
    assert ((after["reasons"][3] & 8) != 0)[:, 9].all()  # the knocked-out column, hatched and named so
    pick = canvas_parts(at)["ko_pick"]  # the cells chosen, hatched on the map before the run
    assert ((pick["reasons"][3] & 8) != 0).sum() == Tq and ((pick["reasons"][0] & 8) == 0).all()
    text = text_of(at)
    assert "Output after knocking out 11 cell(s) of decoder.1.cross_attn head 3" in text and "Computed in" in text
    assert downloads(at) == ["CSV of the effects", "JSON of the effects"]
    # the what-if stays while another attention of the knocked-out run is looked at
    at.selectbox(key="ko_show").set_value("decoder.1.self_attn").run()
    assert_clean(at)
    np.testing.assert_array_equal(canvas_matrix(at, "ko_map_knocked"),
                                  knocked.trace["decoder.1.self_attn"].weights[0, 3])


@pytest.mark.parametrize("how,state,cells", [
    ("query row", {"ko_queries": [4]}, {"queries": [4]}),
    ("rectangle", {"ko_r0": 2, "ko_r1": 5, "ko_c0": 3, "ko_c1": 4}, {"rows": range(2, 6), "cols": range(3, 5)}),
    ("cells", {"ko_pairs": "3,9; 4,9"}, {"pairs": [(3, 9), (4, 9)]}),
])
def test_every_way_of_picking_cells(dates, how, state, cells):
    at = view("Knockout", ko_how=how, head=-1, **state)
    at.button(key="ko_run").click().run()
    assert_clean(at)
    ref = dates.run(SOURCE)
    name = "decoder.1.cross_attn"
    Tq, Tk = ref.trace[name].weights.shape[2:]
    spec = knockout_spec(name, range(4), select_cells(Tq, Tk, **cells))  # "all heads": every head
    eff = knockout_effect(dates, ref, spec)
    effects = next(s for s in charts(at) if s["layout"]["title"]["text"].startswith("the original prediction"))
    np.testing.assert_allclose(plotly_array(effects["data"][2]["y"]), eff.effect.kl, atol=1e-6)


def test_bad_cells_are_a_message():
    at = view("Knockout", ko_how="cells", ko_pairs="3,x; 99,99")
    assert_clean(at)
    assert any("not a (query, key) pair" in e.value.replace("\\", "") for e in at.error)


# a transformers model, and hostile input ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("why_models")
    build("gpt2", root / "gpt2")
    return root


@pytest.mark.parametrize("name", WHY_VIEWS)
def test_the_views_on_a_transformers_model(monkeypatch, models_dir, name):
    monkeypatch.setenv("INSPECTOR_MODELS", str(models_dir))
    at = view(name, model="gpt2 (models directory)", source="the cat sat on the mat",
              patch_source="the dog sat on the mat")
    assert_clean(at)
    if name == "Patching":
        at.button(key="patch_run").click().run()
    if name == "Knockout":
        at.button(key="ko_run").click().run()
    assert_clean(at)
    assert check_charts(at) >= 1
    if name == "Logit lens":
        pipe = load(models_dir / "gpt2", "cpu")
        res = run(pipe, "the cat sat on the mat", capture=False, hidden_states=True)
        np.testing.assert_allclose(viz.figure_matrices(charts(at)[0])[0],
                                   np.exp(logit_lens(pipe, res).token_log_probs), atol=1e-5)


@pytest.mark.parametrize("name", WHY_VIEWS)
def test_the_views_on_a_lazily_traced_call(monkeypatch, name):
    monkeypatch.setenv("INSPECTOR_MAX_CAPTURE_MB", "0")  # every call traced lazily: records on demand
    at = view(name, patch_source=OTHER)
    assert_clean(at)
    assert any("over the capture budget" in i.value for i in at.info)  # the call was traced lazily
    for key in ("patch_run", "ko_run"):
        if key in [b.key for b in at.button]:
            at.button(key=key).click().run()
    assert_clean(at)
    assert check_charts(at) >= 1


HOSTILE_SAMPLE = ["", "   \t\n  ", "a" * 10_000, "😀", "👨‍👩‍👧‍👦", "\u202eevil\u202c 21.11.2026", "\x00",
                  "\x01\x02\x03\x1b[31mred\x1b[0m", "<script>alert('x')</script>", "**bold** _it_ `code` # heading",
                  "$$\\def\\x{\\x}\\x$$", "zero\u200bwidth\u200cjoin\u200dx", "漢字かなカナ 2026年11月21日",
                  "=HYPERLINK(\"http://x\")"]


def test_hostile_corpus_sample_is_from_the_corpus():
    assert set(HOSTILE_SAMPLE) <= set(HOSTILE)


@pytest.mark.parametrize("name", WHY_VIEWS)
def test_hostile_sources_in_each_view(name):
    at = view(name)
    for text in HOSTILE_SAMPLE:
        at.session_state["source"] = text
        at.run()
        assert not at.exception, (name, text[:30], [e.value for e in at.exception])
        if name == "Knockout" and text.strip():
            at.button(key="ko_run").click().run()
            assert not at.exception, (name, text[:30], [e.value for e in at.exception])
        check_charts(at)


def test_hostile_corrupted_inputs():
    at = view("Patching")
    for text in HOSTILE:
        at.text_area(key="patch_source").set_value(text).run()
        assert not at.exception, (text[:30], [e.value for e in at.exception])
        if "patch_run" in [b.key for b in at.button]:  # the same length: patch it
            at.button(key="patch_run").click().run()
            assert not at.exception, (text[:30], [e.value for e in at.exception])
        check_charts(at)
