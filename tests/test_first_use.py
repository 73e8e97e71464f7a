"""First use, round 3 (issue 22, and issue 23's items 3 and 6) through Streamlit's AppTest: links that reopen a
view and saved sessions, the sidebar's model name, the head grid, the ranking's colour scale, the Training view,
rollout, the comparison's labels, statistics, ablation without an output head and the smaller findings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import clear_app_caches
from streamlit.testing.v1 import AppTest

from tests.canvas_parts import canvas_parts, col_labels
from ui.links import session_limit
from ui.page_types import MAX_TARGET_CHARS
from ui.sidebar import source_chars

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SHIPPED = ROOT / "checkpoints"
MAX_SOURCE = source_chars()  # the text box's limit: a link's, an upload's and a saved session's too
SESSION_LIMIT = session_limit(MAX_SOURCE, MAX_TARGET_CHARS)


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """Shipped checkpoints, no models directory, local use, empty caches."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    for name in ("INSPECTOR_MODELS", "INSPECTOR_PUBLIC", "INSPECTOR_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    clear_app_caches()
    yield
    clear_app_caches()


def run(query: dict | None = None, state: dict | None = None, timeout: float = 120) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    for k, v in (state or {}).items():
        at.session_state[k] = v
    return at.run()


VIEW_NAMES = {"head-grid": "Head grid", "ablation": "Ablation", "training": "Training", "rollout": "Rollout",
              "compare": "Compare", "statistics": "Statistics", "one-query": "One query"}
KIND_NAMES = {"cross": "cross", "encoder-self": "encoder self", "decoder-masked-self": "decoder masked self"}


def as_state(sel: dict) -> dict:
    """Link-style selection -> the session state the sidebar and selectors read (so that the tests of findings 2-10
    do not depend on links)."""
    out = {}
    for key, value in sel.items():
        if key == "view":
            out["view"] = VIEW_NAMES[value]
        elif key == "kind":
            out["kind"] = KIND_NAMES[value]
        elif key in ("layer", "head"):
            out[key] = -1 if value == "all" else int(value)
        elif key == "text":
            out["source"] = value
        else:
            out[key] = value
    return out


def clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plotly_values(value) -> np.ndarray:
    """A Plotly array as sent: a list, or a base64 typed array {"dtype", "bdata"}."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=float)


def charts(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def unescaped(text: str) -> str:
    """Markdown text as a reader sees it (ui.text.md escapes every special character with a backslash, and may wrap
    model text in Unicode isolates)."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2068", "").replace("\u2069", "")


def warnings_text(at) -> str:
    return unescaped(" ".join(w.value for w in at.warning))


def selection(at) -> dict:
    s = at.session_state
    return {k: s[k] for k in ("kind", "layer", "head", "stage", "view")}


# links that reopen a view --------------------------------------------------------------------------------------------

def test_the_servers_warm_up_traces_what_the_first_visit_shows(monkeypatch):
    """ui.warmup.first_trace opens the default model and traces its example with the sidebar's defaults: the first
    visit then runs the model 0 times (the same cache keys), and draws the same map."""
    from model.own.pipeline import TransformerPipeline
    from ui.warmup import first_trace

    calls = []
    original = TransformerPipeline.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TransformerPipeline, "forward", counting)
    first_trace()
    warmed = len(calls)
    at = run()
    assert not at.exception and warmed >= 1 and len(calls) == warmed
    assert at.selectbox(key="model").value == "dates" and at.get("bidi_component")  # the map: the canvas


def test_a_link_opens_that_view():
    at = run({"model": "induction", "kind": "decoder-masked-self", "layer": "1", "head": "2", "stage": "scores",
              "view": "head-grid", "text": "cat dog owl cat dog owl"})
    clean(at)
    assert at.session_state["model"] == "induction"
    assert at.session_state["source"] == "cat dog owl cat dog owl"
    assert selection(at) == {"kind": "decoder masked self", "layer": 1, "head": 2, "stage": "scores",
                             "view": "Head grid"}
    assert warnings_text(at) == ""
    assert "every head" in charts(at)[0]["layout"]["title"]["text"]


