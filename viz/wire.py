"""The canvas's wire format: a part (a dict of JSON values and numpy arrays) as one binary message, and token labels
as one UTF-8 buffer. Mirrors ``viz/canvas/wire.js``, which decodes what ``pack`` writes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence

import numpy as np

MAGIC = b"ATC1"  # 4 bytes, a uint32 header length, the JSON header, then the 8-byte aligned buffers
DTYPES = {"uint8": "u1", "uint16": "u2", "uint32": "u4", "float32": "f4"}  # numpy dtype -> the wire's kind
_SHOWN = str.maketrans({"\n": "↵", "\r": "␍", "\t": "⇥"})  # labels are one line each on the wire and on screen


def labels_blob(tokens: Sequence[str]) -> np.ndarray:
    """Tokens as one uint8 buffer, UTF-8, newline-separated (a newline inside a token is shown as ↵); the page
    prefixes each with its position ("3·the"), so positions cost nothing on the wire."""
    return np.frombuffer("\n".join(str(t).translate(_SHOWN) for t in tokens).encode("utf-8"), dtype=np.uint8)


def labels_from_blob(blob: np.ndarray) -> list[str]:
    """Inverse of ``labels_blob`` (as the page reads it)."""
    return np.asarray(blob, dtype=np.uint8).tobytes().decode("utf-8").split("\n")


def part_bytes(part: Mapping) -> int:
    """The bytes of a part's arrays (what it costs on the wire, headers aside)."""
    total = 0
    for v in part.values():
        if isinstance(v, np.ndarray):
            total += v.nbytes
        elif isinstance(v, Mapping):
            total += part_bytes(v)
        elif isinstance(v, (list, tuple)):
            total += sum(part_bytes(x) for x in v if isinstance(x, Mapping))
    return total


def pack(part: Mapping) -> bytes:
    """A part as bytes: b"ATC1", uint32 header length (little-endian), the JSON header, then every array's bytes,
    8-byte aligned; in the header an array is {"$": index, "dtype": "u1" | "u2" | "u4" | "f4", "shape": [...]}."""
    buffers: list[bytes] = []
    spans: list[list[int]] = []

    def walk(x):
        if isinstance(x, np.ndarray):
            dt = DTYPES.get(x.dtype.name)
            if dt is None:
                raise TypeError(f"arrays go to the page as {sorted(DTYPES)}, not {x.dtype}")
            buffers.append(np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<"), copy=False).tobytes())
            spans.append([0, len(buffers[-1])])
            return {"$": len(buffers) - 1, "dtype": dt, "shape": list(x.shape)}
        if isinstance(x, Mapping):
            return {str(k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        return x

    header = walk(part)
    offset = 0
    for span in spans:  # offsets relative to the start of the buffer section
        span[0] = offset
        offset += -(-span[1] // 8) * 8
    header["$buffers"] = spans
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    start = -(-(8 + len(head)) // 8) * 8
    out = bytearray(start + offset)
    out[:8] = MAGIC + struct.pack("<I", len(head))
    out[8:8 + len(head)] = head
    for buf, (off, n) in zip(buffers, spans, strict=True):
        out[start + off:start + off + n] = buf
    return bytes(out)


def unpack(data: bytes) -> dict:
    """Inverse of ``pack`` (what the page decodes), for tests."""
    if data[:4] != MAGIC:
        raise ValueError("not an attention-canvas part")
    n = struct.unpack("<I", data[4:8])[0]
    header = json.loads(data[8:8 + n].decode("utf-8"))
    start = -(-(8 + n) // 8) * 8
    spans = header.pop("$buffers")
    inverse = {v: k for k, v in DTYPES.items()}

    def walk(x):
        if isinstance(x, dict) and "$" in x and "dtype" in x:
            off, size = spans[x["$"]]
            return np.frombuffer(data, dtype=np.dtype(inverse[x["dtype"]]).newbyteorder("<"), count=size //
                                 np.dtype(inverse[x["dtype"]]).itemsize, offset=start + off).reshape(x["shape"])
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(header)


__all__ = ["DTYPES", "MAGIC", "labels_blob", "labels_from_blob", "pack", "part_bytes", "unpack"]
