"""One call's capture: which attention records it keeps (in full, lazily or not at all), what it changes
(ablations, knockouts, patches) and, when asked, the residual stream after every block (for the logit lens).

Every model calls ``Recorder.attend`` at each attention (the own transformer passes the recorder down its forward;
transformers models reach it through a ContextVar set for the duration of one call, see model.hf), so one
recorder per call holds everything that call captured: nothing is kept on the shared model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping

import torch

from ..core.attention import AttentionRecord, attention, fast_attention
from ..core.interventions import Interventions, ablate, knocked_cells
from ..core.masks import MaskSpec
from ..core.names import RecordName
from ..core.pooling import overview_factor
from ..core.rowstats import KeyFacts
from ..runtime import Lane
from .inputs import AttentionInputs, choose_block_rows, complete_record
from .lazy import LazyTrace
from .passes import FAST_ABOVE, FirstPass, can_run_fast, exact_first_pass, fast_first_pass, knocked_context
from .trace import FullTrace, Trace

KNOCKED_BLOCK_SHARE = 4  # an attention knocked out but not recorded runs in blocks of this share of a pass's rows:
#                          nothing is kept from them, and a what-if's forward holds less beside the traced call


class Recorder:
    """What one call keeps of its attentions, and what it changes in them.

    ``capture``: True (every attention), False (none) or a collection of names; ``lazy``: keep inputs, row
    statistics and overviews (a first pass in blocks of rows) instead of full records; ``interventions``: ablations
    and knockouts of this call; ``hidden_states``: keep the residual stream after each block; ``key_facts``: per
    stack, per batch element, what the statistics need to know about the tokens; ``statistics``: whether an exact
    lazy first pass computes the per-row statistics during the call (else the trace computes them when first asked).
    """

    def __init__(self, capture: bool | Collection[str] = True, *, lazy: bool = False,
                 interventions: Interventions | None = None, hidden_states: bool = False,
                 key_facts: Mapping[str, list[KeyFacts]] | None = None, overviews: bool = True,
                 keep_contexts: bool = False, fast_above: int = FAST_ABOVE, statistics: bool = True):
        self.capture_all = capture is True
        self.names = frozenset() if isinstance(capture, bool) else frozenset(capture)
        self.lazy = lazy
        self.interventions = interventions or Interventions()
        self.keep_hidden = hidden_states
        self.key_facts = dict(key_facts or {})
        self.overviews = overviews
        self.keep_contexts = keep_contexts
        self.fast_above = fast_above  # a lazy first pass over more query rows runs the model's fast path
        self.statistics = statistics  # an exact lazy first pass computes the row statistics now (else when asked)
        self.contexts: dict[str, torch.Tensor] = {}  # name -> (B, H, Tq, d_v) the context each attention passed on
        self.records: dict[str, AttentionRecord] = {}
        self.inputs: dict[str, AttentionInputs] = {}
        self.passes: dict[str, FirstPass] = {}
        self.hidden: dict[str, list[torch.Tensor]] = {}  # stack -> [embeddings, after block 0, ...], (B, T, d)
        self.calls: list[str] = []  # names of the attentions that ran, in order

    def wants(self, name: str) -> bool:
        return self.capture_all or name in self.names

    def record_hidden(self, stack: str, x: torch.Tensor) -> None:
        """The residual stream of ``stack`` at the next depth (the embeddings first, then after each block)."""
        if self.keep_hidden:
            self.hidden.setdefault(stack, []).append(x)

    def attend(self, name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masks: MaskSpec, *,
               scale: float | None = None, bias: torch.Tensor | None = None, softcap: float | None = None,
               query_input: torch.Tensor | None = None, key_input: torch.Tensor | None = None,
               query_valid: torch.Tensor | None = None, out_proj: Callable[[torch.Tensor], torch.Tensor] | None = None,
               fast: Callable[[], torch.Tensor] | None = None, finish_later: bool = False) -> torch.Tensor:
        """Run one attention of the model; returns the context (B, H, Tq, d_v) the model goes on with.

        ``masks`` describes the mask (model.core.masks). ``fast`` computes the same context without intermediates (the
        model's SDPA) for attentions nobody asked to record. ``finish_later``: the caller computes the concat and
        the output itself and hands them to ``finish`` (the project's own modules); otherwise the record gets
        ``out_proj`` applied to its concat.
        """
        self.calls.append(name)
        context = self._attend(name, q, k, v, masks, scale=scale, bias=bias, softcap=softcap,
                               query_input=query_input, key_input=key_input, query_valid=query_valid,
                               out_proj=out_proj, fast=fast, finish_later=finish_later)
        if self.keep_contexts:
            self.contexts[name] = context
        return context

    def _attend(self, name, q, k, v, masks: MaskSpec, *, scale, bias, softcap, query_input, key_input,
                query_valid, out_proj, fast, finish_later) -> torch.Tensor:
        ablation = self.interventions.ablation_for(name)
        knockouts = self.interventions.knockouts_for(name)
        if not self.wants(name) and knockouts is None:
            if fast is not None:
                context = fast()
            else:
                mask = masks.allowed(range(masks.tq), range(masks.tk), q.device)
                if scale is None and bias is None and softcap is None and q.shape[1] == k.shape[1]:
                    context = fast_attention(q, k, v, mask)
                else:
                    context = attention(q, k, v, mask, scale=scale, bias=bias, softcap=softcap).context
            return context if ablation is None else ablate(context, ablation, query_valid)[0]
        B, H, Tq, _ = q.shape
        Tk = k.shape[2]
        knocked = {} if knockouts is None else knocked_cells(knockouts, B, Tq, Tk)
        factor = overview_factor(Tq, Tk)
        inputs = AttentionInputs(
            name=name, q=q, k=k, v=v, masks=masks, scale=scale, bias=bias, softcap=softcap, query_input=query_input,
            key_input=key_input, query_valid=query_valid, ablation=ablation, knocked=knocked, out_proj=out_proj,
            block_rows=choose_block_rows(B, H, Tq, Tk, factor) if self.lazy else
            max(1, choose_block_rows(B, H, Tq, Tk) // KNOCKED_BLOCK_SHARE) if not self.wants(name) else Tq)
        if not self.wants(name):  # knocked out but not recorded: the context only, a block of rows at a time
            return knocked_context(inputs)
        if self.lazy:
            key_stack = RecordName.parse(name).key_stack
            if Tq > self.fast_above and can_run_fast(inputs):
                context, fp = fast_first_pass(inputs, overviews=self.overviews)
                inputs = dataclasses.replace(inputs, context=context)
            else:
                context, fp = exact_first_pass(inputs, self.key_facts.get(key_stack), overviews=self.overviews,
                                               statistics=self.statistics)
            self.inputs[name] = inputs
            self.passes[name] = fp
            return context
        record = complete_record(inputs, with_output=not finish_later)
        self.records[name] = record
        return record.context

    def finish(self, name: str, concat: torch.Tensor, output: torch.Tensor) -> None:
        """The concat and the output the module computed from this attention's context (full capture only: a lazy
        record recomputes them with the module's output projection, bitwise the same)."""
        if name in self.records:
            self.records[name] = dataclasses.replace(self.records[name], concat=concat, output=output)

    def trace(self, src_ids: torch.Tensor | None = None, tgt_ids: torch.Tensor | None = None, *,
              lane: Lane | None = None, max_bytes: int | None = None, max_record_bytes: int | None = None) -> Trace:
        """The call's trace: full records, or a LazyTrace that computes them on demand (on ``lane``)."""
        if self.lazy:
            return LazyTrace(self.inputs, self.passes, src_ids, tgt_ids, self.key_facts, lane=lane,
                             max_bytes=max_bytes, max_record_bytes=max_record_bytes)
        return FullTrace(self.records, src_ids, tgt_ids, key_facts=self.key_facts)


__all__ = ["Recorder"]
