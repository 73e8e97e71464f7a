"""Tokenizers of trained models (tokenizer.json, HF `tokenizers`), with token labels a person can read.

Byte-level BPE (GPT-2, Llama 3, Qwen, RoBERTa, BART) stores a leading space as ``Ġ`` and a newline as ``Ċ``;
SentencePiece (T5, Llama 2, Mistral) writes a space as ``▁``; WordPiece (BERT) marks a word's continuation
with ``##``. Labels show a space as ``␣``, a newline as ``↵`` and a tab as ``⇥``, and keep ``##``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from ..core.encoding import Encoding, call_tokenizer, cut_for

SPACE, NEWLINE, TAB = "␣", "↵", "⇥"


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted (the standard bytes_to_unicode table)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _visible(text: str) -> str:
    return text.replace(" ", SPACE).replace("\n", NEWLINE).replace("\t", TAB).replace("\r", "␍")


def byte_level_label(token: str) -> str:
    """``Ġworld`` -> ``␣world``; a token holding part of a multi-byte character shows its bytes (``<0xF0><0x9F>``)."""
    table = _byte_decoder()
    if not all(ch in table for ch in token):
        return _visible(token)
    raw = bytes(table[ch] for ch in token)
    try:
        return _visible(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "".join(f"<0x{b:02X}>" for b in raw)


def unknown_id(hf: HFTokenizer, model: dict) -> int | None:
    """The id of a tokenizer model's unknown token (WordPiece / WordLevel / BPE ``unk_token``, Unigram ``unk_id``);
    None when it has none (byte-level BPE reads every text)."""
    if isinstance(model.get("unk_id"), int):
        return int(model["unk_id"])
    token = model.get("unk_token")
    return hf.token_to_id(token) if isinstance(token, str) and token else None


class TextTokenizer:
    """A trained model's tokenizer.json: encodes with the model's own special tokens, labels tokens readably."""

    def __init__(self, hf: HFTokenizer, max_len: int):
        self.hf = hf
        self.max_len = max_len
        spec = json.loads(hf.to_str())
        kinds = {str((spec.get(part) or {}).get("type")) for part in ("decoder", "pre_tokenizer", "model")}
        subs = [d.get("type") for part in ("decoder", "pre_tokenizer") for d in
                ((spec.get(part) or {}).get("decoders") or (spec.get(part) or {}).get("pretokenizers") or [])]
        kinds |= {str(s) for s in subs}
        self.byte_level = "ByteLevel" in kinds
        self.special_ids = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
        self.unk_id = unknown_id(hf, spec.get("model") or {})
        # a pasted megabyte is cut to what max_len tokens can hold before the tokenizer sees it
        self.hf.no_truncation()
        self.hf.no_padding()

    @classmethod
    def from_file(cls, path: str | Path, max_len: int) -> "TextTokenizer":
        return cls(HFTokenizer.from_file(str(path)), max_len)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def max_id(self) -> int:
        return max(self.hf.get_vocab(with_added_tokens=True).values(), default=-1)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def label(self, token_id: int) -> str:
        """A readable label for one id (special tokens as they are)."""
        raw = self.hf.id_to_token(int(token_id))
        if raw is None:
            return f"<id {int(token_id)}>"
        if int(token_id) in self.special_ids:
            return raw
        if self.byte_level:
            return byte_level_label(raw)
        return _visible(raw.replace("▁", " "))

    def encoding(self, ids: list[int], *, truncated: bool = False, n_text_tokens: int | None = None,
                 offsets: list[tuple[int, int]] | None = None, chars_cut: bool = False) -> Encoding:
        return Encoding(ids=list(ids), tokens=[self.label(i) for i in ids],
                        offsets=offsets if offsets is not None else [(0, 0)] * len(ids), truncated=truncated,
                        n_text_tokens=len(ids) if n_text_tokens is None else n_text_tokens,
                        special=[int(i) in self.special_ids for i in ids], chars_cut=chars_cut,
                        n_unknown=0 if self.unk_id is None else sum(int(i) == self.unk_id for i in ids))

    def tokenize(self, text: str, max_len: int | None = None, add_special_tokens: bool = True) -> Encoding:
        """Text -> the model's ids with its own special tokens ([CLS] ... [SEP], <s> ... </s>), cut to max_len
        tokens keeping the trailing special token(s)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        max_len = self.max_len if max_len is None else max_len
        limit = cut_for(max_len)
        chars_cut = len(text) > limit
        enc = call_tokenizer(self.hf.encode, text[:limit] if chars_cut else text,
                             add_special_tokens=add_special_tokens)
        ids, offsets = list(enc.ids), [tuple(o) for o in enc.offsets]
        special = list(enc.special_tokens_mask)
        n_text = len(ids) - sum(special)
        truncated = len(ids) > max_len or chars_cut
        if len(ids) > max_len:
            # keep the leading and trailing specials ([CLS] ... [SEP]): cut the text tokens in between
            tail = 0
            while tail < len(ids) and special[len(ids) - 1 - tail]:
                tail += 1
            keep = max(0, max_len - tail)
            ids = ids[:keep] + (ids[len(ids) - tail:] if tail else [])
            offsets = offsets[:keep] + (offsets[len(offsets) - tail:] if tail else [])
        return self.encoding(ids, truncated=truncated, n_text_tokens=n_text, offsets=offsets, chars_cut=chars_cut)

    def detokenize(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return call_tokenizer(self.hf.decode, [int(i) for i in ids], skip_special_tokens=skip_special_tokens)
