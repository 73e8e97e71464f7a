"""The per-batch function of the atlas, the same for every engine: records of a corpus in, the rows of every table
out (examples, head statistics, sampled q / k vectors, skips), from one padded traced call.

What an example is, by kind of model: decoder-only and encoder-only models read the text itself; an
encoder-decoder reads the text as its source and decodes its target greedily (at most ``max_new_tokens``, the
inspector's default), exactly as the inspector does for a source typed without a target, so that a link opens the
same numbers. The statistics are ``model.analysis.heads.head_table`` of each example's trace (the Statistics
view's function): batching and padding change nothing (equal to the example run alone to 1e-5, tested).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ..analysis.heads import head_table
from ..api import Pipeline, RunResult
from ..call import run_batch
from ..core.names import RecordName
from .records import Record
from .schema import EXAMPLES, HEAD_STATS, PART, QK_VECTORS, ROW_TABLES, SKIPS, STATS, union_schema

TOO_LONG = ("cut", "skip")
DEFAULT_MAX_NEW = 128  # an encoder-decoder's greedy target: the inspector's default cap (ui/tracing.MAX_GENERATED)
CUT_TRIES = 8  # re-tokenising a cut text that still does not fit: give up after this many shorter cuts


@dataclass(frozen=True)
class QKSample:
    """Which tokens keep their q and k vectors for the queries-and-keys projection: examples whose id is a multiple
    of ``every`` (at most ``examples`` of them), ``tokens`` evenly spaced positions on each axis, every head."""

    every: int = 0  # 0: no vectors
    examples: int = 100
    tokens: int = 8

    def wants(self, example_id: int) -> bool:
        return self.every > 0 and example_id % self.every == 0 and example_id // self.every < self.examples

    def positions(self, length: int) -> list[int]:
        """Evenly spaced positions of an axis of ``length`` tokens (all of them when there are few)."""
        if length <= self.tokens:
            return list(range(length))
        return sorted({int(round(x)) for x in np.linspace(0, length - 1, self.tokens)})

    @classmethod
    def over(cls, n_records: int, examples: int, tokens: int) -> QKSample:
        """A sample of about ``examples`` examples spread over a corpus of ``n_records``."""
        if examples <= 0 or tokens <= 0:
            return cls(every=0, examples=0, tokens=0)
        return cls(every=max(1, n_records // examples), examples=examples, tokens=tokens)


@dataclass(frozen=True)
class AtlasOptions:
    """The options that change an atlas's rows (all of them are part of its run_id)."""

    max_tokens: int | None = None  # the most tokens an example may have (specials included); None: the model's limit
    too_long: str = "cut"  # a longer text: "cut" (keep its first max_tokens tokens, counted) or "skip" (counted)
    max_new_tokens: int = DEFAULT_MAX_NEW  # encoder-decoder: the longest greedy target
    qk: QKSample = field(default_factory=QKSample)

    def __post_init__(self):
        if self.too_long not in TOO_LONG:
            raise ValueError(f"too_long must be one of {TOO_LONG}, got {self.too_long!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")

    def identity(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_identity(cls, d: dict) -> AtlasOptions:
        return cls(max_tokens=d["max_tokens"], too_long=d["too_long"], max_new_tokens=d["max_new_tokens"],
                   qk=QKSample(**d["qk"]))


@dataclass(frozen=True)
class BatchRows:
    """The rows one batch adds to each table (Arrow tables without ``run_id``)."""

    examples: pa.Table
    head_stats: pa.Table
    qk_vectors: pa.Table
    skips: pa.Table

    def tables(self) -> dict[str, pa.Table]:
        return {"examples": self.examples, "head_stats": self.head_stats, "qk_vectors": self.qk_vectors,
                "skips": self.skips}

    @property
    def n_records(self) -> int:
        return self.examples.num_rows + self.skips.num_rows

    def skip_counts(self) -> dict[str, int]:
        return pd.Series(self.skips.column("reason").to_pylist(), dtype=object).value_counts().to_dict()

    def to_parts(self, run_id: str) -> pa.Table:
        """One table of the union schema, ``part`` naming each row's table (the Ray engine's Parquet rows)."""
        schema = union_schema()
        pieces = []
        for name, t in self.tables().items():
            if not t.num_rows:
                continue
            cols = {PART: pa.array([name] * t.num_rows, pa.string()),
                    "run_id": pa.array([run_id] * t.num_rows, pa.string())}
            for f in schema:
                if f.name in cols:
                    continue
                cols[f.name] = t.column(f.name) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
            pieces.append(pa.table(cols, schema=schema))
        return pa.concat_tables(pieces) if pieces else schema.empty_table()


def empty_rows() -> BatchRows:
    return BatchRows(*(t.arrow_schema(with_run_id=False).empty_table() for t in ROW_TABLES))


def model_axis(pipe: Pipeline, text: str):
    """The Encoding an example's token count is of: the decoder's input (decoder-only), else the encoder's."""
    return pipe.tokenize_target(text) if pipe.arch == "decoder-only" else pipe.tokenize_source(text)


def token_limit(pipe: Pipeline, options: AtlasOptions) -> int:
    return min(options.max_tokens or pipe.info.max_len, pipe.info.max_len)


def fit(pipe: Pipeline, record: Record, options: AtlasOptions) -> tuple[str, bool] | Record:
    """(the text the model reads, whether it was cut to the token limit), or a skipped Record."""
    text = record.text
    enc = model_axis(pipe, text)
    limit = token_limit(pipe, options)
    if not enc.truncated and len(enc.ids) <= limit:
        return text, False
    if options.too_long == "skip":
        more = "+" if enc.chars_cut else ""
        return Record.skipped(record.example_id, "over token limit",
                              f"{enc.n_text_tokens:,}{more} text tokens, limit {limit:,}")
    cut = cut_text(pipe, text, enc, limit)
    if cut is None:
        return Record.skipped(record.example_id, "over token limit", f"cannot be cut to {limit:,} tokens")
    return cut, True


def cut_text(pipe: Pipeline, text: str, enc, limit: int) -> str | None:
    """The longest prefix of ``text``, ended at a token boundary, whose encoding has at most ``limit`` tokens."""
    # tokens of the text carry a character span ([UNK] too); the ones the template adds ([BOS], [SEP]...) do not
    text_tokens = [i for i, (_, end) in enumerate(enc.offsets) if end > 0]
    keep = min(len(text_tokens), limit - (len(enc.ids) - len(text_tokens)))
    for _ in range(CUT_TRIES):
        if keep <= 0:
            return None
        end = enc.offsets[text_tokens[keep - 1]][1]
        candidate = text[:end]
        again = model_axis(pipe, candidate)
        if candidate.strip() and not again.truncated and len(again.ids) <= limit:
            return candidate
        keep -= max(1, len(again.ids) - limit)
    return None


def atlas_batch(pipe: Pipeline, records: Sequence[Record], options: AtlasOptions) -> BatchRows:
    """Every row a batch of records adds: usable records run as one padded lazy call (no overviews), the others are
    counted skips. A batch the model refuses runs item by item; an item it refuses alone is a skip."""
    skips: list[Record] = []
    ready: list[tuple[Record, str, bool]] = []
    for r in records:
        if r.skip:
            skips.append(r)
            continue
        fitted = fit(pipe, r, options)
        if isinstance(fitted, Record):
            skips.append(fitted)
        else:
            ready.append((r, *fitted))
    results: list[RunResult | None] = []
    if ready:
        try:
            results = _run(pipe, [text for _, text, _ in ready], options)
        except Exception:  # one bad text should not lose the batch: try each alone
            results = []
            for r, text, _ in ready:
                try:
                    results.append(_run(pipe, [text], options)[0])
                except Exception as e:
                    results.append(None)
                    skips.append(Record.skipped(r.example_id, "model error", f"{type(e).__name__}: {e}"[:200]))
    examples, stats, vectors = [], [], []
    for (r, text, cut), res in zip(ready, results, strict=True):
        if res is None:
            continue
        examples.append(_example_row(pipe, r.example_id, text, cut, res))
        table = head_table(res.trace)
        table.insert(0, "example_id", r.example_id)
        stats.append(table)
        if options.qk.wants(r.example_id):
            vectors.append(qk_rows(res, r.example_id, options.qk))
    return BatchRows(examples=_examples_table(examples), head_stats=_stats_table(stats),
                     qk_vectors=_vectors_table(vectors), skips=_skips_table(skips))


def _run(pipe: Pipeline, texts: list[str], options: AtlasOptions) -> list[RunResult]:
    new = options.max_new_tokens if pipe.arch == "encoder-decoder" else None
    return run_batch(pipe, texts, max_new_tokens=new, mode="lazy", overviews=False)


def _example_row(pipe: Pipeline, example_id: int, text: str, cut: bool, res: RunResult) -> dict:
    axis = res.target if pipe.arch == "decoder-only" else res.source
    enc_dec = pipe.arch == "encoder-decoder"
    return {"example_id": example_id, "text": text, "n_tokens": len(axis.ids),
            "n_target_tokens": len(res.target.ids) if enc_dec else 0,
            "output_text": res.output_text if enc_dec else "", "cut": cut}


def qk_rows(res: RunResult, example_id: int, sample: QKSample) -> pa.Table:
    """The q vectors of sampled query rows and the k vectors of sampled keys of every head of every attention
    (q and k after RoPE / QK-norm: what the scores were computed from); a head reads its key/value head's k."""
    rows: dict[str, list] = {c: [] for c in ("example_id", "name", "head", "role", "position", "token")}
    chunks = []
    for name in res.trace:
        inputs = res.trace.inputs_of(name)
        q = inputs.q[0].float().cpu().numpy()  # (H, Tq, d_k)
        k = inputs.k[0].float().cpu().numpy()  # (H_kv, Tk, d_k)
        H, H_kv = q.shape[0], k.shape[0]
        q_tokens, k_tokens = res.axes(name)
        for role, values, tokens in (("q", q, q_tokens), ("k", k, k_tokens)):
            positions = sample.positions(values.shape[1])
            for h in range(H):
                source = h // (H // H_kv) if role == "k" else h
                chunks.append(values[source, positions])
                n = len(positions)
                rows["example_id"] += [example_id] * n
                rows["name"] += [name] * n
                rows["head"] += [h] * n
                rows["role"] += [role] * n
                rows["position"] += positions
                rows["token"] += [tokens[p] if p < len(tokens) else "" for p in positions]
    schema = QK_VECTORS.arrow_schema(with_run_id=False)
    if not chunks:
        return schema.empty_table()
    flat = np.concatenate(chunks, axis=0).astype(np.float32)  # (rows, d_k)
    vector = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1]).cast(pa.list_(pa.float32()))
    cols = {c: pa.array(v, schema.field(c).type) for c, v in rows.items()}
    return pa.table({**cols, "vector": vector}, schema=schema)


