"""The page's shared records: the model picked, the inputs, the selection, and the context a view draws from.

Built by the sidebar (ModelPick, Inputs) and the inspector (Selection, Context), read by every view.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import viz
from model import RecordName, settings

from .tracing import Traced

MAX_SOURCE_CHARS = settings.count("INSPECTOR_MAX_SOURCE_CHARS")  # the deployment's cap (server-side)
MAX_TARGET_CHARS = 5000  # a typed target's cap
TARGET_MODES = ("generate greedily", "type a target (teacher forcing)")  # an encoder-decoder's two ways to a target

@dataclass(frozen=True)
class ModelPick:
    """The model the sidebar opened."""

    path: str  # the directory loaded (a snapshot's own directory when one is picked)
    base: str  # the model the snapshots belong to
    device: str
    pipe: object
    step: int | None  # the snapshot's training step; None = the final model


@dataclass(frozen=True)
class Inputs:
    """What the sidebar's input section holds."""

    source: str
    target: str | None  # None: generate (encoder-decoder), or no target (other kinds)
    max_new: int  # tokens to generate (encoder-decoder: the cap; decoder-only: how many to add, 0 = none)


@dataclass(frozen=True)
class Selection:
    """What the selectors above the view chose."""

    kind: str  # the attention kind: "cross", "encoder self", "decoder masked self"
    layer: int
    head: int  # -1 = all heads
    stage: str
    view: str

    @property
    def record(self) -> RecordName:
        return RecordName.of_kind(self.kind, self.layer)

    @property
    def name(self) -> str:
        return str(self.record)

    @property
    def stack(self) -> str:
        return self.record.stack

    @property
    def sublayer(self) -> str:
        return self.record.sublayer


@dataclass(frozen=True)
class Context:
    """Everything a view needs: the model, the traced call, the selection, and token labels."""

    pick: ModelPick
    traced: Traced
    inputs: Inputs
    sel: Selection
    layers: list[int]

    @property
    def pipe(self):
        return self.pick.pipe

    @property
    def info(self):
        return self.pick.pipe.info

    @property
    def result(self):
        return self.traced.result

    @cached_property
    def rec(self):
        return self.traced.record(self.sel.name)

    def tokens(self, stack: str) -> list[str]:
        return self.result.tokens_for(stack)

    def labels(self, stack: str, produces: bool = True) -> list[str]:
        """Axis labels of one stack; decoder rows also say what they produce ("0·[BOS] → 2")."""
        toks = self.tokens(stack)
        if stack == "decoder" and produces and self.result.output_tokens:
            return viz.token_labels(toks, self.result.output_tokens)
        return viz.token_labels(toks)

    def axes_for(self, name: str) -> tuple[list[str], list[str], list[str], list[str]]:
        """(query tokens, key tokens, query labels, key labels) of one record."""
        n = RecordName.parse(name)
        return (self.tokens(n.query_stack), self.tokens(n.key_stack), self.labels(n.query_stack),
                self.labels(n.key_stack, produces=False))

    @property
    def record_names(self) -> list[str]:
        return list(self.info.record_names)

    def names_of_kind(self) -> list[str]:
        return [str(RecordName.of_kind(self.sel.kind, i)) for i in self.layers]

    def reasons(self, rec, head: int) -> dict:
        return viz.head_reasons(rec, max(head, 0))