def test_changing_a_selector_updates_the_link():
    at = run()
    clean(at)
    assert at.query_params["model"] == "dates" and at.query_params["view"] == "attention-map"
    assert at.query_params["text"] == "Saturday, November 21, 2026"
    at.selectbox(key="layer").set_value(0).run()
    at.selectbox(key="head").set_value(-1).run()
    clean(at)
    assert at.query_params["layer"] == "0" and at.query_params["head"] == "all"


def test_copy_link_gives_the_url_of_the_view():
    at = run({"model": "dates", "layer": "0", "head": "1", "view": "step-by-step"})
    clean(at)
    codes = [c.value for c in at.code]
    link = next(c for c in codes if "view=step-by-step" in c)
    assert "model=dates" in link and "layer=0" in link and "head=1" in link
    # the link reopens the same view in a new session
    query = dict(pair.split("=", 1) for pair in link.split("?", 1)[1].split("&"))
    from urllib.parse import unquote_plus
    again = run({k: unquote_plus(v) for k, v in query.items()})
    clean(again)
    assert selection(again) == selection(at)


@pytest.mark.parametrize("query, words", [
    ({"view": "nonsense"}, "view “nonsense” is not offered"),
    ({"layer": "99"}, "layer 99 does not exist"),
    ({"head": "-5"}, "head -5 does not exist"),
    ({"head": "1e9"}, "is not a number"),
    ({"layer": "1; DROP TABLE"}, "is not a number"),
    ({"kind": "sideways"}, "attention kind “sideways”"),
    ({"stage": "<script>alert(1)</script>"}, "is not one of"),
    ({"text": "x" * (MAX_SOURCE + 1)}, f"{MAX_SOURCE + 1:,} characters long"),
    ({"text": "bad\x00text\x1b[31m"}, "control characters"),
    ({"model": "../../../../etc"}, "cannot be opened"),
    ({"model": "/etc"}, "cannot be opened"),
    ({"model": "no such model"}, "cannot be opened"),
    ({"model": "m\x00"}, "control characters"),
])
def test_hostile_query_params_end_in_a_message_and_a_safe_default(query, words):
    at = run(query)
    clean(at)
    assert words in warnings_text(at)
    assert at.session_state["model"] == "dates"
    assert at.session_state["kind"] in ("cross", "encoder self", "decoder masked self")
    assert canvas_parts(at).get("map"), "the default view is still drawn"


def test_a_public_server_never_opens_a_path_from_a_link(monkeypatch, tmp_path):
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    at = run({"model": str(SHIPPED / "reverse")})
    clean(at)
    assert "lists no model called" in warnings_text(at)
    assert at.session_state["model"] == "dates" and not at.session_state["model_path"]


def test_a_long_input_is_left_out_of_the_link_and_saved_as_a_session():
    long_text = "Saturday, November 21, 2026 " * 60  # 1,680 characters
    at = run(state={"source": long_text})
    clean(at)
    assert "text" not in at.query_params
    captions = " ".join(c.value for c in at.caption)
    assert "a link holds at most 1,500" in captions


def test_a_saved_session_reopens_model_inputs_and_view():
    from types import SimpleNamespace

    from ui.links import session_bytes

    sel = SimpleNamespace(kind="encoder self", layer=0, head=2, stage="scaled", view="One query")
    data = session_bytes(str(SHIPPED / "reverse"), {"source": "red fox owl " * 200, "target": None,
                                                    "target_mode": "generate greedily", "max_new": 12, "gen_new": 0},
                         sel)
    doc = json.loads(data)
    assert doc["model"] == "reverse" and "/" not in json.dumps(doc["model"])
    at = run()
    at.sidebar.file_uploader(key="session_file").upload("s.json", data, "application/json")
    at.run()
    clean(at)
    assert at.session_state["model"] == "reverse"
    assert at.session_state["source"] == "red fox owl " * 200
    assert selection(at) == {"kind": "encoder self", "layer": 0, "head": 2, "stage": "scaled", "view": "One query"}


