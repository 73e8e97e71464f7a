"""The image overlay's maths and figures (viz/overlay.py) and the rows it draws (model/analysis/patch_maps.py).

The numbers are checked against a real traced call: the dates model's encoder self-attention, some of its positions
standing for a grid of patches (the image models' own check is in tests/test_vision_page.py)."""

import io

import numpy as np
import pytest
from PIL import Image

from model import run
from model.analysis.patch_maps import head_rows, patch_knockouts, query_row
from model.analysis.rollout import rollout
from model.analysis.tokens import TokenNorms
from viz import overlay

GRID = (2, 3)
POSITIONS = [1, 2, 3, 4, 5, 6]  # positions standing for patches r0c0 .. r1c2; 0 plays [CLS]


@pytest.fixture(scope="module")
def traced(dates):
    return run(dates, "Saturday, November 21, 2026")


def names_of(result):
    return sorted((n for n in result.trace if n.startswith("encoder.")), key=lambda n: int(n.split(".")[1]))


def picture(h=64, w=96):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2 % 256, y * 3 % 256, (x + y) % 256], -1).astype(np.uint8)


def test_patch_values_are_the_row_at_the_patch_positions_row_major():
    row = np.arange(10, dtype=np.float32) / 10
    v = overlay.patch_values(row, [9, 1, 2, 3, 4, 5], (2, 3))
    assert v.dtype == np.float32 and np.array_equal(v, row[[9, 1, 2, 3, 4, 5]].reshape(2, 3))
    with pytest.raises(ValueError, match="5 patch positions for a 2 x 3 grid"):
        overlay.patch_values(row, [1, 2, 3, 4, 5], (2, 3))
    others = overlay.other_tokens(row, [9, 1, 2, 3, 4, 5], [f"t{i}" for i in range(10)])
    assert [(p, lab) for p, lab, _ in others] == [(0, "t0"), (6, "t6"), (7, "t7"), (8, "t8")]


@pytest.mark.parametrize("how", [0, 3, "mean", "rollout"])
def test_the_overlay_draws_the_traces_row(traced, how):
    names = names_of(traced)
    trace = traced.trace
    layer, query = len(names) - 1, 0
    row = query_row(trace, names, layer, how, query)
    if how == "mean":
        heads = range(trace.shape(names[layer]).n_heads)
        expected = np.mean([trace.row(names[layer], h, query).weights for h in heads], axis=0)
    elif how == "rollout":
        expected = rollout([np.asarray(trace[n].numpy().weights)[0] for n in names])[query]
    else:
        expected = trace.row(names[layer], how, query).weights
    np.testing.assert_allclose(row, expected, rtol=0, atol=1e-6)
    values = overlay.patch_values(row, POSITIONS, GRID)
    fig = overlay.overlay_figure(picture(), values, [f"r{r}c{c}" for r in range(2) for c in range(3)])
    drawn = overlay.drawn_values(fig)
    # the numbers drawn are the trace's own row at each patch, bit for bit
    assert np.array_equal(drawn, np.asarray(row, np.float32)[POSITIONS].reshape(GRID))
    if isinstance(how, int):
        assert np.array_equal(drawn.ravel(), trace.row(names[layer], how, query).weights[POSITIONS])
    table = overlay.patch_table(row, POSITIONS, GRID, traced.tokens_for("encoder"))
    assert table.loc[POSITIONS, "weight"].tolist() == drawn.ravel().tolist()
    assert table.loc[POSITIONS, ["grid_row", "grid_col"]].values.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0],
                                                                               [1, 1], [1, 2]]
    assert table["grid_row"].isna().sum() == len(row) - len(POSITIONS)


def test_a_head_row_differs_from_another_heads(traced):
    names = names_of(traced)
    rows = head_rows(traced.trace, names[-1], 0)
    assert rows.shape[0] == traced.trace.shape(names[-1]).n_heads
    assert not np.allclose(rows[0], rows[1])  # the perturbation the overlay must follow
    np.testing.assert_allclose(rows.sum(-1), 1.0, atol=1e-5)


