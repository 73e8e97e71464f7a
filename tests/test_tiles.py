"""viz/tiles.py: pooling and its argmax against a plain loop, quantization, reason bits, labels, parts and their
size on the wire."""

import numpy as np
import pytest

from tests.canvas_synthetic import Synthetic
from viz import tiles, wire


def reference_pool(values, factor, masked=None):
    """Block by block with Python loops: the max over unmasked cells and its first position (row-major)."""
    R, C = values.shape
    Rb, Cb = -(-R // factor), -(-C // factor)
    out = np.full((Rb, Cb), np.nan, dtype=np.float32)
    arg = np.zeros((Rb, Cb), dtype=np.int64)
    for i in range(Rb):
        for j in range(Cb):
            best = None
            for dr in range(factor):
                for dc in range(factor):
                    r, c = i * factor + dr, j * factor + dc
                    if r >= R or c >= C or (masked is not None and masked[r, c]):
                        continue
                    if best is None or values[r, c] > best:
                        best, arg[i, j] = values[r, c], dr * factor + dc
            if best is not None:
                out[i, j] = best
    return out, arg


@pytest.mark.parametrize("shape,factor", [((37, 53), 8), ((64, 64), 4), ((5, 130), 16), ((9, 7), 1), ((20, 3), 32)])
def test_pool_max_and_argmax_match_a_loop(shape, factor):
    rng = np.random.default_rng(sum(shape) + factor)
    v = rng.standard_normal(shape).astype(np.float32)
    masked = rng.random(shape) < 0.3
    masked[: min(shape[0], factor), : min(shape[1], factor)] = True  # one block with every cell masked
    for m in (None, masked):
        pooled, argmax = tiles.block_max_argmax(v, factor, m)
        ref, ref_arg = reference_pool(v, factor, m)
        assert pooled.shape == ref.shape == (-(-shape[0] // factor), -(-shape[1] // factor))
        np.testing.assert_array_equal(pooled, ref)
        np.testing.assert_array_equal(argmax, ref_arg)
        assert argmax.dtype == np.uint16
        rows, cols = tiles.argmax_cell(argmax, factor)
        ok = ~np.isnan(ref)
        np.testing.assert_array_equal(v[rows[ok], cols[ok]], pooled[ok])  # the argmax points at the maximum
    if factor > 1:
        assert np.isnan(tiles.block_max_argmax(v, factor, masked)[0][0, 0])  # the all-masked block


def test_pool_max_keeps_minus_infinity_and_rejects_bad_input():
    v = np.array([[-np.inf, -np.inf], [-np.inf, 2.0]], dtype=np.float32)
    pooled, argmax = tiles.block_max_argmax(v, 2)
    assert pooled[0, 0] == 2.0 and argmax[0, 0] == 3
    pooled, _ = tiles.block_max_argmax(np.full((2, 2), -np.inf, np.float32), 2)
    assert pooled[0, 0] == -np.inf  # a masked score is a value, not a missing cell
    with pytest.raises(ValueError):
        tiles.block_max_argmax(np.zeros((2, 2, 2)), 2)
    with pytest.raises(ValueError):
        tiles.block_max_argmax(np.zeros((2, 2)), 0)


def test_pool_factor_is_the_smallest_power_of_two_that_fits():
    assert tiles.pool_factor(256, 256, 512) == 1
    assert tiles.pool_factor(512, 10, 512) == 1
    assert tiles.pool_factor(513, 10, 512) == 2
    assert tiles.pool_factor(32768, 32768, 512) == 64
    assert tiles.pool_factor(32768, 100, 1024) == 32
    for n in (1, 7, 300, 1000, 4097, 32768):
        f = tiles.pool_factor(n, n, 512)
        assert -(-n // f) <= 512 and (f == 1 or -(-n // (f // 2)) > 512)


def test_pool_reasons_or_only_where_every_cell_is_masked():
    codes = np.zeros((6, 6), dtype=np.uint8)
    codes[:4, :4] = tiles.REASON_BITS["causal"]
    codes[0, 0] |= tiles.REASON_BITS["padding"]
    codes[4:, :2] = tiles.REASON_BITS["window"]  # the edge block rows 4-5 (of a 4-block) are all masked
    codes[4, 4] = tiles.REASON_BITS["padding"]  # one masked cell in a partial block: not masked
    p = tiles.pool_reasons(codes, 4)
    assert p.shape == (2, 2)
    assert p[0, 0] == tiles.REASON_BITS["causal"] | tiles.REASON_BITS["padding"]
    assert p[0, 1] == 0 and p[1, 1] == 0
    assert p[1, 0] == 0  # rows 4-5, cols 0-3: cols 2-3 may attend
    codes[4:, 2:4] = tiles.REASON_BITS["window"]
    assert tiles.pool_reasons(codes, 4)[1, 0] == tiles.REASON_BITS["window"]  # the two real rows count, not padding
    np.testing.assert_array_equal(tiles.pool_reasons(codes, 1), codes)


def test_quantize_bounds_and_inverse():
    v = np.array([-1.0, 0.0, 0.25, 0.5, 1.0, 2.0, np.nan, np.inf, -np.inf], dtype=np.float32)
    q = tiles.quantize(v, 0.0, 1.0)
    assert q.dtype == np.uint8
    assert q.tolist() == [0, 0, 64, 128, 255, 255, 0, 255, 0]
    assert tiles.quantize(np.array([3.0]), 2.0, 2.0).tolist() == [0]  # no range: one colour
    rng = np.random.default_rng(1)
    x = rng.uniform(-5, 7, 10_000).astype(np.float32)
    q = tiles.quantize(x, -5, 7)
    assert q.min() == tiles.quantize(np.float32(-5), -5, 7) == 0 and tiles.quantize(np.float32(7), -5, 7) == 255
    assert np.all(np.diff(q[np.argsort(x)].astype(int)) >= 0)  # monotone
    assert np.abs(tiles.dequantize(q, -5, 7) - x).max() <= 12 / 510 + 1e-6


def test_reason_codes_from_masks_and_strings():
    causal = np.triu(np.ones((3, 3), dtype=bool), 1)
    pad = np.zeros((3, 3), dtype=bool)
    pad[:, 2] = True
    codes = tiles.codes_from_reasons({"causal": causal, "padding": pad}, (3, 3))
    assert codes[0, 1] == tiles.REASON_BITS["causal"]
    assert codes[0, 2] == tiles.REASON_BITS["causal"] | tiles.REASON_BITS["padding"]
    assert codes[2, 0] == 0
    strings = np.array([["", "causal", "padding+causal"], ["", "", "knocked out"], ["window", "", "who knows"]])
    c = tiles.codes_from_reasons(strings, (3, 3))
    bits = tiles.REASON_BITS
    assert c[0, 0] == 0 and c[0, 1] == bits["causal"] and c[0, 2] == bits["padding"] | bits["causal"]
    assert c[1, 2] == bits["knocked out"] and c[2, 0] == bits["window"]
    assert c[2, 2] == tiles.REASON_BITS["other"]
    table = {r["name"]: r["bit"] for r in tiles.reason_table()}
    assert table["knocked out"] == tiles.REASON_BITS["knocked out"]
    assert table == tiles.REASON_BITS  # the page's table is the one bit table (model.core.reasons)
    assert tiles.codes_from_reasons(None, (2, 2)).sum() == 0


def test_labels_once_per_axis_and_positions_implicit():
    toks = ["the", "ca t", "Über", "a\nb", "→", ""]
    blob = wire.labels_blob(toks)
    assert blob.dtype == np.uint8
    assert wire.labels_from_blob(blob) == ["the", "ca t", "Über", "a↵b", "→", ""]
    assert b"0" not in blob.tobytes()  # positions are added by the page ("3·a↵b"), not sent
    long = ["token"] * 32768
    assert len(wire.labels_blob(long)) == 32768 * 6 - 1  # 5 bytes + a separator each: ~190 kB for 32k tokens
    tile = np.zeros((1, 6, 6), np.uint8)
    same = tiles.overview_payload(tile, 1, 6, 6, toks)
    assert "cols" not in same  # self-attention: the keys are the queries, sent once
    cross = tiles.overview_payload(np.zeros((1, 6, 2), np.uint8), 1, 6, 2, toks, ["x", "y"], produces=toks[1:] + ["."])
    assert wire.labels_from_blob(cross["cols"]) == ["x", "y"]
    assert wire.labels_from_blob(cross["produces"])[0] == "ca t"
    with pytest.raises(ValueError):
        tiles.overview_payload(np.zeros((1, 6, 2), np.uint8), 1, 6, 2, toks)  # cross-attention needs its keys
    with pytest.raises(ValueError):
        tiles.overview_payload(tile, 1, 6, 6, toks[:5])
    with pytest.raises(ValueError):
        tiles.overview_payload(tile, 2, 6, 6, toks)  # 6 x 6 cells pooled by 2 are 3 x 3 blocks


def test_overview_part_bytes_per_cell_and_round_trip():
    H, T, pool = 12, 4096, 8
    rng = np.random.default_rng(0)
    t = rng.integers(0, 256, (H, T // pool, T // pool), dtype=np.uint8)
    reasons = np.zeros((T // pool, T // pool), np.uint8)
    reasons[np.triu_indices(T // pool, 1)] = tiles.REASON_BITS["causal"]
    ov = tiles.overview_payload(t, pool, T, T, ["tok"] * T, reasons=reasons, title="enc · layer 0")
    data = wire.pack({**ov, "key": "map"})
    cells = H * (T // pool) ** 2
    labels = 4 * T
    # one byte per held block, one per block of reason bits (shared by the heads), the labels, a small header
    assert len(data) <= cells + (T // pool) ** 2 + labels + 4096
    back = wire.unpack(data)
    np.testing.assert_array_equal(back["tiles"], t)
    np.testing.assert_array_equal(back["reasons"], reasons)
    assert back["n_rows"] == T and back["pool"] == pool and back["key"] == "map" and back["id"] == ov["id"]
    assert back["reason_table"] == tiles.reason_table()
    assert data[:4] == wire.MAGIC
    assert "reasons" not in tiles.overview_payload(t, pool, T, T, ["tok"] * T, reasons=np.zeros_like(reasons))
    other = tiles.overview_payload(t, pool, T, T, ["tok"] * T, reasons=reasons, title="enc · layer 1")
    assert other["id"] != ov["id"]  # a new title, lo, hi or tile is a new overview for the page


def test_detail_parts_bytes_per_cell():
    rng = np.random.default_rng(2)
    v = rng.random((256, 256), dtype=np.float32)
    exact = wire.pack(tiles.detail_payload(v, 1000, 2000, 1, head=3, overview_id="x"))
    assert len(exact) <= 4 * v.size + 1024  # float32 per cell, nothing else
    codes = np.zeros((512, 512), np.uint8)
    codes[:, -8:] = tiles.REASON_BITS["padding"]
    big = rng.random((4096, 4096), dtype=np.float32)
    window = {"r0": 0, "r1": 4096, "c0": 0, "c1": 4096, "pool": 8}
    part = tiles.window_detail(big, window, head=0, overview_id="x", codes=np.repeat(np.repeat(codes, 8, 0), 8, 1))
    data = wire.pack(part)
    assert len(data) <= 7 * 512 * 512 + 1024  # float32 max + uint16 argmax + uint8 reasons per block
    back = wire.unpack(data)
    tile = back["tile"]
    assert (tile["r0"], tile["c0"], tile["pool"], tile["rows"], tile["cols"]) == (0, 0, 8, 512, 512)
    ref, ref_arg = tiles.block_max_argmax(big, 8, np.repeat(np.repeat(codes, 8, 0), 8, 1) != 0)
    np.testing.assert_array_equal(tile["values"], ref)
    np.testing.assert_array_equal(tile["argmax"], ref_arg)
    np.testing.assert_array_equal(tile["reasons"], codes)
    assert back["view"] == {"r0": 0, "r1": 4096, "c0": 0, "c1": 4096}
    with pytest.raises(ValueError):
        tiles.detail_payload(ref, 0, 0, 8, head=0, overview_id="x")  # pooled without the argmax


@pytest.mark.parametrize("view,n,expect", [
    (None, (100, 80), {"r0": 0, "r1": 100, "c0": 0, "c1": 80, "pool": 1}),
    ({"r0": 10, "r1": 266, "c0": 5, "c1": 200}, (1000, 1000), {"r0": 10, "r1": 266, "c0": 5, "c1": 200, "pool": 1}),
    ({"r0": -5, "r1": 40, "c0": 990, "c1": 1200}, (1000, 1000), {"r0": 0, "r1": 40, "c0": 990, "c1": 1000, "pool": 1}),
    ({"r0": 1000, "r1": 1256, "c0": 0, "c1": 10}, (32768, 32768), {"r0": 1000, "r1": 1256, "c0": 0, "c1": 10,
                                                                    "pool": 1}),
])
def test_detail_window_exact(view, n, expect):
    assert tiles.detail_window(view, *n) == expect
    # up to DETAIL_SIDE cells per axis the detail is still exact; beyond it, blocks
    assert tiles.detail_window({"r0": 1000, "r1": 1000 + tiles.DETAIL_SIDE, "c0": 0, "c1": 10}, 32768, 32768)[
        "pool"] == 1
    assert tiles.detail_window({"r0": 1000, "r1": 1001 + tiles.DETAIL_SIDE, "c0": 0, "c1": 10}, 32768, 32768)[
        "pool"] == 2


def test_detail_window_pooled_is_aligned_and_bounded():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(300, 40000))
        a, b = sorted(rng.integers(0, n, 2))
        if b - a <= tiles.EXACT_MAX:
            continue
        w = tiles.detail_window({"r0": a, "r1": b + 1, "c0": 0, "c1": n}, n, n)
        p = w["pool"]
        assert p & (p - 1) == 0 and p > 1
        assert w["r0"] % p == 0 and w["c0"] % p == 0 and w["r0"] <= a and w["r1"] >= min(n, b + 1)
        assert -(-(w["r1"] - w["r0"]) // p) <= tiles.DETAIL_SIDE + 1
        assert -(-(w["c1"] - w["c0"]) // p) <= tiles.DETAIL_SIDE + 1


def test_overview_tiles_pool_then_quantize():
    rng = np.random.default_rng(4)
    v = rng.random((3, 50, 40), dtype=np.float32)
    codes = np.zeros((50, 40), np.uint8)
    codes[:, 36:] = tiles.REASON_BITS["padding"]
    t, r = tiles.overview_tiles(v, 4, 0.0, 1.0, codes)
    assert t.shape == (3, 13, 10) and r.shape == (13, 10)
    np.testing.assert_array_equal(t[1], tiles.quantize(tiles.block_max_argmax(v[1], 4, codes != 0)[0], 0, 1))
    assert (r[:, 9] == tiles.REASON_BITS["padding"]).all() and (r[:, :9] == 0).all()
    assert tiles.overview_tiles(v, 4, 0.0, 1.0)[1] is None


def test_value_range_by_stage():
    assert tiles.value_range("weights") == (0.0, 1.0, "viridis")
    lo, hi, cmap = tiles.value_range("scores", np.array([-3.0, 1.0, np.nan, -np.inf]))
    assert (lo, hi, cmap) == (-3.0, 3.0, "rdbu_r")
    assert tiles.value_range("scores", np.zeros(0))[:2] == (-1.0, 1.0)


def test_pack_refuses_what_the_page_cannot_read():
    with pytest.raises(TypeError):
        wire.pack({"part": "x", "a": np.zeros(3, np.float64)})
    with pytest.raises(ValueError):
        wire.pack({"part": "x", "a": float("nan")})  # JSON has no NaN: values go as float32 arrays
    data = wire.pack({"part": "x", "a": np.arange(3, dtype=np.uint16), "b": [np.ones(2, np.float32)], "c": 1})
    back = wire.unpack(data)
    assert back["a"].tolist() == [0, 1, 2] and back["b"][0].tolist() == [1.0, 1.0] and back["c"] == 1
    assert len(data) % 8 == 0


@pytest.mark.parametrize("stage", ["weights", "masked"])
def test_demo_block_formula_equals_pooling_its_cells(stage):
    """The demo's T = 32,768 data: its block maxima (from the coarse map) are pool_max of the cells, bitwise."""
    syn = Synthetic(32768, n_heads=2, pad=1000, stage=stage)
    for p in (2, 16, 32, 64):
        for r0, c0 in ((0, 0), (4096, 32768 - 1000 - 3 * p), (32768 - 8 * p, 32768 - 8 * p)):
            w = {"r0": r0, "r1": min(32768, r0 + 8 * p), "c0": c0 // p * p, "c1": min(32768, c0 // p * p + 6 * p),
                 "pool": p}
            vals, argmax, codes = syn.pooled(1, w)
            cells = syn.values(1, w["r0"], w["r1"], w["c0"], w["c1"])
            cell_codes = syn.reason_codes(w["r0"], w["r1"], w["c0"], w["c1"])
            ref, ref_arg = tiles.block_max_argmax(cells, p, cell_codes != 0)
            np.testing.assert_array_equal(vals, ref)
            np.testing.assert_array_equal(argmax, ref_arg)
            np.testing.assert_array_equal(codes, tiles.pool_reasons(cell_codes, p))


def test_a_detail_over_the_cell_cap_is_skipped_and_says_the_cap():
    whole = tiles.detail_window(None, 4096, 4096)
    assert not tiles.detail_too_big(whole)  # 4,096 x 4,096 is read (16.7 M cells)
    big = tiles.detail_window(None, 4100, 4096)
    assert tiles.detail_too_big(big) and tiles.detail_too_big(whole, max_cells=4096 * 4096 - 1)
    part = wire.unpack(wire.pack(tiles.skipped_detail(big, head=3, overview_id="ov")))
    assert part == {"part": "detail", "overview": "ov", "head": 3, "skipped": True,
                    "view": {"r0": 0, "r1": 4100, "c0": 0, "c1": 4096}, "max_cells": tiles.DETAIL_MAX_CELLS}
    # a window within the cap is computed, whatever its pool
    assert not tiles.detail_too_big(tiles.detail_window({"r0": 0, "r1": 32768, "c0": 0, "c1": 512}, 32768, 32768))


def test_a_short_maps_overview_carries_its_exact_cells_and_which_map_it_is():
    rng = np.random.default_rng(3)
    v = rng.random((4, 11, 11)).astype(np.float32)
    codes = np.triu(np.full((11, 11), tiles.REASON_BITS["causal"], np.uint8), 1)
    groups = tiles.choice_groups([tiles.choice_group("layer", [0, 1]),
                                  tiles.choice_group("stage", ["scores", "weights"], texts=["scores", "weights"],
                                                     after_heads=True)], [[0, "weights"], [1, "weights"]])
    ov = tiles.exact_overview(v, [str(i) for i in range(11)], codes=codes, choice={"layer": 1, "stage": "weights"},
                              choices=groups, scope="call-1")
    back = wire.unpack(wire.pack(ov))
    assert "tiles" not in back and back["values"].dtype == np.float32
    np.testing.assert_array_equal(back["values"], v)  # exact: bitwise the float32 cells
    np.testing.assert_array_equal(back["reasons"], codes)
    assert back["choice"] == {"layer": 1, "stage": "weights"} and back["scope"] == "call-1"
    assert back["choices"]["groups"][1]["after_heads"] and back["choices"]["valid"] == [[0, "weights"], [1, "weights"]]
    assert (back["lo"], back["hi"], back["colormap"]) == (0.0, 1.0, "viridis")
    small = tiles.exact_overview(v, [str(i) for i in range(11)], exact=False)  # uint8: a quarter of the bytes
    assert small["tiles"].nbytes * 4 == ov["values"].nbytes
    assert wire.part_bytes(ov) == v.nbytes + codes.nbytes + ov["rows"].nbytes  # cells, reasons, labels
    np.testing.assert_allclose(tiles.dequantize(small["tiles"], 0, 1), v, atol=1 / 510 + 1e-7)
    scores = tiles.exact_overview(v - 0.5, [str(i) for i in range(11)], stage="scores")
    assert scores["colormap"] == "rdbu_r" and scores["lo"] == -scores["hi"]


def test_overview_stack_and_choice_parts_refuse_what_the_page_could_not_draw():
    v = np.zeros((2, 3, 3), np.float32)
    with pytest.raises(ValueError):
        tiles.overview_payload(None, 1, 3, 3, list("abc"))  # neither tiles nor values
    with pytest.raises(ValueError):
        tiles.overview_payload(np.zeros((2, 3, 3), np.uint8), 1, 3, 3, list("abc"), values=v)  # both
    with pytest.raises(ValueError):
        tiles.overview_payload(None, 2, 3, 3, list("abc"), values=v[:, :2, :2])  # exact values are not pooled
    with pytest.raises(ValueError):
        tiles.stack_payload([tiles.exact_overview(v, list("abc"))])  # a stacked map says which it is
    with pytest.raises(ValueError):
        tiles.choice_group("layer", [0, 1], control="dial")
    with pytest.raises(ValueError):
        tiles.choice_group("layer", [0, 1], texts=["0"])
    stack = tiles.stack_payload([tiles.exact_overview(v, list("abc"), choice={"step": s}) for s in (0, 100)])
    assert [o["choice"] for o in wire.unpack(wire.pack(stack))["overviews"]] == [{"step": 0}, {"step": 100}]
    assert wire.part_bytes(stack) == sum(wire.part_bytes(o) for o in stack["overviews"]) > 2 * v.nbytes
    assert wire.unpack(wire.pack(tiles.deferred_stack()))["deferred"] is True