def _examples_table(rows: list[dict]) -> pa.Table:
    schema = EXAMPLES.arrow_schema(with_run_id=False)
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()


def _stats_table(frames: list[pd.DataFrame]) -> pa.Table:
    schema = HEAD_STATS.arrow_schema(with_run_id=False)
    if not frames:
        return schema.empty_table()
    df = pd.concat(frames, ignore_index=True).rename(columns={"attention": "name"})
    df = df[[f.name for f in schema]]
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)  # NaN -> NULL


def _vectors_table(tables: list[pa.Table]) -> pa.Table:
    schema = QK_VECTORS.arrow_schema(with_run_id=False)
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _skips_table(records: list[Record]) -> pa.Table:
    schema = SKIPS.arrow_schema(with_run_id=False)
    rows = [{"example_id": r.example_id, "reason": r.skip, "detail": r.detail} for r in records]
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()


def head_rows(pipe: Pipeline) -> list[dict]:
    """The run_heads rows of a model: every head of every attention, in forward order."""
    out = []
    for name in pipe.info.record_names:
        n = RecordName.parse(name)
        for h in range(pipe.info.n_heads):
            out.append({"name": name, "stack": n.stack, "sublayer": n.sublayer, "kind": n.kind, "layer": n.layer,
                        "head": h})
    return out


__all__ = ["AtlasOptions", "BatchRows", "DEFAULT_MAX_NEW", "QKSample", "STATS", "TOO_LONG", "atlas_batch", "cut_text",
           "empty_rows", "fit", "head_rows", "model_axis", "qk_rows", "token_limit"]
