"""ui.state.keep: a widget's stored value is always one of its current options (one mechanism for every page)."""

import types

import pytest

from ui import state


@pytest.fixture()
def session(monkeypatch):
    fake = types.SimpleNamespace(session_state={})
    monkeypatch.setattr(state, "st", fake)
    return fake.session_state


def test_the_widgets_own_valid_value_wins(session):
    session["layer"] = 1
    assert state.keep("layer", [0, 1, 2], 2) == 1 and session["layer"] == 1


def test_a_value_outside_the_options_falls_back(session):
    session["layer"] = 5  # a model with fewer layers
    assert state.keep("layer", [0, 1], 1) == 1 and session["layer"] == 1


def test_a_wrong_typed_value_is_replaced_not_compared(session):
    session["pg_query"] = "3"  # the playground's TypeError: '>=' between str and int
    assert state.keep("pg_query", [0, 1, 2, 3], 1) == 1
    session["flag"] = True  # True == 1 in Python, but it is not the option 1
    assert state.keep("flag", [0, 1], 0) == 0


def test_a_value_survives_runs_where_its_widget_is_not_drawn(session):
    session["head"] = 2
    state.keep("head", [-1, 0, 1, 2, 3], 0)
    del session["head"]  # Streamlit forgets a widget's state when a run does not draw it
    assert state.keep("head", [-1, 0, 1, 2, 3], 0) == 2 and session["head"] == 2


def test_set_value_from_a_callback(session):
    state.set_value("view", "Attention map")
    del session["view"]
    assert state.keep("view", ["Head grid", "Attention map"], "Head grid") == "Attention map"


def test_no_options(session):
    session["x"] = 1
    assert state.keep("x", [], 0) is None and "x" not in session
