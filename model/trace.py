"""The trace: a read-only mapping from attention names to the records of one forward call."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd
import torch

from .attention import AttentionRecord, held_bytes

STACKS = ("encoder", "decoder")
KINDS = ("self_attn", "cross_attn")


def record_name(stack: str, layer: int, kind: str) -> str:
    """The trace key of one attention, e.g. ``decoder.1.cross_attn``."""
    return f"{stack}.{layer}.{kind}"


def parse_name(name: str) -> tuple[str, int, str]:
    """``"decoder.1.cross_attn"`` -> ``("decoder", 1, "cross_attn")``."""
    stack, layer, kind = name.split(".")
    return stack, int(layer), kind


class Trace(Mapping):
    """Read-only mapping ``encoder.{i}.self_attn`` / ``decoder.{i}.self_attn`` / ``decoder.{i}.cross_attn``
    -> AttentionRecord, plus the ids the call saw (``src_ids`` (B, S), ``tgt_ids`` (B, T)).

    ``model.capture.LazyTrace`` is the same mapping with each record computed on demand."""

    lazy = False

    def __init__(self, records: Mapping[str, AttentionRecord], src_ids=None, tgt_ids=None):
        self._records = MappingProxyType(dict(records))
        self.src_ids = src_ids
        self.tgt_ids = tgt_ids

    def __getitem__(self, name: str) -> AttentionRecord:
        return self._records[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"Trace({list(self._records)})"

    def layers(self, stack: str, kind: str) -> list[str]:
        """Names of one stack/kind in layer order, e.g. all ``decoder.*.cross_attn``."""
        return [n for n in self._records if parse_name(n)[0] == stack and parse_name(n)[2] == kind]

    def _map(self, fn) -> "Trace":
        ids = [None if x is None else fn(x) for x in (self.src_ids, self.tgt_ids)]
        return Trace({n: r.map(fn) for n, r in self._records.items()}, *ids)

    def to(self, device: str | torch.device) -> "Trace":
        return self._map(lambda t: t.to(device))

    def numpy(self) -> "Trace":
        """A copy with every tensor as a NumPy array on the CPU, ready for plotting."""
        return self._map(_to_numpy)

    def item(self, index: int, src_len: int | None = None, tgt_len: int | None = None) -> "Trace":
        """One batch element, cut to its real lengths (drops the padding added for batching)."""
        S = src_len if src_len is not None else (None if self.src_ids is None else self.src_ids.shape[1])
        T = tgt_len if tgt_len is not None else (None if self.tgt_ids is None else self.tgt_ids.shape[1])
        records = {}
        for name, rec in self._records.items():
            q_axis, k_axis = record_axes(name)
            tq = S if q_axis == "encoder" else T
            tk = S if k_axis == "encoder" else T
            records[name] = _slice_record(rec, index, tq, tk)
        src = None if self.src_ids is None else self.src_ids[index:index + 1, :S]
        tgt = None if self.tgt_ids is None else self.tgt_ids[index:index + 1, :T]
        return Trace(records, src, tgt)

    def to_dataframe(self, src_tokens: Sequence[str] | None = None, tgt_tokens: Sequence[str] | None = None,
                     names: Sequence[str] | None = None, batch_index: int = 0) -> pd.DataFrame:
        """Long table, one row per (attention, head, query, key) of one batch element.

        Columns: stack, layer, kind, head, query_pos, query_token, key_pos, key_token,
        score, scaled, masked_score, weight, masked (True = the mask forbids this key),
        mask_reason ("padding", "causal", "window", combinations joined by "+", "other", or "").
        """
        frames = [record_to_dataframe(self._records[n], n, src_tokens, tgt_tokens, batch_index)
                  for n in (names if names is not None else self._records)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _to_numpy(x):
    if isinstance(x, np.ndarray):
        return x
    x = x.detach()
    return (x.float() if x.dtype == torch.bfloat16 else x).cpu().numpy()


def _slice_record(rec: AttentionRecord, b: int, tq: int, tk: int) -> AttentionRecord:
    def cut(name, t):
        if t is None:
            return None
        if name in ("query_input", "concat", "output"):
            return t[b:b + 1, :tq]
        if name == "key_input":
            return t[b:b + 1, :tk]
        if name in ("q", "context"):
            return t[b:b + 1, :, :tq]
        if name in ("k", "v"):
            return t[b:b + 1, :, :tk]
        if name == "ablated":
            return t[b:b + 1] if t.dim() == 2 else t
        # (B|1, H|1, Tq|1, Tk) matrices and broadcastable masks
        bb = slice(b, b + 1) if t.shape[0] > 1 else slice(None)
        qq = slice(None, tq) if t.shape[2] > 1 else slice(None)
        return t[bb, :, qq, :tk]
    return AttentionRecord(**{n: cut(n, getattr(rec, n)) for n in rec.__dataclass_fields__})


def record_axes(name: str) -> tuple[str, str]:
    """Which stack's tokens are on the query and key axes: ("encoder" | "decoder", "encoder" | "decoder")."""
    stack, _, kind = parse_name(name)
    return stack, ("encoder" if kind == "cross_attn" else stack)