@pytest.mark.parametrize("data, words", [
    (b"\x80\x81 not utf-8", "not JSON text"),
    (b"[1, 2, 3]", "not a saved session"),
    (json.dumps({"format": "attention-inspector session", "version": 1, "model": "dates", "inputs": {},
                 "selection": {}}).encode(), "must hold exactly"),
    (json.dumps({"format": "attention-inspector session", "version": 1, "model": "dates", "inputs": {
        "source": "x", "target": None, "target_mode": None, "max_new": 1, "gen_new": 0}, "selection": {},
        "pickle": "gASV"}).encode(), "fields a saved session does not have: pickle"),
    (json.dumps({"format": "attention-inspector session", "version": 1, "model": "dates", "inputs": {
        "source": "x" * (MAX_SOURCE + 1), "target": None, "target_mode": None, "max_new": 1, "gen_new": 0},
        "selection": {}}).encode(), f"{MAX_SOURCE + 1:,} characters long"),
    (b" " * (SESSION_LIMIT + 1), f"bytes (at most {SESSION_LIMIT:,})"),
    (b"[" * 50_000 + b"]" * 50_000, "nests too deeply"),
])
def test_a_bad_session_file_is_refused_with_a_message(data, words):
    at = run()
    at.sidebar.file_uploader(key="session_file").upload("s.json", data, "application/json")
    at.run()
    clean(at)
    assert words in warnings_text(at)
    assert at.session_state["model"] == "dates"
    assert np.isfinite(len(charts(at)))


# the head grid (2) ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dates_run():
    from model import load

    return load(str(SHIPPED / "dates"), "cpu").run("Saturday, November 21, 2026", max_new_tokens=31)


@pytest.mark.parametrize("stage", ["scores", "scaled", "masked", "weights"])
def test_the_head_grid_draws_the_selected_stage_on_its_own_scale(stage, dates_run):
    import viz

    at = run(state=as_state({"model": "dates", "kind": "decoder-masked-self", "layer": "1", "head": "all",
                             "stage": stage, "view": "head-grid"}))
    clean(at)
    spec = charts(at)[0]
    heatmaps = [t for t in spec["data"] if t["type"] == "heatmap"]
    mats = viz.figure_matrices(spec)
    from model import allowed_matrix

    rec = dates_run.trace["decoder.1.self_attn"].numpy()
    expected = np.asarray(getattr(rec, stage), dtype=np.float32)[0]
    for h, m in enumerate(mats):
        finite = np.isfinite(expected[h])
        if stage in ("masked", "weights"):
            finite &= allowed_matrix(rec)[h]
        np.testing.assert_array_equal(m[finite], expected[h][finite])
        assert np.isnan(m[~finite]).all()
    if stage == "weights":
        assert {(t["colorscale"], t["zmin"], t["zmax"]) for t in heatmaps} == {("Viridis", 0.0, 1.0)}
    else:
        top = float(np.nanmax(np.abs(np.where(np.isfinite(expected), expected, np.nan))))
        assert {t["colorscale"] for t in heatmaps} == {"RdBu_r"}
        for t in heatmaps:  # one symmetric scale around 0 for every head
            assert t["zmid"] == 0 and t["zmin"] == pytest.approx(-top, rel=1e-6) and t["zmax"] == pytest.approx(top)
    assert viz.STAGE_NAMES[stage] in spec["layout"]["title"]["text"]
    assert [a["text"] for a in spec["layout"]["annotations"]] == [f"head {h}" for h in range(4)]