def test_overlay_figure_geometry_hover_and_outlines():
    img = picture(64, 96)
    v = np.array([[0.1, 0.2, 0.3], [0.0, 0.4, 0.05]], np.float32)
    labels = ["r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2"]
    fig = overlay.overlay_figure(img, v, labels, query_patch=4, marked=[0, 2], title="t", note="n")
    kinds = [t.type for t in fig.data]
    assert kinds == ["image", "heatmap", "scatter"]
    heat, targets = fig.data[1], fig.data[2]
    assert list(heat.x) == [15.5, 47.5, 79.5] and list(heat.y) == [15.5, 47.5]  # patch centres, 32 px patches
    assert heat.zmax == pytest.approx(0.4) and heat.zmin == 0
    # the heat layer fades towards 0: the picture shows through where the query reads little
    alphas = [float(c.split(",")[-1].rstrip(")")) for _, c in heat.colorscale]
    assert alphas[0] == pytest.approx(overlay.ALPHA_FLOOR * overlay.OPACITY) and alphas[-1] == overlay.OPACITY
    assert alphas == sorted(alphas)
    assert [c[0] for c in targets.customdata] == list(range(6))
    assert targets.text[4] == "r1c1<br>weight 0.4000"
    outlines = [(s.x0, s.x1, s.y0, s.y1, s.line.color) for s in fig.layout.shapes]
    assert outlines[-1] == (31.5, 63.5, 31.5, 63.5, overlay.QUERY_COLOUR)  # the query patch, last (on top)
    assert outlines[0][:4] == (-0.5, 31.5, -0.5, 31.5)
    # a 64 x 96 picture stays crisp (no smoothing); a photo is smoothed when scaled
    assert fig.data[0].zsmooth is False
    assert overlay.overlay_figure(picture(224, 224), v, labels).data[0].zsmooth == "fast"
    # HTML in a label is shown, never interpreted
    hostile = overlay.overlay_figure(img, v, ["<b>x</b>"] + labels[1:])
    assert hostile.data[2].text[0].startswith("&lt;b&gt;x&lt;/b&gt;")


def test_picked_patches_reads_clicks_boxes_and_ignores_the_rest():
    sel = {"selection": {"points": [{"customdata": [3]}, {"customdata": [1]}, {"customdata": [3]},
                                    {"customdata": [99]}, {"customdata": ["x"]}, {"customdata": [True]}, {}]}}
    assert overlay.picked_patches(sel, 6) == [3, 1]
    assert overlay.picked_patches(None, 6) == [] and overlay.picked_patches({"selection": {}}, 6) == []


def test_blend_is_the_picture_under_the_heat_layer():
    img = picture(8, 8)
    v = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    assert np.array_equal(overlay.blend(img, v, 1.0, 8, opacity=0.0, grey=False), img)
    grey = overlay.blend(img, v, 1.0, 8, opacity=0.0)  # the default: the picture in grey (its colours not the scale's)
    assert np.array_equal(grey, overlay.in_grey(img)) and (grey[..., 0] == grey[..., 2]).all()
    colours, alpha = overlay.heat_colours(v, 1.0, opacity=1.0)
    assert alpha[0, 1] == 1.0 and alpha[0, 0] == pytest.approx(overlay.ALPHA_FLOOR)
    full = overlay.blend(img, v, 1.0, 8, opacity=1.0, grey=False)
    assert np.array_equal(full[0, 7], colours[0, 1])  # the largest value: the heat colour alone
    expected = np.round((1 - alpha[1, 0]) * img[7, 0].astype(np.float32) + alpha[1, 0] * colours[1, 0]).astype(np.uint8)
    assert np.array_equal(full[7, 0], expected)
    assert not np.array_equal(colours[0, 0], colours[0, 1])
    png = overlay.overlay_png(img, v, side=64)
    assert Image.open(io.BytesIO(png)).size == (64, 64)


