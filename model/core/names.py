"""Record names as a type: which stack, layer and sub-layer an attention is, and which tokens its axes hold.

A trace is keyed by the string form (``"decoder.1.cross_attn"``, TransformerLens-like); every rule about a name
(its query and key axes, its attention kind, its order in the forward pass) is asked of ``RecordName``.
"""

from __future__ import annotations

from dataclasses import dataclass

STACKS = ("encoder", "decoder")
SUBLAYERS = ("self_attn", "cross_attn")
# The attention kinds, as the app names them: (stack, sub-layer) -> kind
KIND_OF = {("encoder", "self_attn"): "encoder self", ("decoder", "self_attn"): "decoder masked self",
           ("decoder", "cross_attn"): "cross"}
KINDS = tuple(KIND_OF.values())
STACK_AND_SUBLAYER = {kind: pair for pair, kind in KIND_OF.items()}


@dataclass(frozen=True)
class RecordName:
    """One attention of a model: ``stack`` ("encoder" | "decoder"), ``layer`` (0-based block index) and
    ``sublayer`` ("self_attn" | "cross_attn"; cross-attention reads the encoder's output)."""

    stack: str
    layer: int
    sublayer: str

    def __post_init__(self) -> None:
        if (self.stack, self.sublayer) not in KIND_OF or not isinstance(self.layer, int) or self.layer < 0:
            raise ValueError(f"not an attention name: {self.stack!r}, {self.layer!r}, {self.sublayer!r}")

    @classmethod
    def parse(cls, name: str | RecordName) -> RecordName:
        """``"decoder.1.cross_attn"`` -> RecordName("decoder", 1, "cross_attn"); ValueError otherwise."""
        if isinstance(name, RecordName):
            return name
        parts = str(name).split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"not an attention name: {name!r} (expected e.g. 'decoder.1.cross_attn')")
        return cls(parts[0], int(parts[1]), parts[2])

    @classmethod
    def of_kind(cls, kind: str, layer: int) -> RecordName:
        """The attention of one kind ("cross", "encoder self", "decoder masked self") at one layer."""
        stack, sublayer = STACK_AND_SUBLAYER[kind]
        return cls(stack, int(layer), sublayer)

    def __str__(self) -> str:
        return f"{self.stack}.{self.layer}.{self.sublayer}"

    @property
    def kind(self) -> str:
        """"encoder self", "decoder masked self" or "cross"."""
        return KIND_OF[self.stack, self.sublayer]

    @property
    def is_cross(self) -> bool:
        return self.sublayer == "cross_attn"

    @property
    def query_stack(self) -> str:
        """Whose tokens are on the query axis (rows)."""
        return self.stack

    @property
    def key_stack(self) -> str:
        """Whose tokens are on the key axis (columns): cross-attention's keys come from the encoder."""
        return "encoder" if self.is_cross else self.stack

    def forward_order(self) -> tuple[int, int, int]:
        """Sort key: encoder layers, then each decoder layer's self- and cross-attention."""
        return (self.stack != "encoder", self.layer, self.sublayer != "self_attn")


def record_name(stack: str, layer: int, sublayer: str) -> str:
    """The trace key of one attention, e.g. ``decoder.1.cross_attn``."""
    return str(RecordName(stack, int(layer), sublayer))


def story_order(kinds) -> list[str]:
    """Attention kinds as the app offers them: cross-attention first (an encoder-decoder's story is usually there),
    the others in the order given."""
    return sorted(kinds, key=lambda k: k != "cross")


def name_of(name: str | RecordName) -> RecordName:
    """Shorthand for ``RecordName.parse``."""
    return RecordName.parse(name)


def in_forward_order(names) -> list[str]:
    """Trace names sorted as the forward pass computes them."""
    return sorted((str(n) for n in names), key=lambda n: RecordName.parse(n).forward_order())


__all__ = ["KINDS", "KIND_OF", "RecordName", "STACKS", "SUBLAYERS", "in_forward_order", "name_of", "record_name",
           "story_order"]