def test_head_grid_thumbnails_keep_square_cells_and_axes_on_the_induction_model():
    at = run(state=as_state({"model": "induction", "kind": "decoder-masked-self", "layer": "1", "head": "all",
                             "view": "head-grid"}))
    clean(at)
    layout = charts(at)[0]["layout"]
    for n in ("", "2", "3", "4"):
        assert layout[f"yaxis{n}"]["scaleanchor"] == f"x{n}"  # square cells whatever the width
        assert layout[f"xaxis{n}"]["showticklabels"]
    assert layout["yaxis"]["showticklabels"]


# "Rank all heads" (3) and the KL axis (10) ---------------------------------------------------------------------------

def test_rank_all_heads_draws_every_kind_on_one_stated_scale():
    at = run(state=as_state({"model": "dates", "view": "ablation"}))
    at.button(key="rank_heads").click().run()
    clean(at)
    strips = [c for c in charts(at) if "mean KL when ablated alone" in c["layout"]["title"]["text"]]
    assert len(strips) == 3  # decoder masked self, cross, encoder self
    table = at.dataframe[-1].value
    top = float(table["mean_kl"].max())
    for spec in strips:
        heat = spec["data"][0]
        assert heat["zmin"] == 0 and heat["zmax"] == pytest.approx(top)
        assert f"0-{top:.3g} nats" in spec["layout"]["title"]["text"]
    # the encoder's strongest head is far weaker than the strongest head overall: it no longer glows as bright
    enc = table[table["kind"] == "encoder self"]["mean_kl"].max()
    assert enc < 0.1 * top


def test_the_kl_axis_has_round_ticks_of_its_own():
    import viz

    fig = viz.position_effects(["a", "b"], np.array([0.9, 0.8]), np.array([0.89, 0.7]), np.array([0.004, 0.0081]),
                               title="t")
    y2 = fig.to_plotly_json()["layout"]["yaxis2"]
    assert y2["tickmode"] == "auto" and y2["tickformat"] == "~g"  # plotly.js syncs an overlaying axis by default


# the sidebar says what is open (4) -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def packaged_bert(tmp_path_factory):
    """A Hugging Face directory packaged the way many are: .../MiniLM-demo/model/."""
    pytest.importorskip("transformers")
    from tests.hf_models import build

    return build("bert", tmp_path_factory.mktemp("hf") / "MiniLM-demo" / "model")


def sidebar_text(at) -> str:
    return unescaped(" ".join(c.value for c in at.sidebar.caption))


def test_a_typed_directory_is_what_the_model_box_shows(packaged_bert):
    at = run(state={"model_path": str(packaged_bert)})
    clean(at)
    box = at.sidebar.selectbox(key="model")
    assert box.value == "↳ typed directory"
    assert box.format_func(box.value) == "MiniLM-demo/model (typed)"
    assert "dates" not in box.format_func(box.value)
    assert sidebar_text(at).startswith("MiniLM-demo/model: bert")
    story = unescaped(" ".join(m.value for m in at.markdown))
    assert "MiniLM-demo/model" in story and "**model**" not in story
    # picking a listed model again clears the box and opens it
    box.set_value("reverse").run()
    clean(at)
    assert at.session_state["model_path"] == "" and sidebar_text(at).startswith("reverse:")


