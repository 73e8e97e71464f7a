"""Attention maps as tiles for the canvas component: pooled uint8 overviews, exact or pooled detail, binary parts.

Pure functions, numpy in, dicts and bytes out; the JavaScript in ``viz/canvas/`` draws what they build. A map is
sent in up to three parts, each its own element so that Streamlit re-sends only the part that changed:

- ``overview_payload``: one attention (one layer, one stage), every head's tile as uint8 (255 = ``hi``),
  max-pooled over ``pool`` x ``pool`` blocks, the token labels once per axis. A head change is drawn from it.
- ``head_payload``: the selected head's finer overview tile (when the held tiles are pooled).
- ``detail_payload``: the cells of the view the page reported: float32 values (exact when ``pool`` is 1, else block
  maxima with the argmax cell of each block), so that the hover is exact at every zoom.

A short map's overview carries its exact float32 cells (``values``; ``exact_overview``), so that it needs no detail.
An overview may say which map it is (``choice``, e.g. {kind, layer, stage}) and which others the page may switch to
(``choices``, from ``choice_groups``); a ``stack_payload`` carries several of them at once (other layers, stages,
kinds, training steps), drawn by the page without asking Python.

Masked cells carry reason bits (``REASON_BITS``; the overview sends ``reason_table()``, from which the page hatches
and names them); a pooled block is masked only when all its cells are.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence

import numpy as np

from model.core.reasons import REASON_BITS, codes_from_reasons

from .wire import labels_blob

EXACT_MAX = 256  # a view of at most this many cells per axis is labelled token by token
HELD_SIDE = 512  # every head's overview tile has at most this many blocks per axis (held in the page)
HEAD_SIDE = 1024  # the selected head's overview tile: at most this many blocks per axis
DETAIL_SIDE = 512  # a detail tile: at most this many cells (exact) or blocks (pooled) per axis
DETAIL_MAX_CELLS = 1 << 24  # a pooled detail reads at most this many cells (4,096 x 4,096: ~0.5 s on 2 CPU cores);
# a view over more (the whole map above 4,096 tokens) gets the overview's values, "zoom in for exact values"
# how the canvas hatches each reason's cells, in the order a cell with several reasons picks its hatch
REASON_HATCHES = {"padding": "/", "causal": "\\", "window": "x", "knocked out": ".", "other": "-"}
COLORMAPS = ("viridis", "rdbu_r")  # weights 0..1; signed stages, diverging (blue below 0, red above)


def pool_factor(n_rows: int, n_cols: int, side: int) -> int:
    """The smallest power of two f such that ceil(n / f) <= side on both axes (1: every cell its own pixel)."""
    n = max(int(n_rows), int(n_cols), 1)
    return 1 << max(0, math.ceil(math.log2(n / side))) if n > side else 1


def _blocks(a: np.ndarray, factor: int, fill) -> np.ndarray:
    """(R, C) -> (ceil(R/f), ceil(C/f), f*f): each block's cells in row-major order, edges padded with ``fill``."""
    R, C = a.shape
    Rb, Cb = -(-R // factor), -(-C // factor)
    padded = np.full((Rb * factor, Cb * factor), fill, dtype=a.dtype)
    padded[:R, :C] = a
    return padded.reshape(Rb, factor, Cb, factor).transpose(0, 2, 1, 3).reshape(Rb, Cb, factor * factor)


def block_max_argmax(values: np.ndarray, factor: int, masked: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Max over ``factor`` x ``factor`` blocks (edge blocks partial) and where it is: (pooled float32, argmax).

    ``argmax`` is the flat index inside the block (``dr * factor + dc``, the first maximum), uint16 up to factor 256.
    Cells where ``masked`` is True take no part; a block with every cell masked gets NaN and argmax 0.
    """
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"block_max_argmax takes a (rows, cols) matrix, got shape {v.shape}")
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"pool factor must be >= 1, got {factor}")
    if masked is not None:
        v = np.where(np.asarray(masked, dtype=bool), np.float32(np.nan), v)
    # NaN (masked or padding) sorts below everything: argmax over a copy with NaN -> -inf; a block of only NaN
    # (or only -inf) reports its first cell
    blocks = _blocks(v, factor, np.float32(np.nan))
    empty = np.isnan(blocks).all(axis=2)
    where = np.argmax(np.where(np.isnan(blocks), np.float32(-np.inf), blocks), axis=2)
    pooled = np.take_along_axis(blocks, where[..., None], axis=2)[..., 0]
    pooled[empty] = np.nan
    where[empty] = 0
    return pooled.astype(np.float32), where.astype(np.uint16 if factor <= 256 else np.uint32)


def argmax_cell(argmax: np.ndarray, factor: int, r0: int = 0, c0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The (row, col) cells that ``block_max_argmax``'s argmax points at, for a pooled tile whose first cell is
    (r0, c0)."""
    a = np.asarray(argmax, dtype=np.int64)
    rows = r0 + np.arange(a.shape[0])[:, None] * factor + a // factor
    cols = c0 + np.arange(a.shape[1])[None, :] * factor + a % factor
    return rows, cols


def pool_reasons(codes: np.ndarray, factor: int) -> np.ndarray:
    """Reason bits per block: the OR of its cells' bits where every cell of the block is masked, else 0."""
    c = np.asarray(codes, dtype=np.uint8)
    if factor == 1:
        return c.copy()
    blocks = _blocks(c, factor, np.uint8(0))
    R, C = c.shape
    real = _blocks(np.ones((R, C), dtype=bool), factor, False)  # padding cells of edge blocks are not cells
    all_masked = ((blocks != 0) | ~real).all(axis=2)
    return np.where(all_masked, np.bitwise_or.reduce(blocks, axis=2), 0).astype(np.uint8)


def quantize(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float -> uint8 colour index: 0 = ``lo``, 255 = ``hi`` (clipped); NaN -> 0 (its cell is drawn masked)."""
    v = np.asarray(values, dtype=np.float32)
    span = float(hi) - float(lo)
    if not span > 0:
        return np.zeros(v.shape, dtype=np.uint8)
    scaled = (v - np.float32(lo)) * np.float32(255.0 / span)
    return np.clip(np.rint(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)), 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 colour index -> the value at the centre of its bin (within (hi - lo) / 510 of the original)."""
    return (np.float32(lo) + np.asarray(q, dtype=np.float32) * np.float32((hi - lo) / 255.0)).astype(np.float32)


def reason_table() -> list[dict]:
    """The reasons as the page draws and names them: [{"bit", "name", "hatch"}] in ``REASON_HATCHES`` order."""
    return [{"bit": REASON_BITS[name], "name": name, "hatch": hatch} for name, hatch in REASON_HATCHES.items()]


def value_range(stage: str, values: np.ndarray | None = None) -> tuple[float, float, str]:
    """(lo, hi, colormap) for a stage: weights 0..1 in Viridis; other stages symmetric around 0, diverging."""
    if stage == "weights":
        return 0.0, 1.0, "viridis"
    finite = np.asarray(values, dtype=np.float32) if values is not None else np.zeros(0, np.float32)
    finite = finite[np.isfinite(finite)]
    m = float(np.abs(finite).max()) if finite.size else 1.0
    return -(m or 1.0), (m or 1.0), "rdbu_r"


def overview_payload(tiles: np.ndarray | None, pool: int, n_rows: int, n_cols: int, row_labels: Sequence[str],
                     col_labels: Sequence[str] | None = None, *, reasons: np.ndarray | None = None,
                     produces: Sequence[str] | None = None, lo: float = 0.0, hi: float = 1.0,
                     colormap: str = "viridis", value_name: str = "weight", title: str = "",
                     heads: Sequence[str] | None = None, head: int = 0, overview_id: str | None = None,
                     values: np.ndarray | None = None, choice: Mapping | None = None, choices: Mapping | None = None,
                     scope: str | None = None, selectable: bool = True) -> dict:
    """The overview part: every head's uint8 tile ((H, ceil(n_rows/pool), ceil(n_cols/pool)), 255 = ``hi``), or,
    when ``pool`` is 1, their exact float32 ``values`` instead ((H, n_rows, n_cols): the hover needs no detail);
    labels once per axis (``col_labels`` None: the same tokens as the rows), optional reason bits ((r, c) for every
    head, or (H, r, c)), value range, colormap and title. ``head``: the head a fresh page shows first. ``choice``:
    which map this is ({group name: value}); ``choices``: the groups the page may switch between (``choice_groups``);
    ``scope``: the traced call it comes from (the page drops held maps of another scope); ``selectable`` False: no
    selection tools on the page."""
    if (tiles is None) == (values is None):
        raise ValueError("an overview has uint8 tiles or (pool 1) float32 values, one of the two")
    if values is not None:
        t = np.ascontiguousarray(values, dtype=np.float32)
        if pool != 1:
            raise ValueError("float32 values are exact cells: pool 1")
    else:
        t = np.ascontiguousarray(tiles, dtype=np.uint8)
    if t.ndim == 2:
        t = t[None]
    H, r, c = t.shape
    if (r, c) != (-(-n_rows // pool), -(-n_cols // pool)):
        raise ValueError(f"tiles of {r} x {c} do not pool {n_rows} x {n_cols} cells by {pool}")
    if len(row_labels) != n_rows or (col_labels is not None and len(col_labels) != n_cols):
        raise ValueError(f"{len(row_labels)} row / {n_cols if col_labels is None else len(col_labels)} column labels "
                         f"for a {n_rows} x {n_cols} map")
    if col_labels is None and n_cols != n_rows:
        raise ValueError("col_labels may only be left out when rows and columns are the same tokens")
    if colormap not in COLORMAPS:
        raise ValueError(f"colormap {colormap!r}: one of {COLORMAPS}")
    part = {"part": "overview", "n_rows": int(n_rows), "n_cols": int(n_cols), "n_heads": H, "pool": int(pool),
            "values" if values is not None else "tiles": t, "lo": float(lo), "hi": float(hi), "colormap": colormap,
            "value_name": value_name, "title": title,
            "heads": [str(h) for h in (heads if heads is not None else range(H))], "head": int(head),
            "rows": labels_blob(row_labels), "reason_table": reason_table(), "exact_max": EXACT_MAX}
    if col_labels is not None:
        part["cols"] = labels_blob(col_labels)
    if produces is not None:
        part["produces"] = labels_blob(produces)
    if reasons is not None:
        rc = np.ascontiguousarray(reasons, dtype=np.uint8)
        if rc.shape[-2:] != (r, c) or rc.ndim not in (2, 3) or (rc.ndim == 3 and rc.shape[0] != H):
            raise ValueError(f"reasons of shape {rc.shape} for tiles of shape {t.shape}")
        if rc.any():
            part["reasons"] = rc
    if choice is not None:
        part["choice"] = dict(choice)
    if choices is not None:
        part["choices"] = dict(choices)
    if scope is not None:
        part["scope"] = str(scope)
    if not selectable:
        part["selectable"] = False
    part["id"] = overview_id or _digest(part)
    return part


def exact_overview(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str] | None = None, *,
                   codes: np.ndarray | None = None, stage: str = "weights", exact: bool = True,
                   lo: float | None = None, hi: float | None = None, **kwargs) -> dict:
    """The overview of a map held whole ((H, n_rows, n_cols) values of one stage, reason bits (n_rows, n_cols) or
    (H, n_rows, n_cols)): exact float32 cells (``exact``), else uint8 (a quarter of the bytes: 1/255 of the range),
    on the stage's value range (``value_range``, unless ``lo`` / ``hi`` are given)."""
    v = np.asarray(values, dtype=np.float32)
    if v.ndim == 2:
        v = v[None]
    if lo is None or hi is None:
        lo, hi, cmap = value_range(stage, v)
        kwargs.setdefault("colormap", cmap)
    masked = None if codes is None else np.broadcast_to(np.asarray(codes) != 0, v.shape)
    if exact:
        return overview_payload(None, 1, v.shape[1], v.shape[2], row_labels, col_labels, values=v, reasons=codes,
                                lo=lo, hi=hi, **kwargs)
    q = quantize(v if masked is None else np.where(masked, np.float32(lo), v), lo, hi)
    return overview_payload(q, 1, v.shape[1], v.shape[2], row_labels, col_labels, reasons=codes, lo=lo, hi=hi,
                            **kwargs)


def choice_group(name: str, options: Sequence, *, label: str | None = None, texts: Sequence[str] | None = None,
                 control: str = "buttons", after_heads: bool = False) -> dict:
    """One control of the page's bar: the values a choice ``name`` takes (ints or strings), shown as ``texts``;
    ``control``: "buttons", "select" or "slider"; ``after_heads``: placed after the head buttons."""
    if control not in ("buttons", "select", "slider"):
        raise ValueError(f"control {control!r}: buttons, select or slider")
    texts = [str(o) for o in options] if texts is None else [str(t) for t in texts]
    if len(texts) != len(options):
        raise ValueError(f"{len(texts)} texts for {len(options)} options")
    group = {"name": name, "label": label or name, "options": [[_plain(o), t] for o, t in zip(options, texts,
                                                                                                strict=True)],
             "control": control}
    if after_heads:
        group["after_heads"] = True
    return group


def choice_groups(groups: Sequence[Mapping], valid: Sequence[Sequence] | None = None) -> dict:
    """The choices an overview offers: its groups and the valid combinations (values in group order; None: every
    combination is a map)."""
    out = {"groups": [dict(g) for g in groups], "valid": None}
    if valid is not None:
        out["valid"] = [[_plain(v) for v in combo] for combo in valid]
    return out


def stack_payload(overviews: Sequence[Mapping], slot: str = "stack") -> dict:
    """Several overviews at once, each with its ``choice``: the page holds them and draws one when the user picks
    it. ``slot``: which of the page's stacks this is (each is replaced by the next part of its slot)."""
    if any("choice" not in o for o in overviews):
        raise ValueError("every overview of a stack says which map it is (choice)")
    return {"part": "stack", "slot": slot, "overviews": [dict(o) for o in overviews]}


def deferred_stack(slot: str = "near") -> dict:
    """A stack not computed in this run: the page draws the map at once and asks for it (``detail_request``)."""
    return {"part": "stack", "slot": slot, "deferred": True}


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def head_payload(tile: np.ndarray, pool: int, head: int, overview_id: str, reasons: np.ndarray | None = None) -> dict:
    """The selected head's finer overview tile (uint8, 255 = the overview's ``hi``), drawn over the held one."""
    t = np.ascontiguousarray(tile, dtype=np.uint8)
    part = {"part": "head", "overview": overview_id, "head": int(head), "tile": _tile(t, 0, 0, pool)}
    if reasons is not None and np.any(reasons):
        part["tile"]["reasons"] = np.ascontiguousarray(reasons, dtype=np.uint8)
    return part


def detail_payload(values: np.ndarray, r0: int, c0: int, pool: int, *, head: int, overview_id: str,
                   argmax: np.ndarray | None = None, reason_codes: np.ndarray | None = None,
                   view: Mapping | None = None) -> dict:
    """A detail tile whose first cell is (r0, c0): float32 values (``pool`` 1: exact cells; else block maxima and,
    in ``argmax``, where each maximum is, as ``block_max_argmax`` gives it), reason bits per cell or block, and the
    view it was computed for ({r0, r1, c0, c1})."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    if pool > 1 and argmax is None:
        raise ValueError("a pooled detail tile needs the argmax of each block (block_max_argmax gives it)")
    tile = _tile(None, r0, c0, pool, shape=v.shape)
    tile["values"] = v
    if argmax is not None:
        a = np.ascontiguousarray(argmax)
        if a.shape != v.shape:
            raise ValueError(f"argmax of shape {a.shape} for values of shape {v.shape}")
        tile["argmax"] = a.astype(np.uint16 if pool <= 256 else np.uint32)
    if reason_codes is not None and np.any(reason_codes):
        tile["reasons"] = np.ascontiguousarray(reason_codes, dtype=np.uint8)
    part = {"part": "detail", "overview": overview_id, "head": int(head), "tile": tile}
    if view is not None:
        part["view"] = {k: int(view[k]) for k in ("r0", "r1", "c0", "c1")}
    return part


def detail_window(view: Mapping | None, n_rows: int, n_cols: int) -> dict:
    """What detail to compute for a reported view: {r0, r1, c0, c1, pool}, end exclusive, clamped to the map.

    Up to ``DETAIL_SIDE`` cells per axis: every cell (pool 1; the page labels tokens from ``EXACT_MAX`` down).
    Larger: blocks of the smallest power-of-two pool that fits ``DETAIL_SIDE`` per axis, the window widened to the
    block grid, so that blocks line up with the overview's.
    """
    if not view:
        view = {"r0": 0, "r1": n_rows, "c0": 0, "c1": n_cols}
    r0 = min(max(0, int(view["r0"])), n_rows - 1)
    c0 = min(max(0, int(view["c0"])), n_cols - 1)
    r1 = min(max(r0 + 1, int(view["r1"])), n_rows)
    c1 = min(max(c0 + 1, int(view["c1"])), n_cols)
    pool = pool_factor(r1 - r0, c1 - c0, DETAIL_SIDE)
    if pool == 1:
        return {"r0": r0, "r1": r1, "c0": c0, "c1": c1, "pool": 1}
    r0, c0 = r0 // pool * pool, c0 // pool * pool
    r1, c1 = min(n_rows, -(-r1 // pool) * pool), min(n_cols, -(-c1 // pool) * pool)
    return {"r0": r0, "r1": r1, "c0": c0, "c1": c1, "pool": pool}


def detail_too_big(window: Mapping, max_cells: int | None = None) -> bool:
    """Whether the detail of ``window`` (from ``detail_window``) would read more than ``max_cells`` cells (default
    ``DETAIL_MAX_CELLS``)."""
    cap = DETAIL_MAX_CELLS if max_cells is None else max_cells
    return (int(window["r1"]) - int(window["r0"])) * (int(window["c1"]) - int(window["c0"])) > cap


def skipped_detail(window: Mapping, *, head: int, overview_id: str, max_cells: int | None = None) -> dict:
    """The detail part of a view too big to read (``detail_too_big``): no tile; the page says the hover's value is
    the overview's and that a view of at most ``max_cells`` cells gives exact ones."""
    cap = DETAIL_MAX_CELLS if max_cells is None else max_cells
    return {"part": "detail", "overview": overview_id, "head": int(head), "skipped": True,
            "view": {k: int(window[k]) for k in ("r0", "r1", "c0", "c1")}, "max_cells": int(cap)}


def deferred_detail(window: Mapping, *, head: int, overview_id: str) -> dict:
    """The detail part of a new overview's view, not computed in this run: the page draws the overview at once and
    asks for the detail (the component's ``detail_request`` state), which the next run computes."""
    return {"part": "detail", "overview": overview_id, "head": int(head), "deferred": True,
            "view": {k: int(window[k]) for k in ("r0", "r1", "c0", "c1")}}


def window_detail(values: np.ndarray, window: Mapping, *, head: int, overview_id: str,
                  codes: np.ndarray | None = None, view: Mapping | None = None) -> dict:
    """The detail part for ``window`` (from ``detail_window``) from its exact cells ``values`` (and reason bits
    ``codes``), pooled when the window asks for it."""
    pool = int(window["pool"])
    v = np.asarray(values, dtype=np.float32)
    masked = None if codes is None else np.asarray(codes) != 0
    if pool == 1:
        return detail_payload(v, window["r0"], window["c0"], 1, head=head, overview_id=overview_id,
                              reason_codes=codes, view=view or window)
    pooled, argmax = block_max_argmax(v, pool, masked)
    return detail_payload(pooled, window["r0"], window["c0"], pool, head=head, overview_id=overview_id, argmax=argmax,
                          reason_codes=None if codes is None else pool_reasons(codes, pool), view=view or window)


DETAIL_BAND_CELLS = 1 << 22  # a pooled detail is computed a band of rows at a time, at most this many cells


def trace_detail(trace, name: str, head: int, window: Mapping, stage: str = "weights", *, overview_id: str,
                 view: Mapping | None = None, batch_index: int = 0) -> dict:
    """The detail part for ``window`` (from ``detail_window``) straight from a trace (model.capture.trace.Trace): exact
    cells from ``trace.window``; for a pooled window, the block maxima computed a band of rows at a time, so that
    a whole 32k x 32k head is never held."""
    r0, r1, c0, c1, pool = (int(window[k]) for k in ("r0", "r1", "c0", "c1", "pool"))
    cols = range(c0, c1)
    if pool == 1:
        win = trace.window(name, head, range(r0, r1), cols, stage, batch_index)
        return window_detail(win.values, window, head=head, overview_id=overview_id,
                             codes=codes_from_reasons(win.reasons, win.values.shape), view=view)
    band = pool * max(1, DETAIL_BAND_CELLS // max(1, pool * len(cols)))
    values, argmax, codes = [], [], []
    for a in range(r0, r1, band):
        win = trace.window(name, head, range(a, min(r1, a + band)), cols, stage, batch_index)
        cell_codes = codes_from_reasons(win.reasons, win.values.shape)
        pooled, where = block_max_argmax(win.values, pool, cell_codes != 0)
        values.append(pooled)
        argmax.append(where)
        codes.append(pool_reasons(cell_codes, pool))
    return detail_payload(np.concatenate(values), r0, c0, pool, head=head, overview_id=overview_id,
                          argmax=np.concatenate(argmax), reason_codes=np.concatenate(codes), view=view or window)


def overview_tiles(values: np.ndarray, pool: int, lo: float, hi: float,
                   codes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, R, C) exact values (and (R, C) or (H, R, C) reason bits) -> (uint8 tiles, pooled reason bits or None)."""
    v = np.asarray(values, dtype=np.float32)
    masked = None if codes is None else np.broadcast_to(np.asarray(codes) != 0, v.shape)
    tiles = np.stack([quantize(block_max_argmax(v[h], pool, None if masked is None else masked[h])[0], lo, hi)
                      for h in range(v.shape[0])])
    if codes is None or not np.any(codes):
        return tiles, None
    c = np.asarray(codes, dtype=np.uint8)
    pooled = pool_reasons(c, pool) if c.ndim == 2 else np.stack([pool_reasons(x, pool) for x in c])
    return tiles, pooled


def _tile(q: np.ndarray | None, r0: int, c0: int, pool: int, shape: tuple[int, int] | None = None) -> dict:
    rows, cols = q.shape if q is not None else shape
    tile = {"r0": int(r0), "c0": int(c0), "pool": int(pool), "rows": int(rows), "cols": int(cols)}
    if q is not None:
        tile["q"] = q
    return tile


def _digest(part: dict) -> str:
    h = hashlib.blake2b(digest_size=8)
    for key in sorted(part):
        value = part[key]
        h.update(key.encode())
        h.update(value.tobytes() if isinstance(value, np.ndarray) else json.dumps(value, sort_keys=True).encode())
    return h.hexdigest()