def test_head_grid_is_one_picture_with_a_click_target_per_head():
    v = np.random.default_rng(0).random((5, 2, 3)).astype(np.float32)
    fig = overlay.head_grid_figure(picture(64, 96), v, [f"head {h}" for h in range(5)], cols=3, tile=90)
    assert [t.type for t in fig.data] == ["image", "scatter"]
    assert [c[0] for c in fig.data[1].customdata] == list(range(5))
    assert [a.text for a in fig.layout.annotations] == [f"head {h}" for h in range(5)]


def test_norms_figure_draws_each_norm_with_its_line_and_flags_tokens():
    value = np.array([1.0, 1.1, 0.9, 10.0, 1.0, 1.2], np.float32)
    output = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 30.0], np.float32)
    norms = TokenNorms(name="encoder.0.self_attn", value=value, output=output, received=np.full(6, 1.0))
    assert norms.outliers(of="value") == [3] and norms.outliers(of="output") == [5]
    assert norms.threshold("value") == pytest.approx(4 * np.median(value))
    scaled = TokenNorms(name="x", value=value * 1000, output=None, received=np.ones(6))
    assert scaled.outliers() == [3] and scaled.outliers(of="output") == []  # a model's scale changes nothing
    flagged = np.isin(np.arange(6), [3, 5])
    fig = overlay.norms_figure(["[CLS]", "a", "b", "c", "d", "e"], norms.received,
                               {"value norm": value, "output norm": output}, flagged,
                               thresholds={"value norm": norms.threshold("value"), "output norm": float("inf")})
    assert fig.layout.meta["flagged"] == [3, 5]
    assert fig.layout.meta["thresholds"] == {"value norm": pytest.approx(4 * np.median(value)), "output norm": None}
    assert [d.name for d in fig.data] == ["attention received", "value norm", "output norm"]
    assert [sh.yref for sh in fig.layout.shapes] == ["y2"]  # a line only where there is a finite one
    assert fig.data[1].marker.color[3] == overlay.FLAG_COLOUR and fig.data[1].marker.color[0] != overlay.FLAG_COLOUR


def test_patch_knockouts_take_the_patches_out_of_every_querys_keys(traced):
    names = names_of(traced)
    T = traced.trace.shape(names[0]).tk
    spec = patch_knockouts(names, 4, T, [3, 1, 3])
    assert set(spec) == set(names) and set(spec[names[0]]) == {0, 1, 2, 3}
    cells = spec[names[0]][0]
    assert cells[:, [1, 3]].all() and cells.sum() == 2 * T
    assert set(patch_knockouts(names[:1], 4, T, [2], heads=[1])[names[0]]) == {1}
    with pytest.raises(ValueError, match="outside"):
        patch_knockouts(names, 4, T, [T])


def test_the_picture_under_the_heat_layer_is_grey_so_its_colours_are_not_read_as_weights():
    """Reported from the page: a yellow object under Viridis read as the largest weight. The overlay's picture is
    its luminance in all three channels (ITU-R 601), unless asked otherwise."""
    yellow = np.zeros((8, 8, 3), np.uint8)
    yellow[:4] = (255, 255, 0)
    grey = overlay.in_grey(yellow)
    assert grey.shape == yellow.shape and grey.dtype == np.uint8
    assert (grey[:4] == round(0.299 * 255 + 0.587 * 255)).all() and (grey[4:] == 0).all()
    v = np.ones((2, 2), np.float32)
    fig = overlay.overlay_figure(yellow, v, ["a", "b", "c", "d"])
    assert fig.data[0].source == overlay.image_uri(grey)
    assert overlay.overlay_figure(yellow, v, ["a", "b", "c", "d"], grey=False).data[0].source == \
        overlay.image_uri(yellow)