def test_config_name_or_path_names_a_generic_directory(packaged_bert, tmp_path):
    import shutil

    from ui.models import model_name

    copy = tmp_path / "model"
    shutil.copytree(packaged_bert, copy)
    config = json.loads((copy / "config.json").read_text())
    config["_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"
    (copy / "config.json").write_text(json.dumps(config))
    assert model_name(str(copy)) == "sentence-transformers/all-MiniLM-L6-v2"
    config["_name_or_path"] = "/home/someone/exports/all-MiniLM-L6-v2/model"
    (copy / "config.json").write_text(json.dumps(config))
    assert model_name(str(copy)) == "all-MiniLM-L6-v2"
    assert model_name(str(SHIPPED / "dates")) == "dates"
    assert model_name(str(SHIPPED / "dates" / "snapshots" / "step_00250")) == "dates/step_00250"


# the Training view (5) and hostile meta.json figures (issue 23: 3, 6) ------------------------------------------------

def test_similarity_to_the_final_model_is_one_for_itself_and_matches_a_direct_computation():
    from scipy.spatial.distance import jensenshannon

    from model.analysis import uniform_weights
    from model.analysis.compare import similarity_to_reference

    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(5), size=(2, 4))  # (H, Tq, Tk)
    other = rng.dirichlet(np.ones(5), size=(2, 4))
    assert np.array_equal(similarity_to_reference(ref, ref), np.ones(2))  # exactly 1, not about 1
    direct = 1 - np.array([np.mean([jensenshannon(other[h, i], ref[h, i], base=2) for i in range(4)])
                           for h in range(2)])
    np.testing.assert_allclose(similarity_to_reference(other, ref), direct, atol=1e-12)
    causal = np.tril(np.ones((4, 5), bool), k=1)[None].repeat(2, 0)
    peaked = np.where(causal, 1e-9, 0.0)
    peaked[:, np.arange(4), np.arange(4)] = 1.0
    assert similarity_to_reference(uniform_weights(causal), peaked / peaked.sum(-1, keepdims=True), causal).max() < 1


def test_training_view_scores_similarity_to_the_final_model_and_names_every_series():
    at = run(state=as_state({"model": "dates", "view": "training", "kind": "cross", "layer": "1", "head": "3"}))
    clean(at)
    assert at.radio(key="train_score").value == "similarity"
    specs = {c["layout"]["title"]["text"]: c for c in charts(at)}
    scores = next(c for t, c in specs.items() if t.startswith("similarity to the final model"))
    star = next(t for t in scores["data"] if t["name"].startswith("final model"))
    assert star["y"] == [1.0]
    heads = [plotly_values(t["y"]) for t in scores["data"] if t["name"].startswith("head")]
    assert len(heads) == 4 and all(((0 <= v) & (v <= 1)).all() for v in heads)
    assert all(v[-1] > 0.95 for v in heads)  # the last snapshot (float16) is nearly the final model
    assert "Jensen-Shannon" in " ".join(c.value for c in at.caption)
    recorded = next(c for t, c in specs.items() if t.startswith("recorded at each snapshot"))
    assert all(t["showlegend"] and t["name"] for t in recorded["data"])
    assert recorded["data"][0]["name"] == "valid exact match"


def test_training_view_keeps_losses_and_scores_on_axes_of_their_own():
    at = run(state=as_state({"model": "induction", "view": "training", "kind": "decoder-masked-self", "layer": "1",
                             "head": "1"}))
    clean(at)
    recorded = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("recorded at each snapshot"))
    axis = {t["name"]: t["yaxis"] for t in recorded["data"]}
    assert {axis[n] for n in ("train loss", "valid loss", "loss on repetitions")} == {"y"}
    assert {axis[n] for n in ("best induction score", "best previous-token score")} == {"y2"}
    assert recorded["layout"]["yaxis"]["title"]["text"] == "loss (nats)"
    assert recorded["layout"]["yaxis2"]["title"]["text"] == "score (0..1)"


@pytest.fixture()
def hostile_induction(tmp_path):
    """The induction checkpoint with two snapshots, its meta.json figures replaced by text, links and images."""
    import shutil

    base = tmp_path / "induction"
    shutil.copytree(SHIPPED / "induction", base, ignore=shutil.ignore_patterns("snapshots"))
    for step in ("step_00000", "step_03000"):
        shutil.copytree(SHIPPED / "induction" / "snapshots" / step, base / "snapshots" / step)
        meta = json.loads((base / "snapshots" / step / "meta.json").read_text())
        meta["train_loss"] = "![tracker](http://evil.example/pixel.png)"
        meta["induction"]["loss_repeated"] = "[click me](http://evil.example)"
        (base / "snapshots" / step / "meta.json").write_text(json.dumps(meta))
    meta = json.loads((base / "meta.json").read_text())
    meta["eval"]["induction"] = "![x](http://evil.example/x.png)"
    meta["eval"]["chance"] = {"induction": "[link](http://evil.example)", "prev_token": "<img src=x onerror=alert(1)>"}
    meta["eval"]["loss_repeated"] = "**bold**"
    meta["eval"]["best_induction_last_layer"] = "9e999"
    (base / "meta.json").write_text(json.dumps(meta))
    return base


