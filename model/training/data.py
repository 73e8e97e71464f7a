"""Training data: your own files (TSV pairs, or one text per line), generated batches, and exact match."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import torch

from ..own.pipeline import TransformerPipeline
from ..own.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from .tasks import Task

MIN_PAIRS = 10  # a --data file with fewer examples than this is refused
MAX_LINE_CHARS = 2_000  # a longer source, target or text is refused (it would ask for a huge max_len)
MAX_DATA_BYTES = 512 * 2**20
NEWLINES = re.compile(r"\r\n|\r|\n")
# what str.splitlines() also breaks lines at: in a data line they are reported, never silently split on
OTHER_LINE_BREAKS = {"\x0b": "U+000B LINE TABULATION (vertical tab)", "\x0c": "U+000C FORM FEED",
                     "\x1c": "U+001C FILE SEPARATOR", "\x1d": "U+001D GROUP SEPARATOR",
                     "\x1e": "U+001E RECORD SEPARATOR", "\x85": "U+0085 NEXT LINE (NEL)",
                     "\u2028": "U+2028 LINE SEPARATOR", "\u2029": "U+2029 PARAGRAPH SEPARATOR"}


class TrainError(Exception):
    """A user mistake in the training inputs (bad TSV, too little data...); the CLI prints it, no traceback."""


def _check_data_file(path: Path) -> None:
    if not path.is_file():
        raise TrainError(f"{path}: no such file")
    if path.stat().st_size > MAX_DATA_BYTES:
        raise TrainError(f"{path}: larger than {MAX_DATA_BYTES // 2**20} MiB")


def data_digest(path: str | Path) -> str:
    """SHA-256 of a --data file (recorded in meta.json: a checkpoint trained on other data is not replaced)."""
    path = Path(path)
    _check_data_file(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_lines(path: Path) -> list[str]:
    """Lines split at \\n, \\r\\n or \\r only; any other line break in a line is reported with its name."""
    _check_data_file(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a UTF-8 byte-order mark is not part of the first source
    except UnicodeDecodeError as e:
        raise TrainError(f"{path}: not UTF-8 text ({e})") from None
    lines = NEWLINES.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, line in enumerate(lines, 1):
        for ch, name in OTHER_LINE_BREAKS.items():
            col = line.find(ch)
            if col >= 0:
                raise TrainError(f"{path}:{lineno}: line {lineno} contains {name} at character {col + 1}, which "
                                 "some tools read as a line break; replace it by a space or a newline")
    return lines


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read source<TAB>target lines; blank lines are skipped, anything else malformed is a TrainError."""
    path = Path(path)
    pairs = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            what = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise TrainError(f"{path}:{lineno}: expected one 'source<TAB>target' per line, found {what}")
        src, tgt = fields
        if not src.strip() or not tgt.strip():
            raise TrainError(f"{path}:{lineno}: empty {'source' if not src.strip() else 'target'}")
        for side, value in (("source", src), ("target", tgt)):
            if len(value) > MAX_LINE_CHARS:
                raise TrainError(f"{path}:{lineno}: the {side} has {len(value):,} characters (at most "
                                 f"{MAX_LINE_CHARS:,})")
        pairs.append((src, tgt))
    if not pairs:
        raise TrainError(f"{path}: no pairs (the file is empty)")
    if len(pairs) < MIN_PAIRS:
        raise TrainError(f"{path}: only {len(pairs)} pairs; need at least {MIN_PAIRS} to train and validate")
    return pairs


def read_texts(path: str | Path) -> list[str]:
    """One training text per line (decoder-only); blank lines skipped."""
    path = Path(path)
    texts = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise TrainError(f"{path}:{lineno}: {len(line):,} characters (at most {MAX_LINE_CHARS:,})")
        texts.append(line)
    if len(texts) < MIN_PAIRS:
        raise TrainError(f"{path}: only {len(texts)} texts; need at least {MIN_PAIRS} to train and validate")
    return texts


def canonical(tokenizer: Tokenizer, text: str) -> str:
    """What a perfect model would output for ``text`` (e.g. a word tokenizer re-joins tokens with spaces)."""
    return tokenizer.detokenize(tokenizer.tokenize(text).ids)


def exact_match(pipe: TransformerPipeline, pairs: list[tuple[str, str]], batch_size: int = 500) -> float:
    """Share of pairs whose greedy output equals the target, decoded in padded batches."""
    # a right answer needs no more tokens than the longest target (+ [EOS]): stop there, it is much faster
    limit = max(len(pipe.tgt_tokenizer.tokenize(t).ids) for _, t in pairs) + 1
    hits = 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i: i + batch_size]
        outs = pipe.generate([s for s, _ in chunk], max_new_tokens=limit)
        hits += sum(o == canonical(pipe.tgt_tokenizer, t) for o, (_, t) in zip(outs, chunk, strict=True))
    return hits / max(len(pairs), 1)


class PairSource:
    """Training examples: fresh from a task generator, or sampled from a list.

    Generated validation pairs come from another seed. They are not removed from training: some tasks have tiny
    sub-spaces (the ten one-digit numbers) that the model must see, and their overlap says nothing about generalising.
    """

    def __init__(self, seed: int, task: Task | None = None, pairs: list[tuple[str, str]] | None = None):
        self.rng = random.Random(seed)
        self.task, self.pairs = task, pairs

    def batch(self, n: int) -> list[tuple[str, str]]:
        if self.pairs is not None:
            return [self.pairs[self.rng.randrange(len(self.pairs))] for _ in range(n)]
        if self.task.arch == "decoder-only":
            return [(self.task.make_sequence(self.rng).text, "") for _ in range(n)]
        return [self.task.make_pair(self.rng) for _ in range(n)]


def _pad(rows: list[list[int]], device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


def make_batch(pairs, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int, device):
    """-> src (B, S), decoder input [BOS]+target (B, T), labels target+[EOS] (B, T), padded with PAD_ID."""
    srcs = [src_tok.tokenize(s, max_len=max_len, eos=True).ids for s, _ in pairs]
    tgts = [tgt_tok.tokenize(t, max_len=max_len - 1).ids for _, t in pairs]
    return (_pad(srcs, device), _pad([[BOS_ID] + t for t in tgts], device),
            _pad([t + [EOS_ID] for t in tgts], device))


def make_text_batch(texts: list[str], tok: Tokenizer, max_len: int, device):
    """Decoder-only: -> input [BOS]+text (B, T), labels text+[EOS] (B, T)."""
    ids = [tok.tokenize(t, max_len=max_len - 1).ids for t in texts]
    return _pad([[BOS_ID] + i for i in ids], device), _pad([i + [EOS_ID] for i in ids], device)
