"""Trained models in the Hugging Face layout, in the app: the models directory, the kinds each model has, every
view for each kind, and what the sidebar says about the model."""

import json

import numpy as np
import pytest
from conftest import clear_app_caches
from streamlit.testing.v1 import AppTest

from model import RecordName, load
from tests.hf_models import build
from tests.test_app import APP, assert_clean, charts, main_matrix
from ui.views.registry import NAMES as VIEWS

pytest.importorskip("transformers")

FAMILIES = {"gpt2": "decoder-only", "bert": "encoder-only", "t5": "encoder-decoder", "llama": "decoder-only"}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for fam in FAMILIES:
        build(fam, root / fam)
    return root


@pytest.fixture(autouse=True)
def env(monkeypatch, models_dir, tmp_path):
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.setenv("INSPECTOR_MODELS", str(models_dir))
    clear_app_caches()
    yield
    clear_app_caches()


def open_model(family: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["model"] = f"{family} (models directory)"
    at.session_state["source"] = "the cat sat on the mat"
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def test_the_models_directory_is_listed():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert_clean(at)
    assert at.selectbox(key="model").options == [f"{f} (models directory)" for f in sorted(FAMILIES)]


@pytest.mark.parametrize("family, kinds", [("gpt2", ["decoder masked self"]), ("bert", ["encoder self"]),
                                           ("t5", ["cross", "encoder self", "decoder masked self"])])
def test_each_model_offers_the_kinds_it_has(models_dir, family, kinds):
    at = open_model(family)
    assert_clean(at)
    assert at.radio(key="kind").options == kinds
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert family in caption and "float32" in caption and "running on" in caption
    views = at.segmented_control(key="view").options
    assert ("Decoding" in views) == (family != "bert") and "Training" not in views


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_map_is_the_models_own_attention(models_dir, family):
    at = open_model(family)
    assert_clean(at)
    pipe = load(models_dir / family, "cpu")
    kind = at.radio(key="kind").value
    layer, head = at.selectbox(key="layer").value, at.selectbox(key="head").value
    res = pipe.run("the cat sat on the mat", max_new_tokens=None) if pipe.arch != "encoder-decoder" else \
        pipe.run("the cat sat on the mat", max_new_tokens=at.session_state["max_new"])
    name = str(RecordName.of_kind(kind, layer))
    np.testing.assert_array_equal(main_matrix(at), res.trace[name].weights[0, head].numpy())


@pytest.mark.parametrize("family", ["gpt2", "bert", "t5"])
@pytest.mark.parametrize("view", VIEWS)
def test_every_view_works_for_every_kind(models_dir, family, view):
    at = open_model(family)
    if view not in at.segmented_control(key="view").options:
        pytest.skip(f"{view} does not apply to {family}")
    at.session_state["view"] = view
    at.run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]


def test_special_tokens_and_byte_level_labels_on_the_axes(models_dir):
    at = open_model("gpt2", source="hello world\nagain")
    labels = charts(at)[0]["data"][0]["x"]
    assert "1·␣world" in labels and any("↵" in x for x in labels)
    at = open_model("bert", source="the cat sat")
    labels = charts(at)[0]["data"][0]["x"]
    assert labels[0] == "0·[CLS]" and labels[-1].endswith("[SEP]")


def test_decoder_only_generation_from_the_sidebar(models_dir):
    at = open_model("gpt2", gen_new=4)
    assert_clean(at)
    header = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "generated continuation" in header
    pipe = load(models_dir / "gpt2", "cpu")
    res = pipe.run("the cat sat on the mat", max_new_tokens=4)
    assert main_matrix(at).shape == (len(res.target.ids), len(res.target.ids))


def test_the_step_panels_say_what_a_family_adds(models_dir):
    at = open_model("llama", view="Step by step")
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert "after the rotary position embedding" in captions and "grouped-query" in captions


def test_a_directory_with_only_pickled_weights_is_refused_in_the_app(models_dir, tmp_path):
    import shutil

    bad = tmp_path / "pickled"
    shutil.copytree(models_dir / "gpt2", bad)
    (bad / "model.safetensors").rename(bad / "pytorch_model.bin")
    at = open_model("gpt2")
    at.text_input(key="model_path").input(str(bad)).run()
    assert_clean(at)
    assert "pytorch" in at.error[0].value and "safetensors" in at.error[0].value
    assert json.loads(at.get("plotly_chart")[0].proto.spec)  # the previous model stays on screen


def test_a_half_precision_model_runs_in_its_dtype_and_says_so(models_dir, tmp_path, monkeypatch):
    import shutil

    import torch

    src = models_dir / "llama"
    half = tmp_path / "models" / "llama-bf16"
    type(load(src, "cpu").model).from_pretrained(src).to(torch.bfloat16).save_pretrained(half)
    shutil.copy(src / "tokenizer.json", half / "tokenizer.json")
    monkeypatch.setenv("INSPECTOR_MODELS", str(half.parent))
    clear_app_caches()
    at = open_model("llama-bf16")
    assert_clean(at)
    assert "bfloat16" in " ".join(c.value for c in at.sidebar.caption)
    assert any("stored in bfloat16" in i.value for i in at.info)
    res = load(half, "cpu").run("the cat sat on the mat")
    assert res.trace["decoder.1.self_attn"].weights.dtype == torch.bfloat16
    layer, head = at.selectbox(key="layer").value, at.selectbox(key="head").value
    np.testing.assert_array_equal(main_matrix(at),
                                  res.trace[f"decoder.{layer}.self_attn"].weights[0, head].float().numpy())