def test_hostile_meta_figures_are_never_formatted_or_rendered(hostile_induction):
    at = run(state={**as_state({"view": "training", "kind": "decoder-masked-self", "layer": "1"}),
             "model_path": str(hostile_induction)})
    clean(at)  # no "Unknown format code 'f'"
    shown = [m.value for m in list(at.markdown) + list(at.caption)]
    for text in shown:
        assert not re.search(r"(?<!\\)\]\((?!\s)", text), f"a live link or image: {text[:200]}"
        assert "<img" not in text
    everything = " ".join(shown)
    assert "does not hold its evaluation figures as numbers" in everything
    assert "(not a number)" in everything and "tracker" in unescaped(everything)  # shown as text, said to be text
    recorded = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("recorded at each snapshot"))
    assert "train loss" not in {t["name"] for t in recorded["data"]}  # text is not plotted as a number


# rollout (6) -------------------------------------------------------------------------------------------------------

def test_rollout_scales_colours_to_the_data_and_opens_on_an_informative_token():
    import viz
    from model.analysis.rollout import most_focused_row

    at = run(state=as_state({"model": "dates", "view": "rollout"}))
    clean(at)
    matrix, strip = charts(at)[:2]
    S = viz.figure_matrices(matrix)[0]
    top = float(np.nanmax(S))
    assert top < 0.3  # the dates model's shares stay low: a 0..1 scale washed them out
    heat = matrix["data"][0]
    assert heat["zmin"] == 0 and heat["zmax"] == pytest.approx(top, rel=1e-6)
    assert f"colour scale 0 to {top:.3g}" in matrix["layout"]["title"]["text"]
    token = at.selectbox(key="ro_token").value
    labels = [at.selectbox(key="ro_token").format_func(i) for i in range(S.shape[0])]
    assert "[EOS]" not in labels[token] and "[BOS]" not in labels[token].split("→")[0]
    assert token == most_focused_row(S, [True] + [False] * (S.shape[0] - 1))
    bars = plotly_values(strip["data"][0]["y"])
    assert strip["layout"]["yaxis"]["range"][1] == pytest.approx(1.1 * bars.max(), rel=1e-5)


def test_most_focused_row_skips_special_and_flat_rows():
    from model.analysis.rollout import most_focused_row

    m = np.array([[0.9, 0.1, 0.0], [0.4, 0.3, 0.3], [0.2, 0.7, 0.1], [0.34, 0.33, 0.33]])
    assert most_focused_row(m) == 0
    assert most_focused_row(m, [True, False, False, False]) == 2
    assert most_focused_row(np.zeros((2, 3))) == 0


# compare (7; issue 23: 3) ------------------------------------------------------------------------------------------

def test_the_difference_map_labels_cells_with_both_runs_positions():
    import viz

    at = run(state=as_state({"model": "dates", "view": "compare", "kind": "encoder-self", "layer": "1", "head": "0"}))
    at.text_area(key="cmp_source").input("Sunday, November 22, 2026").run()
    clean(at)
    diff = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("A − B"))
    parts = canvas_parts(at)  # A and B on canvases, the difference a Plotly map of matched positions
    assert parts["cmp_A"]["title"].startswith("A (this)") and parts["cmp_B"]["title"].startswith("B (input B)")
    ticks = diff["data"][0]["x"]
    a_ticks, b_ticks = col_labels(parts["cmp_A"]), col_labels(parts["cmp_B"])
    assert ticks[0].startswith("A1 / B1")  # "Saturday" / "Sunday" differ: the first matched token is ","
    for label in ticks:  # every label names a cell of both maps, and the token there
        where, token = label.split("·", 1)
        ia, ib = (int(p.strip()[1:]) for p in where.split("/"))
        assert a_ticks[ia] == f"{ia}·{token}" and b_ticks[ib] == f"{ib}·{token}"
    assert len(viz.figure_matrices(diff)[0]) == len(ticks)


