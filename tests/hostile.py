"""Hostile checkpoints for the tests: sparse weights that claim any size, guards that fail a test when an allocation
runs before the check that should prevent it, and a public path policy."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from model.safe.paths import PathPolicy


def sparse_safetensors(file: Path, shapes: dict[str, tuple[int, ...]], dtype: str = "F32") -> int:
    """A safetensors file whose header claims these shapes, its data a hole (no disk, no memory); -> data bytes."""
    width = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}[dtype]
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape) * width
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return offset


def forbid(monkeypatch, target, name: str) -> None:
    """Make ``target.name`` fail the test if it runs: the refusal must come before it."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} ran: the check came after the allocation it should prevent")
    monkeypatch.setattr(target, name, refuse)


def public_policy(*roots: Path) -> PathPolicy:
    return PathPolicy(roots=tuple(r.resolve() for r in roots), public=True)
