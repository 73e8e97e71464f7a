"""A text as a model sees it (``Encoding``), and the one error a tokenizer raises: shared by the project's
tokenizers and transformers' (both wrap HF ``tokenizers``)."""

from __future__ import annotations

from dataclasses import dataclass


class TokenizerError(ValueError):
    """The tokenizer failed on this text (a broken or hostile tokenizer file; the Rust side may even panic)."""


def call_tokenizer(fn, *args, **kwargs):
    """Run a call into HF tokenizers; any failure, a Rust panic (a BaseException) included, is a TokenizerError."""
    try:
        return fn(*args, **kwargs)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as e:
        raise TokenizerError(f"the tokenizer failed ({type(e).__name__}: {str(e)[:200]})") from None


@dataclass(frozen=True)
class Encoding:
    """A text as the model sees it."""

    ids: list[int]  # token ids, specials included
    tokens: list[str]  # the token strings, one per id ("[UNK]" for unknown text)
    offsets: list[tuple[int, int]]  # (start, end) character span in the text; (0, 0) for specials
    truncated: bool  # True when the text was longer than max_len and its tail was dropped
    n_text_tokens: int  # tokens the full text had, before truncation (specials excluded)
    special: list[bool] | None = None  # True where the token is a special token ([BOS], [CLS], <|endoftext|>...)
    chars_cut: bool = False  # True when the text was so long that its characters were cut before tokenising
    #                          (n_text_tokens then counts the kept characters' tokens only: a lower bound)
    n_unknown: int = 0  # tokens that are the tokenizer's unknown token ([UNK], <unk>): text the model cannot read


def cut_for(max_len: int | None) -> int | None:
    """How many characters of a text are worth tokenising for at most ``max_len`` tokens (None: all).

    No tokenizer here makes a token of more than a few hundred characters; the cut keeps a pasted megabyte from
    being tokenised in full only to be truncated.
    """
    return None if max_len is None else 1_000 + 256 * max_len
