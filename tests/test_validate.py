"""One validation at the boundary (issue 32, items 3, 4 and 6): every value the browser sends (the canvas's component
state, chart clicks, links, session files, uploads) is clamped or refused with a message, never an exception; every
text is valid Unicode or refused; one character limit for the box, the file, the link and the session. Ends with a
fuzz test: 1,000 random and hostile component-state values through the app (AppTest), none an exception."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import pytest
from conftest import clear_app_caches
from hypothesis import given, settings
from hypothesis import strategies as hs
from streamlit.testing.v1 import AppTest

from ui import validate
from viz.atlas import clicked_point
from viz.grids import clicked_cell

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SHIPPED = ROOT / "checkpoints"
TQ = 300  # tokens of the canvas tests' input: over ui.views.canvas.CANVAS_ABOVE, so the map is the canvas


# the schemas, alone -------------------------------------------------------------------------------------------------

def test_numbers_are_clamped_and_anything_else_refused():
    assert validate.number(5, 0, 9) == 5 and validate.number(-1e19, 0, 9) == 0 and validate.number(1e19, 0, 9) == 9
    assert validate.number(10**400, 0, 9) == 9 and validate.number(3.7, 0, 9) == 3
    for bad in (None, True, "1", float("inf"), float("nan"), [1], {"a": 1}):
        assert validate.number(bad, 0, 9) is None
    assert validate.number(1, 0, -1) is None  # an empty range


def test_the_audits_forged_canvas_states_are_clamped_or_refused():
    """Forged from the page's JavaScript in Chromium (issue 32, item 3)."""
    rect = validate.selection({"kind": "rect", "r0": -1e19, "r1": 1e19, "c0": 0, "c1": 1}, 100, 50)
    assert rect == {"kind": "rect", "r0": 0, "r1": 100, "c0": 0, "c1": 1}
    assert validate.canvas_view({"r0": 1}, 100, 50) is None  # setState('view', {r0: 1})
    assert validate.canvas_view({"r0": "a", "r1": float("inf"), "c0": 0, "c1": 3}, 100, 50) is None
    assert validate.canvas_view({"r0": 90, "r1": 5, "c0": -3, "c1": 400}, 100, 50) == {"r0": 90, "r1": 91, "c0": 0,
                                                                                      "c1": 50}
    state = validate.canvas_state([1, 2], 100, 50, 4)  # a list instead of a dict
    assert set(state.values()) == {None}
    assert validate.canvas_state({"head": 99, "query": -4}, 100, 50, 4)["head"] == 3


class Counting(list):
    """A list that counts the items anyone iterates over."""

    seen = 0

    def __iter__(self):
        for item in super().__iter__():
            Counting.seen += 1
            yield item


def test_a_million_selected_cells_are_cut_before_any_is_read():
    Counting.seen = 0
    cells = Counting([[i % 100, i % 50] for i in range(1_000_000)])
    picked = validate.selection({"kind": "cells", "cells": cells}, 100, 50)
    assert Counting.seen == validate.MAX_SELECTED_CELLS
    assert picked["kind"] == "cells" and 0 < len(picked["cells"]) <= validate.MAX_SELECTED_CELLS


JSON = hs.recursive(hs.none() | hs.booleans() | hs.integers() | hs.floats() | hs.text(max_size=8),
                    lambda children: hs.lists(children, max_size=4) | hs.dictionaries(hs.text(max_size=6), children,
                                                                                      max_size=5), max_leaves=20)
STATE_KEYS = hs.sampled_from(["view", "head", "query", "selection", "detail_request", "choice", "kind", "cells", "r0",
                              "r1", "c0", "c1", "row", "col", "layer", "stage", "step"])
STATES = hs.one_of(JSON, hs.dictionaries(STATE_KEYS, hs.one_of(JSON, hs.dictionaries(STATE_KEYS, JSON, max_size=6)),
                                         max_size=6))


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(STATES, hs.integers(0, 5000), hs.integers(0, 5000), hs.integers(0, 64))
def test_any_json_makes_a_checked_canvas_state(value, tq, tk, heads):
    state = validate.canvas_state(value, tq, tk, heads)
    assert set(state) == {"view", "head", "query", "selection", "detail_request", "choice"}
    choice = state["choice"]
    if choice is not None:  # a map picked on the page: short names, whole numbers or short strings
        assert 0 < len(choice) <= validate.MAX_CHOICE_GROUPS
        assert all(isinstance(k, str) and (isinstance(v, str) or type(v) is int) for k, v in choice.items())
    view = state["view"]
    if view is not None:
        assert 0 <= view["r0"] < view["r1"] <= tq and 0 <= view["c0"] < view["c1"] <= tk
    sel = state["selection"]
    if sel is not None and sel["kind"] == "cells":
        assert all(0 <= r < tq and 0 <= c < tk for r, c in sel["cells"])
    for key in ("head", "query"):
        assert state[key] is None or (isinstance(state[key], int) and state[key] >= 0)
    json.dumps(state, allow_nan=False)  # what the wrapper echoes to the page is plain JSON


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(STATES)
def test_any_chart_click_is_a_cell_or_none(value):
    cell = clicked_cell(value, [(0, 0), (0, 1), (1, 0)])
    assert cell is None or cell in {(0, 0), (0, 1), (1, 0)}
    point = clicked_point(value)
    assert point is None or (isinstance(point[0], int) and point[2] in ("q", "k"))


