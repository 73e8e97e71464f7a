"""Widget values that are always valid and survive runs in which their widget is not drawn.

Streamlit forgets a widget's value when a run does not draw it (an empty input stops the page early, a view hides
its controls), and a stored value can outlive its options (a model with fewer layers, a shorter sentence). Every
selector of every page goes through ``keep``: the value shown is always one of the current options, and the one
drawn next is the one the user last chose.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

KEPT = "_kept."


def keep(key: str, options: Sequence, default=None):
    """Before drawing the widget ``key``: make its value one of ``options`` (the widget's own value, else the last
    one kept, else ``default``, else the first option) and return it. Draw the widget without index/value."""
    options = list(options)
    if not options:
        st.session_state.pop(key, None)
        return None
    current = st.session_state.get(key, None)
    if key in st.session_state and _member(current, options):
        value = current
    else:
        kept = st.session_state.get(KEPT + key, default)
        value = kept if _member(kept, options) else (default if _member(default, options) else options[0])
        st.session_state[key] = value
    st.session_state[KEPT + key] = value
    return value


def set_value(key: str, value) -> None:
    """Change a widget's value from code (a callback): the widget and its kept copy agree."""
    st.session_state[key] = value
    st.session_state[KEPT + key] = value


def _member(value, options: list) -> bool:
    """``value in options`` without mixing types (a stored "2" is not the option 2)."""
    return any(type(value) is type(o) and value == o for o in options)


def _position(value, options: list) -> int:
    return next(i for i, o in enumerate(options) if type(o) is type(value) and o == value)


# Drawing helpers: the kept value is also passed as the widget's default, so a widget the browser mounts again (after
# a run that did not draw it) shows the value the server uses, not its first option.

def selectbox(label: str, options: Sequence, key: str, default=None, **kwargs):
    options = list(options)
    value = keep(key, options, default)
    return st.selectbox(label, options, index=None if value is None else _position(value, options), key=key,
                        **kwargs)


def radio(label: str, options: Sequence, key: str, default=None, **kwargs):
    options = list(options)
    value = keep(key, options, default)
    return st.radio(label, options, index=None if value is None else _position(value, options), key=key, **kwargs)


def select_slider(label: str, options: Sequence, key: str, default=None, **kwargs):
    options = list(options)
    value = keep(key, options, default)
    return st.select_slider(label, options, value=value, key=key, **kwargs)


def segmented_control(label: str, options: Sequence, key: str, default=None, **kwargs):
    options = list(options)
    value = keep(key, options, default)
    return st.segmented_control(label, options, default=value, key=key, **kwargs)
