"""Readable tokenizers on HF `tokenizers`: words (digits split one by one) or single characters."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from ..core.encoding import Encoding, call_tokenizer, cut_for

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")  # ids 0, 1, 2, 3 in every tokenizer
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
TOKEN_LEVELS = ("word", "char")


class Tokenizer:
    """Wraps an HF tokenizer whose ids 0..3 are [PAD] [BOS] [EOS] [UNK]."""

    def __init__(self, hf: HFTokenizer):
        for i, tok in enumerate(SPECIAL_TOKENS):
            if hf.token_to_id(tok) != i:
                raise ValueError(f"tokenizer must map {tok} to id {i}, got {hf.token_to_id(tok)}")
        self.hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], level: str = "word", vocab_size: int = 10_000,
              min_frequency: int = 1) -> "Tokenizer":
        """Train on an iterator of texts.

        "word": words and punctuation split on whitespace, each digit its own token
        (`21 November 2026` -> 2 1 November 2 0 2 6); decodes by joining with spaces.
        "char": every character (spaces too) is a token; decodes by concatenation.
        """
        if level not in TOKEN_LEVELS:
            raise ValueError(f"tokenizer level must be one of {TOKEN_LEVELS}, got {level!r}")
        hf = HFTokenizer(models.WordLevel(unk_token="[UNK]"))
        if level == "word":
            hf.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
        else:
            hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # any char, newline too
            hf.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(SPECIAL_TOKENS), show_progress=False)
        hf.train_from_iterator(texts, trainer)
        return cls(hf)

    @classmethod
    def from_file(cls, path: str | Path) -> "Tokenizer":
        return cls(HFTokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    def to_str(self) -> str:
        return self.hf.to_str()

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    @property
    def max_id(self) -> int:
        """The largest id any token maps to (must be below the model's vocabulary size)."""
        return max(self.hf.get_vocab(with_added_tokens=True).values(), default=-1)

    def id_to_token(self, i: int) -> str:
        return self.hf.id_to_token(int(i)) or "[UNK]"

    def tokenize(self, text: str, max_len: int | None = None, bos: bool = False, eos: bool = False) -> Encoding:
        """Text -> ids, tokens and character offsets; optional [BOS]/[EOS]; truncated to max_len ids."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        limit = cut_for(max_len)
        chars_cut = limit is not None and len(text) > limit
        enc = call_tokenizer(self.hf.encode, text[:limit] if chars_cut else text)
        ids, tokens, offsets = list(enc.ids), list(enc.tokens), [tuple(o) for o in enc.offsets]
        n_text = len(ids)
        room = None if max_len is None else max(0, max_len - int(bos) - int(eos))
        truncated = (room is not None and n_text > room) or chars_cut
        if truncated:
            ids, tokens, offsets = ids[:room], tokens[:room], offsets[:room]
        if bos:
            ids, tokens, offsets = [BOS_ID] + ids, ["[BOS]"] + tokens, [(0, 0)] + offsets
        if eos:
            ids, tokens, offsets = ids + [EOS_ID], tokens + ["[EOS]"], offsets + [(0, 0)]
        return Encoding(ids=ids, tokens=tokens, offsets=offsets, truncated=truncated, n_text_tokens=n_text,
                        special=[i < len(SPECIAL_TOKENS) for i in ids], chars_cut=chars_cut,
                        n_unknown=ids.count(UNK_ID))

    def detokenize(self, ids: Iterable[int]) -> str:
        """Ids -> text, specials dropped (stops at the first [EOS])."""
        kept = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                kept.append(i)
        return call_tokenizer(self.hf.decode, kept, skip_special_tokens=False)