def test_a_forged_chart_click_with_text_customdata_is_none():
    forged = {"selection": {"points": [{"customdata": ["DROP", "x", float("inf")]}]}}
    assert clicked_point(forged) is None and clicked_cell(forged, [(0, 0)]) is None
    assert clicked_point({"selection": {"points": [{"customdata": [7, 3, 1]}]}}) == (7, 3, "k")


def test_a_text_with_a_lone_surrogate_or_over_the_limit_is_refused():
    with pytest.raises(validate.ValidationError, match="lone surrogate, U\\+D800, at character 9"):
        validate.text("Saturday \ud800 November", "source text", 100)
    with pytest.raises(validate.ValidationError, match="101 characters long"):
        validate.text("x" * 101, "text", 100)
    assert validate.text("tab\tand\nnewline 😀", "text", 100) == "tab\tand\nnewline 😀"
    assert validate.text_problem("\x1b[31m", "text", 100, controls=True) is None
    assert "control characters" in validate.text_problem("\x1b[31m", "text", 100)


# through the app ----------------------------------------------------------------------------------------------------

@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    for name in ("INSPECTOR_MODELS", "INSPECTOR_PUBLIC", "INSPECTOR_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    clear_app_caches()
    yield
    clear_app_caches()


def warnings(at) -> str:
    return " ".join(w.value for w in list(at.warning) + list(at.error)).replace("\\", "")


def session_file(source: str) -> bytes:
    doc = {"format": "attention-inspector session", "version": 1, "model": "dates",
           "inputs": {"source": source, "target": None, "target_mode": None, "max_new": 0, "gen_new": 0},
           "selection": {}}
    return json.dumps(doc).encode()  # json escapes a lone surrogate as \ud800, as a hand-made file would


def test_a_session_with_a_lone_surrogate_is_refused_and_the_page_keeps_working(shipped):
    at = AppTest.from_file(APP, default_timeout=120).run()
    before = at.session_state["source"]
    at.sidebar.file_uploader(key="session_file").upload("s.json", session_file("Saturday \ud800 November"),
                                                        "application/json")
    at.run()
    assert not at.exception and "lone surrogate" in warnings(at)
    assert at.session_state["source"] == before
    at.run()  # and again: no lasting error
    assert not at.exception and not at.error


def test_a_lone_surrogate_anywhere_in_a_session_is_a_message(shipped):
    doc = json.loads(session_file("fine"))
    doc["selection"] = {"view": "Head \ud800 grid"}
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.file_uploader(key="session_file").upload("s.json", json.dumps(doc).encode(), "application/json")
    at.run()
    assert not at.exception and "lone surrogate" in warnings(at)


def test_a_session_text_longer_than_the_box_is_refused(shipped):
    from ui.sidebar import source_chars

    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.file_uploader(key="session_file").upload("s.json", session_file("x" * 300_000), "application/json")
    at.run()
    assert not at.exception
    assert f"300,000 characters long (at most {source_chars():,} here)" in warnings(at)
    assert at.session_state["source"] != "x" * 300_000


def test_one_character_limit_for_the_box_the_file_the_link_and_the_session(shipped):
    """What the first run traces is what the box holds on every rerun after it (issue 32, item 6)."""
    from ui.links import session_limit
    from ui.sidebar import MAX_TARGET_CHARS, source_chars

    limit = source_chars()
    at = AppTest.from_file(APP, default_timeout=300).run()
    text = "21 November 2026 " * (limit // 17 + 10)  # longer than the box
    at.sidebar.file_uploader(key="source_file").upload("long.txt", text.encode(), "text/plain")
    at.run()
    assert not at.exception and "first 263,144 are the text" in warnings(at).replace("\u202f", "")
    assert at.session_state["source"] == text[:limit]
    at.run()
    assert at.session_state["source"] == text[:limit] and at.text_area(key="source").value == text[:limit]
    assert session_limit(limit, MAX_TARGET_CHARS) >= 4 * limit  # a session holding the longest box text opens
    link = AppTest.from_file(APP, default_timeout=120)
    link.query_params["text"] = "x" * (limit + 1)
    link.run()
    assert f"{limit + 1:,} characters long (at most {limit:,} here)" in warnings(link)


def test_error_details_are_off_on_a_public_server(monkeypatch, tmp_path):
    from streamlit import config

    before = config.get_option("client.showErrorDetails")
    monkeypatch.setenv("INSPECTOR_PUBLIC", "1")
    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    try:
        from ui.boot import public_config

        assert public_config() and config.get_option("client.showErrorDetails") == "none"
        config.set_option("client.showErrorDetails", "full")
        clear_app_caches()
        at = AppTest.from_file(APP, default_timeout=120).run()  # a page run sets it too (once per process)
        assert not at.exception and config.get_option("client.showErrorDetails") == "none"
    finally:
        config.set_option("client.showErrorDetails", before)
        clear_app_caches()
    monkeypatch.delenv("INSPECTOR_PUBLIC")
    from ui.boot import public_config

    assert not public_config()


# the fuzz test: 1,000 component-state values through the app ---------------------------------------------------------

HOSTILE = [None, True, False, -1, 0, 1, 7, 2**31, -2**63, 10**400, 1e19, -1e19, math.inf, -math.inf, math.nan,
           0.5, -0.0, "1", "", "x" * 300, "<script>", "\ud800", [], {}, [1], [[1, 2]], {"a": 1}, [None] * 3]
KINDS = ["cells", "row", "column", "rect", "circle", None, 3, ["rect"]]


def hostile_value(rng: random.Random, tq: int, heads: int):
    """A number the page might send: in range, at the edges, or hostile."""
    roll = rng.random()
    if roll < 0.4:
        return rng.randrange(-2, tq + 3)
    if roll < 0.5:
        return rng.uniform(-tq, 2 * tq)
    return rng.choice(HOSTILE)


def hostile_part(rng: random.Random, key: str, tq: int, heads: int):
    """One part of the canvas's state (view, head, query, selection, detail_request), random and often hostile."""
    def value():
        return hostile_value(rng, tq, heads)

    if rng.random() < 0.15:
        return rng.choice(HOSTILE)  # the wrong type altogether
    if key in ("head", "query"):
        return value()
    if key == "view":
        return {k: value() for k in rng.sample(["r0", "r1", "c0", "c1", "x"], rng.randint(0, 5))}
    if key == "detail_request":
        return {"overview": rng.choice(["", "x" * 500, 5, None]), "head": value(),
                "view": {k: value() for k in ("r0", "r1", "c0", "c1")}}
    kind = rng.choice(KINDS)
    sel = {"kind": kind, **{k: value() for k in rng.sample(["r0", "r1", "c0", "c1", "row", "col"], rng.randint(0, 6))}}
    if kind == "cells" or rng.random() < 0.2:
        n = rng.choice([0, 1, 5, 50, 20_000])
        sel["cells"] = rng.choice([[[value(), value()] for _ in range(min(n, 200))] * max(1, n // 200),
                                   "cells", [value()] * 3, {"0": [1, 2]}])
    return sel


def test_fuzz_1000_hostile_component_states_through_the_app(tmp_path, monkeypatch):
    """Seeded: 200 runs of the inspector at 300 tokens on the canvas, each sending a state whose five parts (view,
    head, query, selection, detail_request) are random, at the edges or hostile: 1,000 values, none an exception;
    every 10th run presses "Knock out" when the forged selection offers it."""
    from tests.test_long import long_text, tiny_long

    monkeypatch.setenv("INSPECTOR_CHECKPOINTS", str(SHIPPED))
    monkeypatch.delenv("INSPECTOR_PUBLIC", raising=False)
    model = tiny_long(tmp_path / "llama", "llama")
    clear_app_caches()
    from model import load

    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["model_path"] = str(model)
    at.session_state["view"] = "Attention map"
    at.session_state["source"] = long_text(load(model, "cpu"), TQ)
    at.run()
    assert not at.exception and at.get("bidi_component"), "the map is the canvas"
    rng = random.Random(32)
    sent, knocked, started = 0, 0, time.perf_counter()
    for i in range(200):
        state = {key: hostile_part(rng, key, TQ, 4) for key in ("view", "head", "query", "selection",
                                                                 "detail_request")}
        sent += len(state)
        at.session_state["map"] = state if rng.random() > 0.03 else rng.choice(HOSTILE)
        at.run()
        assert not at.exception, (state, [e.value for e in at.exception])
        buttons = [b for b in at.button if b.key == "map_knock_out"]
        if i % 10 == 0 and buttons:
            buttons[0].click().run()
            knocked += 1
            assert not at.exception, (state, [e.value for e in at.exception])
    assert sent == 1000 and knocked > 0
    print(f"{sent} component-state values in 200 runs, {knocked} knockouts, {time.perf_counter() - started:.1f} s")


def test_a_map_picked_on_the_page_is_checked():
    """The canvas reports the map picked on it ({kind, layer, stage} or {step}); forged values are dropped."""
    ok = {"kind": "decoder masked self", "layer": 1, "stage": "weights"}
    assert validate.canvas_state({"choice": ok}, 4, 4, 2)["choice"] == ok
    assert validate.canvas_state({"choice": {"step": 300}}, 4, 4, 2)["choice"] == {"step": 300}
    for forged in ({"layer": True}, {"layer": 1.5}, {"layer": 2**40}, {"stage": "x" * 500}, {"kind": "\x00"},
                   {"kind": "\ud800"}, {f"g{i}": 1 for i in range(20)}, {}, [1], "weights", {"layer": [1]}):
        assert validate.canvas_state({"choice": forged}, 4, 4, 2)["choice"] is None, forged
