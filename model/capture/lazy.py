"""A trace that grows with T, not T^2 x H: it keeps what each attention received (model.capture.inputs) and its
first pass (model.capture.passes), and recomputes records, windows and rows on demand through the same ``attention()``.

The trace keeps, per attention: q and k (after RoPE / QK-norm) per key/value head, v, the mask as facts
(model.core.masks), the context, the projections' inputs, each row's log-sum-exp, and a max-pooled overview of every
head. Per-row statistics (and the mean-pooled overview) come from the exact pass, or, after a fast one, from a
statistics pass computed when first asked. Nothing ever holds more than one block of rows x keys x heads.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch

from ..core.attention import AttentionRecord, RecordShape, attention, repeat_kv, to_numpy
from ..core.names import RecordName
from ..core.pooling import block_max
from ..core.reasons import reason_codes, reasons_from_codes
from ..core.rowstats import RowStats
from ..runtime import Lane
from .inputs import AttentionInputs, block_attention, block_bytes, block_mask, complete_record, row_block
from .passes import FirstPass, overview_shape, statistics_pass
from .trace import FullTrace, Trace, Window, check_stage, checked_head, clamp_range, stage_values


class RecordTooLarge(ValueError):
    """A complete record over the budget a trace may compute at once (windows and rows still answer)."""


class LazyTrace(Trace):
    """A trace that keeps each attention's inputs and first pass, and computes what is asked on demand, on the lane
    of its call: complete records (an LRU under ``max_bytes``, at least the last one kept; a record above
    ``max_record_bytes`` is refused: ask for windows), windows and rows (only the rows asked for), and, after a fast
    first pass, the statistics pass (once per attention).

    Thread-safe: the app shares one LazyTrace between sessions that look at the same call.
    """

    lazy = True

    def __init__(self, inputs: Mapping[str, AttentionInputs], passes: Mapping[str, FirstPass], src_ids=None,
                 tgt_ids=None, key_facts=None, *, lane: Lane | None = None, max_bytes: int | None = None,
                 max_record_bytes: int | None = None):
        super().__init__(list(inputs), src_ids, tgt_ids, key_facts)
        self._inputs = dict(inputs)
        self._passes = dict(passes)
        self._cache: OrderedDict[str, AttentionRecord] = OrderedDict()
        self.max_bytes = max_bytes
        self.max_record_bytes = max_record_bytes
        self._lane = lane
        self._lock = threading.Lock()
        self._stats_locks: dict[str, threading.Lock] = {n: threading.Lock() for n in inputs}
        self._stage_overviews: dict[tuple[str, str], np.ndarray] = {}
        self.materialized = 0  # complete records computed (for tests and benchmarks)
        self.windows_computed = 0
        self.statistics_passes = 0

    @property
    def exact(self) -> bool:
        """Every first pass ran attention() itself (not the fast path)."""
        return all(fp.exact for fp in self._passes.values())

    def _compute(self, fn):
        def run():
            with torch.inference_mode():
                return fn()
        return run() if self._lane is None else self._lane.run(run)

    def inputs_of(self, name: str) -> AttentionInputs:
        return self._inputs[name]

    def shape(self, name: str) -> RecordShape:
        return self._inputs[name].shape

    def __getitem__(self, name: str) -> AttentionRecord:
        """The complete record, computed from the saved inputs by attention(); RecordTooLarge above
        ``max_record_bytes``."""
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        inputs = self._inputs[name]  # KeyError for an unknown name, as a Mapping should
        need = inputs.record_bytes()
        if self.max_record_bytes is not None and need > self.max_record_bytes:
            raise RecordTooLarge(
                f"{name}'s complete record would hold {need / 2**20:,.0f} MiB, over the "
                f"{self.max_record_bytes / 2**20:,.0f} MiB one record may take: its overview, windows and rows "
                "are computed instead")
        if self.max_bytes is not None:  # make room first, so that memory peaks at the budget, not above it
            with self._lock:
                while self._cache and sum(r.nbytes() for r in self._cache.values()) + need > self.max_bytes:
                    self._cache.popitem(last=False)
        record = self._compute(lambda: complete_record(inputs))
        with self._lock:
            self.materialized += 1
            self._cache[name] = record
            self._cache.move_to_end(name)
            if self.max_bytes is not None:
                while len(self._cache) > 1 and sum(r.nbytes() for r in self._cache.values()) > self.max_bytes:
                    self._cache.popitem(last=False)
        return record

    def cached_names(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    def window(self, name: str, head: int, rows: range | slice, cols: range | slice, stage: str = "weights",
               batch_index: int = 0) -> Window:
        """Computed by attention() for the first-pass blocks that hold ``rows``, one head, every key (the row's own
        softmax): bitwise what the call computed after an exact first pass; a cached complete record is sliced."""
        inputs = self._inputs[name]
        shape = inputs.shape
        rows, cols = clamp_range(rows, shape.tq), clamp_range(cols, shape.tk)
        h = checked_head(head, shape.n_heads)
        check_stage(stage)
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None:
            return FullTrace({name: cached}).window(name, h, rows, cols, stage, batch_index)
        blocks = inputs.blocks(rows)

        def compute():
            return [block_attention(inputs, blk, range(h, h + 1)) for blk in blocks]
        parts = self._compute(compute) if len(rows) and len(cols) else []
        with self._lock:
            self.windows_computed += 1
        values = []
        for blk, part in zip(blocks, parts, strict=True):
            lo, hi = max(rows.start, blk.start) - blk.start, min(rows.stop, blk.stop) - blk.start
            vals = stage_values(part, stage)
            values.append(np.asarray(to_numpy(vals[batch_index, 0, lo:hi, cols.start:cols.stop]), np.float32))
        block = np.concatenate(values, axis=0) if values else np.zeros((len(rows), len(cols)), np.float32)
        reasons = self.reasons(name, h, rows, cols, batch_index)
        return Window(name=name, head=h, stage=stage, rows=rows, cols=cols, values=block, reasons=reasons,
                      exact=self._passes[name].exact)

    def columns(self, name: str, cols: range, rows: range | None = None, batch_index: int = 0) -> np.ndarray:
        """Every head's weights on some key columns, computed by attention() on those columns only, each row
        normalised by its log-sum-exp from the first pass (to float rounding the row's own softmax)."""
        inputs = self._inputs[name]
        shape = inputs.shape
        rows = range(shape.tq) if rows is None else clamp_range(rows, shape.tq)
        cols = clamp_range(cols, shape.tk)
        lse = self._passes[name].lse.to(inputs.q.device)
        H = shape.n_heads
        groups = H // shape.n_kv_heads
        step = max(1, block_bytes() // max(1, H * len(cols) * 4 * 3))

        def compute():
            out = []
            for r0 in range(rows.start, rows.stop, step):
                blk = range(r0, min(rows.stop, r0 + step))
                k = repeat_kv(inputs.k[batch_index:batch_index + 1, :, cols.start:cols.stop], groups)
                v = repeat_kv(inputs.v[batch_index:batch_index + 1, :, cols.start:cols.stop], groups)
                mask, _ = block_mask(inputs, blk, range(H), cols)
                if mask is not None:
                    mask = mask[batch_index:batch_index + 1] if mask.shape[0] > 1 else mask
                bias = inputs.bias
                if bias is not None:
                    bias = row_block(bias, blk)[..., cols.start:cols.stop]
                rec = attention(inputs.q[batch_index:batch_index + 1, :, blk.start:blk.stop], k, v, mask,
                                scale=inputs.scale, bias=bias, softcap=inputs.softcap,
                                log_normalizer=lse[batch_index:batch_index + 1, :, blk.start:blk.stop, None])
                out.append(rec.weights[0].float().cpu())
            return torch.cat(out, dim=1).numpy() if out else np.zeros((H, 0, len(cols)), np.float32)
        return self._compute(compute)

    def reasons(self, name: str, head: int, rows: range, cols: range, batch_index: int = 0) -> dict[str, np.ndarray]:
        """{reason: (rows, cols) bool} of one head's forbidden cells, from the mask's facts (nothing computed)."""
        inputs = self._inputs[name]
        m = inputs.masks
        dev = inputs.q.device
        mask, knocked = block_mask(inputs, rows, range(head, head + 1), cols)
        codes, forbidden = reason_codes(mask, m.padding_view(cols), m.causal_view(rows, cols, dev),
                                        m.window_view(rows, cols, dev), knocked, batch_index,
                                        (1, len(rows), len(cols)))
        return reasons_from_codes(codes[0], forbidden[0])

    def _statistics(self, name: str) -> FirstPass:
        """The first pass, with its statistics pass run (once) after a fast first pass."""
        fp = self._passes[name]
        if fp.stats is not None:
            return fp
        with self._stats_locks[name]:
            fp = self._passes[name]
            if fp.stats is not None:
                return fp
            inputs = self._inputs[name]
            key = RecordName.parse(name).key_stack
            _, stats, _, ov_mean, _ = self._compute(lambda: statistics_pass(
                inputs, self.key_facts.get(key), with_context=False, overviews=True))
            fp = dataclasses.replace(fp, stats=stats, overview_mean=ov_mean)
            with self._lock:
                self._passes[name] = fp
                self.statistics_passes += 1
            return fp

    def statistics_ready(self, name: str) -> bool:
        """Whether ``row_stats(name)`` answers without a pass over the attention."""
        return self._passes[name].stats is not None

    def overview(self, name: str, how: str = "max", batch_index: int = 0) -> np.ndarray:
        """Kept from the first pass (the mean one, after a fast first pass, from the statistics pass)."""
        fp = self._passes[name] if how == "max" else self._statistics(name)
        return (fp.overview_max if how == "max" else fp.overview_mean)[batch_index]

    def overview_pool(self, name: str) -> int:
        return self._passes[name].factor

    def stage_overview(self, name: str, stage: str, batch_index: int = 0) -> np.ndarray:
        """Computed a block of rows at a time by attention() (every head), once per stage; the weights' max
        overview of the first pass answers without a pass when asked for "weights"."""
        check_stage(stage)
        key = (name, stage)
        with self._lock:
            if key in self._stage_overviews:
                return self._stage_overviews[key][batch_index]
        inputs = self._inputs[name]
        f = self._passes[name].factor

        def compute():
            parts = []
            for rows in inputs.blocks():
                rec = block_attention(inputs, rows)
                vals = stage_values(rec, stage)
                parts.append(torch.stack([block_max(vals[b], f) for b in range(vals.shape[0])]))
                del rec
            return torch.cat(parts, dim=2).cpu().numpy()
        values = self._compute(compute)
        with self._lock:
            self._stage_overviews[key] = values
        return values[batch_index]

    def block_reasons(self, name: str, batch_index: int = 0) -> dict[str, np.ndarray]:
        """From the mask's facts (nothing computed)."""
        return self._inputs[name].masks.block_reasons(self._passes[name].factor, batch_index)

    def lse(self, name: str) -> torch.Tensor:
        """(B, H, Tq) each row's log-sum-exp, from the first pass."""
        return self._passes[name].lse

    def row_stats(self, name: str) -> RowStats:
        """From the exact first pass; after a fast one, from the statistics pass (run once, on the call's lane)."""
        return self._statistics(name).stats

    def item(self, index: int, src_len: int | None = None, tgt_len: int | None = None) -> LazyTrace:
        """One batch element, cut to its real lengths (its inputs and first pass sliced, nothing recomputed)."""
        B = next(iter(self._inputs.values())).q.shape[0] if self._inputs else 1
        if B == 1 and index == 0 and src_len is None and tgt_len is None:
            return self
        S = src_len if src_len is not None else (None if self.src_ids is None else self.src_ids.shape[1])
        T = tgt_len if tgt_len is not None else (None if self.tgt_ids is None else self.tgt_ids.shape[1])
        inputs, passes = {}, {}
        for name, inp in self._inputs.items():
            n = RecordName.parse(name)
            tq = S if n.query_stack == "encoder" else T
            tk = S if n.key_stack == "encoder" else T
            inputs[name] = inp.item(index, tq, tk)
            fp = self._passes[name]
            r, c = overview_shape(tq, tk, fp.factor)
            passes[name] = FirstPass(
                lse=fp.lse[index:index + 1, :, :tq], overview_max=fp.overview_max[index:index + 1, :, :r, :c],
                factor=fp.factor, exact=fp.exact, stats=None if fp.stats is None else fp.stats.item(index, tq, tk),
                overview_mean=None if fp.overview_mean is None else fp.overview_mean[index:index + 1, :, :r, :c])
        src = None if self.src_ids is None else self.src_ids[index:index + 1, :S]
        tgt = None if self.tgt_ids is None else self.tgt_ids[index:index + 1, :T]
        facts = {s: [f[index if len(f) > 1 else 0]] for s, f in self.key_facts.items()}
        return LazyTrace(inputs, passes, src, tgt, facts, lane=self._lane, max_bytes=self.max_bytes,
                         max_record_bytes=self.max_record_bytes)

    def inputs_nbytes(self) -> int:
        """What the trace keeps: inputs, statistics and overviews (complete records not counted)."""
        kept = sum(i.nbytes() for i in self._inputs.values())
        for fp in self._passes.values():
            kept += fp.lse.numel() * 4 + fp.overview_max.nbytes
            kept += 0 if fp.stats is None else fp.stats.nbytes()
            kept += 0 if fp.overview_mean is None else fp.overview_mean.nbytes
        with self._lock:
            kept += sum(v.nbytes for v in self._stage_overviews.values())
        return kept

    def nbytes(self) -> int:
        """What it keeps plus the ceiling of its record cache."""
        return self.inputs_nbytes() + (self.max_bytes or 0)


__all__ = ["LazyTrace", "RecordTooLarge"]