MASK_REASONS = ("padding", "causal", "window")  # the masks a record keeps apart, in the order names join them


def _may_attend(mask, batch_index: int, shape: tuple[int, int, int]) -> np.ndarray:
    """A broadcastable bool "may attend" mask (or None = everything) -> a read-only (H, Tq, Tk) view."""
    if mask is None:
        return np.broadcast_to(np.ones((1, 1, 1), dtype=bool), shape)
    m = _to_numpy(mask)
    return np.broadcast_to(m[batch_index if m.shape[0] > 1 else 0], shape)


def allowed_matrix(rec: AttentionRecord, batch_index: int = 0) -> np.ndarray:
    """(H, Tq, Tk) bool, True where the model's mask lets the query attend to the key (a broadcast view)."""
    _, H, Tq, Tk = rec.weights.shape
    return _may_attend(rec.mask, batch_index, (H, Tq, Tk))


def _reason_codes(rec: AttentionRecord, batch_index: int, heads: slice) -> tuple[np.ndarray, np.ndarray]:
    """-> (codes (h, Tq, Tk) uint8, forbidden (h, Tq, Tk) bool): bit i set where MASK_REASONS[i] forbids a
    forbidden cell; a forbidden cell with no bit set is forbidden for another reason."""
    _, H, Tq, Tk = rec.weights.shape
    shape = (H, Tq, Tk)
    forbidden = ~_may_attend(rec.mask, batch_index, shape)[heads]
    codes = np.zeros(forbidden.shape, dtype=np.uint8)
    for bit, mask in enumerate((rec.padding_mask, rec.causal_mask, rec.window_mask)):
        if mask is not None:
            codes |= ((~_may_attend(mask, batch_index, shape)[heads]) & forbidden).astype(np.uint8) << bit
    return codes, forbidden


def _reason_name(code: int) -> str:
    return "+".join(r for bit, r in enumerate(MASK_REASONS) if code >> bit & 1) or "other"


def forbidden_by_reason(rec: AttentionRecord, head: int = 0, batch_index: int = 0) -> dict[str, np.ndarray]:
    """{reason: (Tq, Tk) bool} for one head: the cells the mask forbids, grouped by why (see
    ``mask_reason_matrix`` for the names). Empty when the head may attend everywhere. Bit arithmetic on bool
    arrays: ~10 ms for a 1024 x 1024 head."""
    H = rec.weights.shape[1]
    h = min(max(head, 0), H - 1)
    codes, forbidden = _reason_codes(rec, batch_index, slice(h, h + 1))
    codes, forbidden = codes[0], forbidden[0]
    if not forbidden.any():
        return {}
    present = np.flatnonzero(np.bincount(codes[forbidden], minlength=1 << len(MASK_REASONS)))
    return {_reason_name(int(c)): forbidden & (codes == c) for c in present}


