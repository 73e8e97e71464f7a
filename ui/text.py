"""Model- and user-derived text inside Streamlit markdown: shown as text, never as markup."""

from __future__ import annotations

MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-.!|<>~$:=\"'&")


def md(text) -> str:
    """Escape every markdown (and Streamlit: ``:red[...]``, ``:emoji:``, ``$math$``) special character, and keep
    the text on one line: a checkpoint path, a config value or a model's output cannot add links, images, code spans
    or formatting to the page."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    return "".join("\\" + ch if ch in MARKDOWN_SPECIALS else ch for ch in s)


def short(text: str, limit: int = 300) -> str:
    """At most ``limit`` characters (an error about a megabyte of input need not print it)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