def test_comparing_a_t5_model_with_the_dates_checkpoint_gives_maps_or_a_message(tmp_path):
    pytest.importorskip("transformers")
    from tests.hf_models import build

    t5 = build("t5", tmp_path / "t5")
    at = run(state={**as_state({"view": "compare", "kind": "cross", "layer": "1", "head": "0"}),
             "model_path": str(t5), "source": "the cat sat on the mat"})
    at.radio(key="cmp_mode").set_value("same input, another checkpoint").run()
    at.selectbox(key="cmp_model").set_value("dates").run()
    clean(at)  # never "the given decoder ids must start with this model's decoder start"
    text = warnings_text(at) + " " + unescaped(" ".join(m.value for m in list(at.info) + list(at.caption)))
    assert "decoder ids" not in text
    assert {"cmp_A", "cmp_B"} <= set(canvas_parts(at)), "both maps of the comparison"
    assert "B decodes its own output" in text


# statistics (8) ----------------------------------------------------------------------------------------------------

def test_statistics_columns_have_human_names_with_definitions_in_their_help():
    from model.core.rowstats import HUMAN_NAMES, STAT_DEFINITIONS

    at = run(state=as_state({"model": "dates", "view": "statistics"}))
    clean(at)
    frame = at.dataframe[0]
    config = json.loads(frame.proto.columns)
    shown = [c for c in frame.value.columns if c in STAT_DEFINITIONS]
    assert shown
    for column in shown:
        assert config[column]["label"] == HUMAN_NAMES[column]
        assert config[column]["help"] == STAT_DEFINITIONS[column]
    assert "entropy_norm" not in charts(at)[0]["layout"]["title"]["text"]
    assert at.selectbox(key="stat").format_func("entropy_norm") == "entropy, normalised"


@pytest.mark.parametrize("model, text, expected", [
    ("induction", None, "induction"),  # its example repeats: induction scores have values
    ("induction", "cat dog owl fox bee", "prev_token"),  # nothing repeats: previous-token is the decoder-only one
    ("dates", None, "entropy_norm"),
])
def test_the_default_statistic_fits_the_model_and_comes_first(model, text, expected):
    query = {"model": model, "view": "statistics"}
    if text:
        query["text"] = text
    at = run(state=as_state(query))
    clean(at)
    assert at.selectbox(key="stat").value == expected
    columns = list(at.dataframe[0].value.columns)
    assert columns[:5] == ["attention", "kind", "layer", "head", expected]


# ablation without an output head (9) ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bare_bert(tmp_path_factory):
    """A BertModel (no prediction head), as a packaged MiniLM is."""
    pytest.importorskip("transformers")
    import torch
    import transformers as tf

    from tests.hf_models import wordpiece_tokenizer

    path = tmp_path_factory.mktemp("bare") / "minilm"
    path.mkdir()
    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    cfg = tf.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=64, vocab_size=tok.get_vocab_size() + 3)
    tf.BertModel(cfg).eval().save_pretrained(path, safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    return path


def test_hidden_effect_of_matches_a_direct_computation():
    import torch

    from model.analysis.ablation import hidden_effect_of

    g = torch.Generator().manual_seed(0)
    before, after = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    eff = hidden_effect_of(before, after)
    b, a = before.double().numpy(), after.double().numpy()
    np.testing.assert_allclose(eff.cosine, (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))
    np.testing.assert_allclose(eff.change, np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1))
    same = hidden_effect_of(before, before.clone())
    np.testing.assert_allclose(same.cosine, 1.0)
    assert (same.change == 0).all()


