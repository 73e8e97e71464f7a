"""Model- and user-derived text inside Streamlit markdown: shown as text, never as markup."""

from __future__ import annotations

import math
import re

MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-.!|<>~$:=\"'&")
FSI, PDI = "\u2068", "\u2069"  # FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE
ISOLATE_CONTROLS = dict.fromkeys(map(ord, "\u2066\u2067\u2068\u2069"))  # LRI, RLI, FSI, PDI: removed inside


def isolate(text: str) -> str:
    """``text`` as a bidi isolate: a U+202E (RIGHT-TO-LEFT OVERRIDE) or an Arabic name inside it cannot reorder the
    page's text around it. Isolate marks of its own are dropped, so it cannot close the isolate early."""
    s = str(text).translate(ISOLATE_CONTROLS)
    return f"{FSI}{s}{PDI}" if s else ""


def md(text) -> str:
    """Escape every markdown (and Streamlit: ``:red[...]``, ``:emoji:``, ``$math$``) special character, keep the
    text on one line and isolate its direction: a checkpoint path, a config value or a model's output cannot add
    links, images, code spans or formatting to the page, nor reverse the text beside it."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    return isolate("".join("\\" + ch if ch in MARKDOWN_SPECIALS else ch for ch in s))


def short(text: str, limit: int = 300) -> str:
    """At most ``limit`` characters (an error about a megabyte of input need not print it)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finite_number(value) -> float | None:
    """A figure from a checkpoint's meta.json as a number, or None when it is not one (text, a list, NaN, a bool):
    a checkpoint's figures are not trusted."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def slug(name: str) -> str:
    """A name as a link writes it: "Head grid" -> "head-grid", "decoder masked self" -> "decoder-masked-self"."""
    return re.sub(r"[\s_]+", "-", str(name).strip().lower())
