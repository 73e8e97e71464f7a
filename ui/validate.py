"""One check at the boundary for every value the browser sends: the canvas's component state (its view, head, query,
selection and detail request), chart clicks, texts (the box, an uploaded file, a link, a saved session) and the
numbers of links and sessions. Each value has a schema of types and ranges: a number out of range is clamped, a
value of the wrong type or shape is refused (None, or a ValidationError whose message says what is wrong), so that
the code behind never sees it. Nothing here raises anything else, whatever it is given.

A browser's page can send anything its JavaScript can build (``setState('view', {r0: 1})``, a rectangle from -1e19
to 1e19, a million selected cells, a list where a dict belongs): the views read the checked values only.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence

MAX_SELECTED_CELLS = 10_000  # a selection of single cells is cut to this many before any is read
SELECTION_KINDS = ("cells", "row", "column", "rect")
MAX_ID_CHARS = 128  # an overview id the page echoes back
MAX_CHOICE_GROUPS = 8  # a map picked on the page: {group name: value}, e.g. {kind, layer, stage} or {step}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")  # tab, newline and return are text
SURROGATE = re.compile(r"[\ud800-\udfff]")  # a lone surrogate: not Unicode text (no UTF-8 encodes it)


class ValidationError(ValueError):
    """A value from the browser, a link or a file that the app refuses (the message says which and why)."""


def number(value, lo: int, hi: int) -> int | None:
    """A position or index from the browser (a JSON number: an int, or a finite float, rounded down), clamped to
    lo..hi; None for anything else (text, a bool, None, NaN, infinity, a list) or an empty range (hi < lo)."""
    if isinstance(value, bool) or hi < lo:
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and math.isfinite(value):
        n = math.floor(value)
    else:
        return None
    return min(max(n, lo), hi)


def span(lo_value, hi_value, n: int) -> tuple[int, int] | None:
    """A half-open range [a, b) on an axis of ``n`` from two browser numbers, clamped to 0 <= a < b <= n."""
    a = number(lo_value, 0, n - 1)
    b = None if a is None else number(hi_value, a + 1, n)
    return None if b is None else (a, b)


def canvas_view(value, tq: int, tk: int) -> dict | None:
    """{r0, r1, c0, c1} (cells, end exclusive) of a (tq, tk) map, clamped; None unless all four are numbers."""
    if not isinstance(value, Mapping):
        return None
    rows = span(value.get("r0"), value.get("r1"), tq)
    cols = span(value.get("c0"), value.get("c1"), tk)
    if rows is None or cols is None:
        return None
    return {"r0": rows[0], "r1": rows[1], "c0": cols[0], "c1": cols[1]}


def _pairs(value, tq: int, tk: int) -> list[tuple[int, int]]:
    """(query, key) pairs inside the map, from at most MAX_SELECTED_CELLS items (the rest are never looked at)."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        return []
    out = []
    for item in itertools.islice(value, MAX_SELECTED_CELLS):
        if isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 2:
            r, c = number(item[0], -1, tq), number(item[1], -1, tk)
            if r is not None and c is not None and 0 <= r < tq and 0 <= c < tk:
                out.append((r, c))
    return list(dict.fromkeys(out))


def selection(value, tq: int, tk: int) -> dict | None:
    """The canvas's selection, checked: {"kind": "cells", "cells": [(q, k), ...]} (cells outside the map left out,
    at most MAX_SELECTED_CELLS), {"kind": "row", "row"}, {"kind": "column", "col"} or {"kind": "rect", r0, r1, c0,
    c1} (clamped to the map); None for anything else."""
    if not isinstance(value, Mapping) or tq < 1 or tk < 1:
        return None
    kind = value.get("kind")
    if kind == "cells":
        cells = _pairs(value.get("cells"), tq, tk)
        return {"kind": "cells", "cells": cells} if cells else None
    if kind == "row":
        row = number(value.get("row"), 0, tq - 1)
        return None if row is None else {"kind": "row", "row": row}
    if kind == "column":
        col = number(value.get("col"), 0, tk - 1)
        return None if col is None else {"kind": "column", "col": col}
    if kind == "rect":
        view = canvas_view(value, tq, tk)
        return None if view is None else {"kind": "rect", **view}
    return None


def choice(value) -> dict | None:
    """A map picked on the page ({group name: value}): short names, whole numbers or short strings; else None. Which
    maps exist is the page's own check (ui/views/canvas.py)."""
    if not isinstance(value, Mapping) or not 0 < len(value) <= MAX_CHOICE_GROUPS:
        return None
    ok = all(isinstance(k, str) and len(k) <= MAX_ID_CHARS and (
        (isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**31) or
        (isinstance(v, str) and len(v) <= MAX_ID_CHARS and not CONTROL.search(v) and not SURROGATE.search(v)))
        for k, v in value.items())
    return dict(value) if ok else None


def canvas_state(value, tq: int, tk: int, n_heads: int) -> dict:
    """The canvas component's state ({view, head, query, selection, detail_request, choice}, as the page reports it)
    with each part checked (None where the page sent nothing usable)."""
    value = value if isinstance(value, Mapping) else {}
    request = value.get("detail_request")
    if isinstance(request, Mapping):
        overview = request.get("overview")
        request = {"overview": overview if isinstance(overview, str) and len(overview) <= MAX_ID_CHARS else None,
                   "head": number(request.get("head"), 0, n_heads - 1),
                   "view": canvas_view(request.get("view"), tq, tk)}
    else:
        request = None
    return {"view": canvas_view(value.get("view"), tq, tk), "head": number(value.get("head"), 0, n_heads - 1),
            "query": number(value.get("query"), 0, tq - 1), "selection": selection(value.get("selection"), tq, tk),
            "detail_request": request, "choice": choice(value.get("choice"))}


def text(value, what: str, limit: int, *, controls: bool = False) -> str:
    """A text that enters the app (typed, uploaded, from a link, a saved session): a str of at most ``limit``
    characters and valid Unicode (no lone surrogate: no tokenizer can encode one); unless ``controls``, without
    control characters other than tab, newline and return (a link or a session file has no reason to hold them; a
    typed or uploaded text is the model's input as it is). ValidationError naming ``what`` otherwise."""
    if not isinstance(value, str):
        raise ValidationError(f"the {what} is not text")
    if len(value) > limit:
        raise ValidationError(f"the {what} is {len(value):,} characters long (at most {limit:,} here)")
    bad = SURROGATE.search(value)
    if bad:
        raise ValidationError(f"the {what} is not valid Unicode text (a lone surrogate, U+{ord(bad.group()):04X}, "
                              f"at character {bad.start():,})")
    if not controls and CONTROL.search(value):
        raise ValidationError(f"the {what} holds control characters")
    return value


def text_problem(value, what: str, limit: int, *, controls: bool = False) -> str | None:
    """``text``'s message for a text it refuses, else None."""
    try:
        text(value, what, limit, controls=controls)
    except ValidationError as e:
        return str(e)
    return None


__all__ = ["CONTROL", "MAX_SELECTED_CELLS", "SELECTION_KINDS", "SURROGATE", "ValidationError", "canvas_state",
           "canvas_view", "number", "selection", "span", "text", "text_problem"]