def test_rank_heads_without_an_output_head_uses_the_final_hidden_states(bare_bert):
    from model import load
    from model.analysis import rank_heads
    from model.analysis.ablation import hidden_effect_of
    from model.call import intervened_outputs

    pipe = load(str(bare_bert), "cpu")
    assert not pipe.info.has_head
    result = pipe.run("the cat sat on the mat")
    table, _ = rank_heads(pipe, result)
    assert len(table) == 2 * 4 and table["mean_change"].is_monotonic_decreasing
    top = table.iloc[0]
    after = intervened_outputs(pipe, result, [{"ablations": {top["attention"]: {int(top["head"]): "zero"}}}])[0]
    assert top["mean_change"] == pytest.approx(hidden_effect_of(result.final_hidden, after).change.mean())


def test_ablation_view_measures_a_model_without_an_output_head_on_its_hidden_states(bare_bert):
    at = run(state={**as_state({"view": "ablation", "kind": "encoder-self", "layer": "1", "head": "0"}),
             "model_path": str(bare_bert), "source": "the cat sat on the mat"})
    clean(at)
    assert "has no output head" in " ".join(c.value for c in at.caption)
    at.multiselect(key="abl_heads").set_value(["encoder.1.self_attn|0", "encoder.1.self_attn|1"]).run()
    clean(at)
    effects = next(c for c in charts(at) if "final hidden state" in c["layout"]["title"]["text"])
    assert {t["name"] for t in effects["data"]} == {"|Δh| / |h| (relative change)", "cosine(h before, h after)"}
    table = at.dataframe[0].value
    assert list(table.columns)[:4] == ["position", "token", "relative change", "cosine"]
    assert (table["relative change"] > 0).any() and (table["cosine"] <= 1 + 1e-9).all()
    at.button(key="rank_heads").click().run()
    clean(at)
    assert any("mean relative change when ablated alone" in c["layout"]["title"]["text"] for c in charts(at))


# smaller findings (10) -----------------------------------------------------------------------------------------------

def test_the_one_query_table_shows_every_row_with_four_decimals():
    at = run(state=as_state({"model": "dates", "view": "one-query", "kind": "cross", "layer": "1", "head": "3"}))
    clean(at)
    frame = at.dataframe[0]
    assert len(frame.value) == 11  # one row per key (the browser test checks that all 11 are in view)
    config = json.loads(frame.proto.columns)
    floats = [c for c in frame.value.columns if frame.value[c].dtype.kind == "f"]
    assert floats and all(config[c]["type_config"]["format"] == "%.4f" for c in floats)


def test_the_one_query_table_height_fits_every_row():
    from ui.views.common import ROW_PX, table_height

    assert table_height(11) >= ROW_PX * 12  # the header and all 11 rows (the default height showed 10)
    assert table_height(500) == table_height(30)  # long tables scroll


def test_the_playground_says_exactly_when_the_sums_agree_to_the_bit():
    at = AppTest.from_file(str(ROOT / "app_pages" / "playground.py"), default_timeout=60).run()
    clean(at)
    text = " ".join(c.value for c in at.caption)
    assert "up to 0.0e+00" not in text
    assert "matches the row from attention() exactly" in text or "(float rounding)" in text


def test_the_reverse_story_names_the_source_word_the_model_reads():
    from model import load
    from model.training.tasks import TASKS

    story = TASKS["reverse"].story
    res = load(str(SHIPPED / "reverse"), "cpu").run(story.example)
    w = res.trace[story.attention].numpy().weights[0, story.head]
    n = len(story.example.split())
    assert res.source.tokens[:n] == story.example.split()
    assert [int(w[i].argmax()) for i in range(n)] == [n - 1 - i for i in range(n)]  # row i (writes word i) reads n-1-i
    assert "n − 1 − i" in story.text and "n − i:" not in story.text
