"""One call's capture: which attention records it keeps, in full, lazily or not at all, and which heads it ablates.

Every model calls ``Recorder.attend`` at each attention (the own transformer passes the recorder down its
forward; transformers models reach it through a ContextVar set for the duration of one call, see model.hf), so
the recorder lives exactly as long as the call: nothing is stored on the shared modules.

- full capture: each wanted attention keeps its complete AttentionRecord;
- lazy capture: each attention keeps only its inputs (q, k, v, mask, ...: vectors, not T x T matrices) and a
  max-pooled uint8 overview of its weights; ``LazyTrace[name]`` recomputes the complete record from those inputs
  through the same ``attention()`` call, so it is bitwise the record a full capture would hold;
- ablation: a head's context is zeroed or replaced by its mean over positions before the output projection.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .attention import AttentionRecord, attention, fast_attention, held_bytes
from .trace import Trace

ABLATION_MODES = ("zero", "mean")  # replace a head's context by 0, or by its mean over the real query positions
OVERVIEW_SIZE = 64  # lazy overviews are max-pooled to at most this many rows and columns

# name -> {head: mode}; a list of those gives each batch element its own ablation (one batched pass per layer)
Ablations = Mapping[str, Mapping[int, str]] | Sequence[Mapping[str, Mapping[int, str]]]

@dataclass(frozen=True)
class AttentionInputs:
    """What one attention call received: enough to recompute its complete record, bitwise."""

    q: torch.Tensor  # (B, H, Tq, d_k)
    k: torch.Tensor  # (B, H_kv, Tk, d_k)
    v: torch.Tensor  # (B, H_kv, Tk, d_v)
    mask: torch.Tensor | None  # bool, True = may attend
    scale: float | None
    bias: torch.Tensor | None
    softcap: float | None
    query_input: torch.Tensor | None
    key_input: torch.Tensor | None
    padding_mask: torch.Tensor | None
    causal_mask: torch.Tensor | None
    window_mask: torch.Tensor | None
    query_valid: torch.Tensor | None  # bool (B, Tq): real query positions (for mean ablation)
    ablation: tuple[dict[int, str], ...] | None  # per batch element
    out_proj: Callable[[torch.Tensor], torch.Tensor] | None  # the module's output projection (never mutated)

    def nbytes(self) -> int:
        return held_bytes(getattr(self, f.name) for f in dataclasses.fields(self))

    def record_bytes(self) -> int:
        """About what the complete record adds to these inputs: its (B, H, Tq, Tk) matrices (scores, scaled,
        masked, weights, and adjusted when a bias or softcap applies) and its context, concat and output."""
        B, H, Tq, d_k = self.q.shape
        Tk, d_v = self.k.shape[-2], self.v.shape[-1]
        matrices = 4 + (self.bias is not None or self.softcap is not None)
        return (matrices * B * H * Tq * Tk + 3 * B * H * Tq * d_v) * self.q.element_size()


def validate_ablations(ablations: Ablations | None, names: Collection[str], n_heads: Mapping[str, int]) -> None:
    """A clear ValueError for an unknown attention name, head or mode."""
    if ablations is None:
        return
    for spec in ([ablations] if isinstance(ablations, Mapping) else list(ablations)):
        for name, heads in spec.items():
            if name not in names:
                raise ValueError(f"cannot ablate {name!r}: this model has {sorted(names)}")
            for head, mode in heads.items():
                if not 0 <= int(head) < n_heads[name]:
                    raise ValueError(f"{name} has heads 0..{n_heads[name] - 1}, not {head}")
                if mode not in ABLATION_MODES:
                    raise ValueError(f"ablation must be one of {ABLATION_MODES}, got {mode!r}")


def ablate(context: torch.Tensor, per_item: tuple[dict[int, str], ...], query_valid: torch.Tensor | None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """context (B, H, Tq, d_v) with the named heads zeroed or set to their mean over the real query positions.

    Returns (new context, ablated (B, H) bool).
    """
    B, H, Tq, _ = context.shape
    out = context.clone()
    ablated = torch.zeros(B, H, dtype=torch.bool)
    for b in range(B):
        spec = per_item[b] if len(per_item) > 1 else per_item[0]
        valid = None if query_valid is None else query_valid[b if query_valid.shape[0] > 1 else 0]
        for head, mode in spec.items():
            ablated[b, head] = True
            if mode == "zero":
                out[b, head] = 0
            else:
                rows = context[b, head] if valid is None else context[b, head][valid]
                out[b, head] = rows.mean(0, keepdim=True) if rows.shape[0] else 0
    return out, ablated


def pooled_overview(weights: torch.Tensor, size: int = OVERVIEW_SIZE) -> np.ndarray:
    """(H, Tq, Tk) weights -> (H, <= size, <= size) uint8: max over each block, 255 = weight 1.

    Max-pooling keeps a single strong key visible in a thumbnail (a mean would wash it out).
    """
    w = weights.detach().float()
    H, Tq, Tk = w.shape
    out = F.adaptive_max_pool2d(w[None], (min(Tq, size), min(Tk, size)))[0]
    return torch.round(out.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()


class Recorder:
    """What one call keeps of its attentions.

    ``capture``: True (every attention), False (none) or a collection of names; ``lazy``: keep inputs and
    overviews instead of full records (see the module docstring); ``ablations``: heads to ablate in this call.
    """

    def __init__(self, capture: bool | Collection[str] = True, *, lazy: bool = False,
                 ablations: Ablations | None = None):
        self.capture_all = capture is True
        self.names = frozenset() if isinstance(capture, bool) else frozenset(capture)
        self.lazy = lazy
        if ablations is None:
            self.ablations: tuple[Mapping[str, Mapping[int, str]], ...] = ()
        elif isinstance(ablations, Mapping):
            self.ablations = (ablations,)
        else:
            self.ablations = tuple(ablations)
        self.records: dict[str, AttentionRecord] = {}
        self.inputs: dict[str, AttentionInputs] = {}
        self.overviews: dict[str, np.ndarray] = {}

    def wants(self, name: str) -> bool:
        return self.lazy or self.capture_all or name in self.names

    def ablation_for(self, name: str) -> tuple[dict[int, str], ...] | None:
        per_item = tuple({int(h): m for h, m in spec.get(name, {}).items()} for spec in self.ablations)
        return per_item if any(per_item) else None

    def attend(self, name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, *,
               scale: float | None = None, bias: torch.Tensor | None = None, softcap: float | None = None,
               query_input: torch.Tensor | None = None, key_input: torch.Tensor | None = None,
               padding_mask: torch.Tensor | None = None, causal_mask: torch.Tensor | None = None,
               window_mask: torch.Tensor | None = None, query_valid: torch.Tensor | None = None,
               out_proj: Callable[[torch.Tensor], torch.Tensor] | None = None,
               fast: Callable[[], torch.Tensor] | None = None, finish_later: bool = False) -> torch.Tensor:
        """Run one attention of the model; returns the context (B, H, Tq, d_v) the model goes on with.

        ``fast`` computes the same context without intermediates (SDPA) for attentions nobody asked to record.
        ``finish_later``: the caller computes the concat and the output itself and hands them to ``finish``
        (the project's own modules); otherwise the record gets ``out_proj`` applied to its concat.
        """
        ablation = self.ablation_for(name) if self.ablations else None
        if not self.wants(name):
            if fast is not None:
                context = fast()
            elif scale is None and bias is None and softcap is None and q.shape[1] == k.shape[1]:
                context = fast_attention(q, k, v, mask)
            else:
                context = attention(q, k, v, mask, scale=scale, bias=bias, softcap=softcap).context
            return context if ablation is None else ablate(context, ablation, query_valid)[0]
        inputs = AttentionInputs(q=q, k=k, v=v, mask=mask, scale=scale, bias=bias, softcap=softcap,
                                 query_input=query_input, key_input=key_input, padding_mask=padding_mask,
                                 causal_mask=causal_mask, window_mask=window_mask, query_valid=query_valid,
                                 ablation=ablation, out_proj=out_proj)
        if self.lazy:  # weights for the overview and the context; the full record comes on demand
            record = complete_record(inputs, with_output=False, keep_intermediates=False)
        else:
            record = complete_record(inputs, with_output=not finish_later)
        if self.lazy:
            self.inputs[name] = inputs
            self.overviews[name] = pooled_overview(record.weights[0])
        else:
            self.records[name] = record
        return record.context

    def finish(self, name: str, concat: torch.Tensor, output: torch.Tensor) -> None:
        """The concat and the output the module computed from this attention's context (full capture only: a lazy
        record recomputes them with the module's output projection, bitwise the same)."""
        if name in self.records:
            self.records[name] = dataclasses.replace(self.records[name], concat=concat, output=output)

    def trace(self, src_ids: torch.Tensor | None = None, tgt_ids: torch.Tensor | None = None,
              max_bytes: int | None = None) -> Trace:
        """The call's trace: full records, or a LazyTrace that computes them on demand."""
        if self.lazy:
            return LazyTrace(self.inputs, self.overviews, src_ids, tgt_ids, max_bytes=max_bytes)
        return Trace(self.records, src_ids, tgt_ids)


def complete_record(inputs: AttentionInputs, with_output: bool = True,
                    keep_intermediates: bool = True) -> AttentionRecord:
    """The full AttentionRecord of one attention from its inputs: the same ``attention()`` call as the model's.
    ``with_output=False`` leaves concat and output to the caller (``Recorder.finish``);
    ``keep_intermediates=False`` keeps only the weights and the context (see ``attention``)."""
    rec = attention(inputs.q, inputs.k, inputs.v, inputs.mask, scale=inputs.scale, bias=inputs.bias,
                    softcap=inputs.softcap, keep_intermediates=keep_intermediates)
    context, ablated = rec.context, None
    if inputs.ablation is not None:
        context, ablated = ablate(context, inputs.ablation, inputs.query_valid)
    concat = output = None
    if with_output:
        B, H, Tq, d_v = context.shape
        concat = context.transpose(1, 2).reshape(B, Tq, H * d_v)  # (B, Tq, H * d_v), as the module reshapes it
        if inputs.out_proj is not None:
            output = inputs.out_proj(concat)  # (B, Tq, d_model): the module's own W_o on the same tensor
    return dataclasses.replace(rec, context=context, query_input=inputs.query_input, key_input=inputs.key_input,
                               padding_mask=inputs.padding_mask, causal_mask=inputs.causal_mask,
                               window_mask=inputs.window_mask, concat=concat, output=output, ablated=ablated)


class LazyTrace(Trace):
    """A trace whose records are recomputed on demand from each attention's saved inputs (bitwise equal to a full
    capture), with an LRU of complete records under ``max_bytes`` (at least the last one is kept).

    Thread-safe: the app shares one LazyTrace between sessions that look at the same call.
    """

    lazy = True

    def __init__(self, inputs: Mapping[str, AttentionInputs], overviews: Mapping[str, np.ndarray],
                 src_ids=None, tgt_ids=None, max_bytes: int | None = None):
        super().__init__({}, src_ids, tgt_ids)
        self._inputs = dict(inputs)
        self._overviews = dict(overviews)
        self._cache: OrderedDict[str, AttentionRecord] = OrderedDict()
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self.materialized = 0  # how many records were computed (for tests and benchmarks)

    def __getitem__(self, name: str) -> AttentionRecord:
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        inputs = self._inputs[name]  # KeyError for an unknown name, as a Mapping should
        if self._max_bytes is not None:  # make room first, so that memory peaks at the budget, not above it
            with self._lock:
                need = inputs.record_bytes()
                while self._cache and sum(r.nbytes() for r in self._cache.values()) + need > self._max_bytes:
                    self._cache.popitem(last=False)
        with torch.inference_mode():
            record = complete_record(inputs)
        with self._lock:
            self.materialized += 1
            self._cache[name] = record
            self._cache.move_to_end(name)
            if self._max_bytes is not None:
                while len(self._cache) > 1 and sum(r.nbytes() for r in self._cache.values()) > self._max_bytes:
                    self._cache.popitem(last=False)
        return record

    def __iter__(self) -> Iterator[str]:
        return iter(self._inputs)

    def __len__(self) -> int:
        return len(self._inputs)

    def __contains__(self, name: object) -> bool:
        return name in self._inputs

    def __repr__(self) -> str:
        return f"LazyTrace({list(self._inputs)})"

    def overview(self, name: str) -> np.ndarray:
        """(H, <= 64, <= 64) uint8 max-pooled weights, kept from the first pass (255 = weight 1)."""
        return self._overviews[name]

    @property
    def max_bytes(self) -> int | None:
        """The record cache's budget (it always keeps the last record, even a larger one)."""
        return self._max_bytes

    def inputs_nbytes(self) -> int:
        return sum(i.nbytes() for i in self._inputs.values())

    def cached_names(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    def _map(self, fn) -> Trace:
        return Trace({n: self[n].map(fn) for n in self._inputs}, *[None if x is None else fn(x)
                                                                   for x in (self.src_ids, self.tgt_ids)])

    def item(self, index: int, src_len: int | None = None, tgt_len: int | None = None) -> Trace:
        if index == 0 and (self.src_ids is None or self.src_ids.shape[0] == 1) and \
                (self.tgt_ids is None or self.tgt_ids.shape[0] == 1):
            return self
        raise NotImplementedError("a lazy trace is recorded for one input at a time (batch size 1)")


def overview_of(trace: Trace, name: str) -> np.ndarray:
    """The uint8 overview of one record: kept by a lazy trace, pooled from the weights of a full one."""
    if getattr(trace, "lazy", False):
        return trace.overview(name)
    w = trace[name].weights
    w = torch.as_tensor(np.asarray(w)) if not isinstance(w, torch.Tensor) else w
    return pooled_overview(w[0])


def lazy_capture_bytes(n_records: int, tq: int, tk: int, d_model: int, n_heads: int, d_k: int) -> int:
    """Rough bytes a lazy capture keeps per call: q, k, v, inputs (vectors) and the overviews, per record."""
    vectors = (tq * n_heads * d_k + 2 * tk * n_heads * d_k + tq * d_model + tk * d_model) * 4
    return n_records * (vectors + n_heads * min(tq, OVERVIEW_SIZE) * min(tk, OVERVIEW_SIZE)) + tq * tk


__all__ = ["ABLATION_MODES", "AttentionInputs", "LazyTrace", "OVERVIEW_SIZE", "Recorder", "ablate",
           "complete_record", "lazy_capture_bytes", "overview_of", "pooled_overview", "validate_ablations"]
