"""The attention canvas's parts as the page receives them, read in AppTest (no browser): what a map shows."""

from __future__ import annotations

import numpy as np

from viz import wire


def canvas_parts(at) -> dict[str, dict]:
    """Every canvas part the page mounted, by element key ("map", "map.stack", "map.near", "map.detail", ...)."""
    return {e.proto.id.rsplit("-", 1)[-1]: wire.unpack(e.proto.bytes) for e in at.get("bidi_component")}


def canvas_overview(at, key: str = "map") -> dict:
    return canvas_parts(at)[key]


def canvas_matrix(at, key: str = "map", head: int | None = None) -> np.ndarray:
    """The exact cells of the head the canvas shows (Python's, in the sync part, unless given): the overview's float32
    values, else the detail of the whole map (the page's second run computes a deferred one)."""
    parts = canvas_parts(at)
    ov = parts[key]
    h = parts[f"{key}.sync"]["head"] if head is None else head
    if "values" in ov:
        return np.asarray(ov["values"][h])
    detail = parts.get(f"{key}.detail") or {}
    tile = detail.get("tile")
    assert tile is not None and tile["pool"] == 1 and detail["head"] == h, f"no exact detail of head {h}: {detail}"
    assert (tile["rows"], tile["cols"]) == (ov["n_rows"], ov["n_cols"])
    return np.asarray(tile["values"])


def row_labels(ov: dict) -> list[str]:
    """The rows as the page labels them: "0·[BOS] → 2" (position, token and, for decoder rows, what they produce)."""
    rows = wire.labels_from_blob(ov["rows"])
    produces = wire.labels_from_blob(ov["produces"]) if "produces" in ov else None
    return [f"{i}·{t}" + (f" → {produces[i]}" if produces else "") for i, t in enumerate(rows)]


def col_labels(ov: dict) -> list[str]:
    cols = wire.labels_from_blob(ov["cols"] if "cols" in ov else ov["rows"])
    return [f"{j}·{t}" for j, t in enumerate(cols)]


def held_choices(at, key: str = "map") -> list[dict]:
    """The choices of every map the page holds (the stacks' and the shown one)."""
    parts = canvas_parts(at)
    overviews = [parts[key]] + [o for slot in ("stack", "near") for o in parts.get(f"{key}.{slot}", {}).get(
        "overviews", [])]
    return [o["choice"] for o in overviews if "choice" in o]
