"""The view registry (ui/views/registry.py): one record per view; the picker, the links and the messages are built
from it, old links keep opening their view, and no other module spells a view's name."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import clear_app_caches
from streamlit.testing.v1 import AppTest

from ui.inspector import SECOND_ROW, picker_style
from ui.links import link_params
from ui.views.registry import GROUPS, MAP, NAMES, VIEWS, find, named, offered

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SHIPPED = ROOT / "checkpoints"

OLD_SLUGS = {  # the ?view= values links carried before the registry: links in the wild hold them, never to break
    "attention-map": "Attention map", "head-grid": "Head grid", "model-overview": "Model overview",
    "head-view": "Head view", "step-by-step": "Step by step", "one-query": "One query", "decoding": "Decoding",
    "statistics": "Statistics", "rollout": "Rollout", "needle": "Needle", "ablation": "Ablation",
    "knockout": "Knockout", "logit-lens": "Logit lens", "patching": "Patching", "compare": "Compare",
    "training": "Training", "export": "Export",
}


@pytest.fixture
def shipped(monkeypatch):
    """Shipped checkpoints, no models directory, local use, empty caches."""
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    for name in ("INSPECTOR_MODELS", "INSPECTOR_PUBLIC", "INSPECTOR_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    clear_app_caches()
    yield
    clear_app_caches()


def test_every_view_has_a_unique_name_slug_and_function():
    assert len(VIEWS) == 17
    for field in ("name", "slug", "draw"):
        values = [getattr(v, field) for v in VIEWS]
        assert len(set(values)) == len(values), field
    assert NAMES == tuple(v.name for v in VIEWS)
    for v in VIEWS:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", v.slug), v.slug  # what a link writes, unchanged by find()
        assert find(v.slug) is v and find(v.name) is v and named(v.name) is v
    with pytest.raises(KeyError):
        named("attention-map")  # a selection holds the name, never the slug
    assert find("nonsense") is None


def test_groups_are_contiguous_and_in_the_pickers_order():
    groups = [v.group for v in VIEWS]
    assert set(groups) == set(GROUPS) and SECOND_ROW in GROUPS
    order = [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g]
    assert order == list(GROUPS), "each group's views sit together, groups in GROUPS' order"
    assert VIEWS[0] is MAP


@pytest.mark.parametrize("old, name", OLD_SLUGS.items())
def test_every_old_slug_and_saved_name_finds_its_view(old, name):
    assert find(old).name == name
    assert find(old.upper().replace("-", "_")).name == name  # links are read case- and separator-blind
    assert find(name).name == name  # a saved session holds the name
    assert named(name).slug == old  # and a link written today says the same as before


def test_what_a_model_offers():
    assert [v.name for v in offered("encoder-decoder", True)] == list(NAMES)
    assert "Decoding" not in [v.name for v in offered("encoder-only", True)]
    assert "Decoding" in [v.name for v in offered("decoder-only", False)]
    assert "Training" not in [v.name for v in offered("encoder-decoder", False)]


def test_a_link_says_the_views_slug(monkeypatch, shipped):
    sel = SimpleNamespace(kind="decoder masked self", layer=1, head=-1, stage="weights", view="Logit lens")
    params = link_params(str(SHIPPED / "induction"), "a b a b", sel)
    assert params["view"] == "logit-lens" and params["kind"] == "decoder-masked-self" and params["head"] == "all"


def test_the_picker_names_each_group_once_above_its_first_view():
    views = offered("encoder-only", False)  # no Decoding, no Training: the group starts move
    css = picker_style(views)
    for group in GROUPS:
        first = next(i for i, v in enumerate(views, start=1) if v.group == group)
        assert css.count(f'content: "{group}" / ""') == 1
        assert f'button:nth-of-type({first})::before {{ content: "{group}"' in css
    second = next(i for i, v in enumerate(views, start=1) if v.group == SECOND_ROW)
    assert f"nth-of-type({second}) {{ order: 2; }}" in css and f"nth-of-type({second - 1}) {{ order: 2; }}" not in css


@pytest.mark.parametrize("old, name", OLD_SLUGS.items())
def test_every_old_link_opens_its_view(old, name, shipped):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"model": "dates", "view": old})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["view"] == name
    assert not [w.value for w in at.warning if "could not be followed" in w.value]
    assert at.segmented_control(key="view").value == name
    assert at.query_params["view"] == old  # the link written back is the one that was opened


def spelled(path: Path) -> list[str]:
    """The string constants of a module (f-strings' literal parts included) that are a view's name or a link slug
    (one-word slugs such as "rollout" are ordinary words elsewhere)."""
    words = set(NAMES) | {v.slug for v in VIEWS if "-" in v.slug}
    return [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(ast.parse(path.read_text("utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words]


def test_no_view_name_or_link_slug_is_spelled_outside_the_registry():
    registry = ROOT / "ui" / "views" / "registry.py"
    files = [p for folder in ("ui", "app_pages", "viz") for p in sorted((ROOT / folder).rglob("*.py"))]
    found = [hit for p in files + [ROOT / "app.py"] if p != registry for hit in spelled(p)]
    assert not found, "name views through ui/views/registry.py:\n" + "\n".join(found)


def test_the_check_finds_a_spelled_view(tmp_path):
    """Negative control: a name in a call, a name in an f-string and a slug as a default are all found."""
    module = tmp_path / "m.py"
    module.write_text('state.set_value("view", "Attention map")\nx = f"{a}{\'Head grid\'}"\n'
                      'def f(v="logit-lens"): pass\n', encoding="utf-8")
    hits = sorted(hit.split(": ", 1)[1] for hit in spelled(module))
    assert hits == ["'Attention map'", "'Head grid'", "'logit-lens'"]
