"""Opening an untrusted tokenizer.json (this project's or a transformers model's) before HF ``tokenizers`` sees it.

Read through the checked, size-capped file gate; JSON depth bounded; added tokens bounded in number and length (one
300-MB added token took 6 GB to build); every regex of the normalizer, pre-tokenizer and decoder checked for
catastrophic backtracking, so no tokenizer can freeze the server on a short input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer as HFTokenizer

from .errors import CheckpointError
from .files import MAX_TOKENIZER_BYTES, parse_json, read_text
from .regex_check import backtracking_risk

if TYPE_CHECKING:
    from .paths import PathPolicy

MAX_ADDED_TOKENS = 1_000_000
MAX_ADDED_TOKEN_CHARS = 1_024  # the longest real ones are a few dozen characters (runs of spaces, chat markers)
REGEX_PARTS = ("normalizer", "pre_tokenizer", "decoder", "post_processor")


def regex_patterns(spec: dict) -> list[tuple[str, str]]:
    """(where, pattern) of every regex in a tokenizer's normalizer, pre-tokenizer, decoder and post-processor,
    nested sequences included (``{"pattern": {"Regex": ...}}``; plain ``String`` patterns are literal)."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
                found.append((f"{where} ({node.get('type', '?')})", pattern["Regex"]))
            for key, value in node.items():
                if isinstance(value, (dict, list)):
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for part in REGEX_PARTS:
        walk(spec.get(part), part)
    return found


def check_tokenizer_spec(spec: Any, file: Path) -> None:
    """Refuse a tokenizer spec that is no object, has absurd added tokens, or a regex that can backtrack
    catastrophically (CheckpointError naming the file and the pattern)."""
    if not isinstance(spec, dict):
        raise CheckpointError(f"{file}: not a tokenizer (a JSON object is expected)")
    added = spec.get("added_tokens") or []
    if not isinstance(added, list):
        raise CheckpointError(f"{file}: added_tokens is not a list")
    if len(added) > MAX_ADDED_TOKENS:
        raise CheckpointError(f"{file}: {len(added):,} added tokens (at most {MAX_ADDED_TOKENS:,})")
    for token in added:
        content = token.get("content") if isinstance(token, dict) else None
        if isinstance(content, str) and len(content) > MAX_ADDED_TOKEN_CHARS:
            raise CheckpointError(f"{file}: an added token of {len(content):,} characters (at most "
                                  f"{MAX_ADDED_TOKEN_CHARS:,})")
    for where, pattern in regex_patterns(spec):
        reason = backtracking_risk(pattern)
        if reason:
            shown = pattern if len(pattern) <= 120 else pattern[:119] + "…"
            raise CheckpointError(f"{file}: the {where} regex {shown!r} can take exponential time on some inputs "
                                  f"({reason}); this app does not load such tokenizers")


def read_tokenizer_file(file: str | Path, policy: PathPolicy | None = None) -> HFTokenizer:
    """A checked tokenizer.json as an HF tokenizer; every problem is a CheckpointError naming the file."""
    file = Path(file)
    text = read_text(file, MAX_TOKENIZER_BYTES, policy)
    check_tokenizer_spec(parse_json(text, file), file)
    try:
        return HFTokenizer.from_str(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # the Rust side raises plain Exceptions, and panics (BaseException) on some input
        raise CheckpointError(f"{file}: not a valid tokenizer ({type(e).__name__}: {str(e)[:200]})") from None