def mask_reason_matrix(rec: AttentionRecord, batch_index: int = 0) -> np.ndarray:
    """(H, Tq, Tk) strings: why each cell is masked ("padding", "causal", "window", joined by "+" when several
    apply, "other" when the model's mask forbids a cell none of those explain), "" where the query may attend.
    (An object array: for one head's map use ``forbidden_by_reason``; for "may attend", ``allowed_matrix``.)"""
    codes, forbidden = _reason_codes(rec, batch_index, slice(None))
    names = np.array([_reason_name(c) for c in range(1 << len(MASK_REASONS))], dtype=object)
    return np.where(forbidden, names[codes], "").astype(object)


def record_to_dataframe(rec: AttentionRecord, name: str, src_tokens: Sequence[str] | None = None,
                        tgt_tokens: Sequence[str] | None = None, batch_index: int = 0) -> pd.DataFrame:
    """Long DataFrame of one record (see ``Trace.to_dataframe`` for the columns)."""
    stack, layer, kind = parse_name(name)
    weights = _to_numpy(rec.weights)[batch_index]  # (H, Tq, Tk)
    H, Tq, Tk = weights.shape
    q_axis, k_axis = record_axes(name)
    q_tokens = src_tokens if q_axis == "encoder" else tgt_tokens
    k_tokens = src_tokens if k_axis == "encoder" else tgt_tokens
    q_tokens = list(q_tokens)[:Tq] if q_tokens is not None else [str(i) for i in range(Tq)]
    k_tokens = list(k_tokens)[:Tk] if k_tokens is not None else [str(i) for i in range(Tk)]
    reason = mask_reason_matrix(rec, batch_index)
    head, qpos, kpos = np.meshgrid(np.arange(H), np.arange(Tq), np.arange(Tk), indexing="ij")
    return pd.DataFrame({
        "stack": stack, "layer": layer, "kind": kind,
        "head": head.ravel(),
        "query_pos": qpos.ravel(), "query_token": np.asarray(q_tokens, dtype=object)[qpos.ravel()],
        "key_pos": kpos.ravel(), "key_token": np.asarray(k_tokens, dtype=object)[kpos.ravel()],
        "score": _to_numpy(rec.scores)[batch_index].ravel(),
        "scaled": _to_numpy(rec.scaled)[batch_index].ravel(),
        "masked_score": _to_numpy(rec.masked)[batch_index].ravel(),
        "weight": weights.ravel(),
        "masked": (reason != "").ravel(),
        "mask_reason": reason.ravel(),
    })


def record_bytes(config, tq: int, tk: int, batch: int = 1, dtype_bytes: int = 4) -> int:
    """Upper bound on one record's bytes: query_input, q, context, concat, output (Tq x d_model),
    key_input, k, v (Tk x d_model), four (H, Tq, Tk) matrices (scores, scaled, masked, weights), bool masks."""
    d, H = config.d_model, config.n_heads
    vectors = tq * d * 5 + tk * d * 3
    matrices = 4 * H * tq * tk
    return batch * ((vectors + matrices) * dtype_bytes + tq * tk + tk)


def estimate_capture_bytes(config, src_len: int, tgt_len: int, batch: int = 1, dtype_bytes: int = 4) -> int:
    """Bytes a capture=True forward keeps in its trace, from the shapes alone (before running it)."""
    return (config.n_encoder_layers * record_bytes(config, src_len, src_len, batch, dtype_bytes)
            + config.n_decoder_layers * (record_bytes(config, tgt_len, tgt_len, batch, dtype_bytes)
                                         + record_bytes(config, tgt_len, src_len, batch, dtype_bytes)))


def trace_nbytes(trace: "Trace") -> int:
    """Bytes actually held by a trace's tensors (shared storages counted once)."""
    return held_bytes(getattr(rec, name) for rec in trace.values() for name in rec.__dataclass_fields__)
