"""One Trace contract: a full and a lazy trace answer every method alike, for the project's models and every tested
transformers family; a lazy trace after the fast first pass (flash attention) answers the same to float rounding."""

import dataclasses

import numpy as np
import pytest
import torch

from model import load, run
from model.core.rowstats import head_statistics
from tests.hf_models import FAMILIES, MORE_FAMILIES, build

TEXT = "the cat sat on the mat, the cat sat on the mat again"
TARGET = "a dog ran in the park"
OWN = {"dates": "checkpoints/dates", "induction": "checkpoints/induction"}


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    out = {name: load(path, "cpu") for name, path in OWN.items()}
    for family in FAMILIES + MORE_FAMILIES:
        out[family] = load(build(family, root / family), "cpu")
    return out


def traced(pipe, **kwargs):
    own = pipe.info.family.startswith("transformer")
    seq2seq = pipe.arch == "encoder-decoder"
    text = "Saturday, November 21, 2026" if own and seq2seq else TEXT
    return run(pipe, text, TARGET if seq2seq and not own else None, **kwargs)


def same(a, b, exact=True):
    if a is None or b is None:
        assert a is None and b is None
        return
    a = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape
    if exact:
        np.testing.assert_array_equal(a, b)
    else:  # float32 rounding, relative to the scale of the values (logits of 20 round at ~2e-6)
        finite = np.isfinite(a)
        np.testing.assert_array_equal(finite, np.isfinite(b))
        scale = float(np.abs(a[finite]).max()) if finite.any() else 1.0
        np.testing.assert_allclose(a[finite], b[finite], rtol=2e-5, atol=2e-6 * max(1.0, scale))


def check_contract(full, lazy, exact: bool):
    """Every method of the Trace contract, on both traces: the same answers (bitwise when ``exact``)."""
    assert list(full) == list(lazy) and len(full) == len(lazy) and not full.lazy and lazy.lazy
    for stack in ("encoder", "decoder"):
        for sub in ("self_attn", "cross_attn"):
            assert full.layers(stack, sub) == lazy.layers(stack, sub)
    for name in full:
        a_shape, b_shape = full.shape(name), lazy.shape(name)
        assert (a_shape.tq, a_shape.tk, a_shape.n_heads, a_shape.n_kv_heads) == \
            (b_shape.tq, b_shape.tk, b_shape.n_heads, b_shape.n_kv_heads)
        H, Tq, Tk = a_shape.n_heads, a_shape.tq, a_shape.tk
        rows, cols = range(Tq // 3, Tq), range(0, max(1, 2 * Tk // 3))
        for stage in ("scores", "scaled", "adjusted", "masked", "weights"):
            for h in {0, H - 1}:
                wa, wb = full.window(name, h, rows, cols, stage), lazy.window(name, h, rows, cols, stage)
                same(wa.values, wb.values, exact)
                assert wa.reasons.keys() == wb.reasons.keys()
                for r in wa.reasons:
                    np.testing.assert_array_equal(wa.reasons[r], wb.reasons[r])
        ra, rb = full.row(name, H - 1, Tq - 1), lazy.row(name, H - 1, Tq - 1)
        same(ra.weights, rb.weights, exact)
        np.testing.assert_array_equal(ra.allowed, rb.allowed)
        assert abs(float(ra.weights[ra.allowed].sum()) - 1) < 1e-5 or not ra.allowed.any()
        for how in ("max", "mean"):  # uint8 pictures: after the fast path, at most one step apart
            diff = np.abs(full.overview(name, how).astype(int) - lazy.overview(name, how).astype(int))
            assert diff.max() <= (0 if exact else 1), (name, how)
        thumbs = np.abs(full.thumbnails(name).astype(int) - lazy.thumbnails(name).astype(int))
        assert thumbs.max() <= (0 if exact else 1)
        assert full.overview_pool(name) == lazy.overview_pool(name)
        assert full.block_reasons(name).keys() == lazy.block_reasons(name).keys()
        for stage in ("scores", "weights"):
            same(full.stage_overview(name, stage), lazy.stage_overview(name, stage), exact)
        sa, sb = head_statistics(full.row_stats(name)), head_statistics(lazy.row_stats(name))
        assert sa.keys() == sb.keys()
        for k in sa:
            np.testing.assert_allclose(sa[k], sb[k], rtol=1e-5, atol=1e-6, err_msg=f"{name} {k}")
        same(full.columns(name, cols), lazy.columns(name, cols), exact=False)
        ra_, rb_ = full[name], lazy[name]  # the complete record
        for f in dataclasses.fields(ra_):
            if f.name in ("row_max",):
                continue
            x, y = getattr(ra_, f.name), getattr(rb_, f.name)
            if f.name in ("mask", "padding_mask", "causal_mask", "window_mask") and (x is None or y is None):
                continue
            same(x, y, exact or (x is not None and not torch.is_floating_point(torch.as_tensor(np.asarray(x)))))
    df_a, df_b = full.to_dataframe(), lazy.to_dataframe()
    assert list(df_a.columns) == list(df_b.columns) and len(df_a) == len(df_b) > 0
    np.testing.assert_array_equal(df_a["mask_reason"].to_numpy(), df_b["mask_reason"].to_numpy())
    assert list(lazy.item(0)) == list(full.item(0))
    numpy_lazy = lazy.numpy()
    assert not numpy_lazy.lazy and list(numpy_lazy) == list(full)


@pytest.mark.parametrize("family", list(OWN) + list(FAMILIES + MORE_FAMILIES))
def test_full_and_lazy_traces_answer_every_method_alike(pipes, family):
    pipe = pipes[family]
    full, lazy = traced(pipe, mode="full"), traced(pipe, mode="lazy")
    assert lazy.trace.exact  # short inputs: the exact first pass
    check_contract(full.trace, lazy.trace, exact=True)


@pytest.mark.parametrize("family", ["dates", "induction", "llama", "mistral", "gpt2", "bert", "t5"])
def test_statistics_left_for_later_are_the_same_numbers(pipes, family):
    """``statistics=False`` (the app's first map): the exact first pass keeps the context, each row's log-sum-exp
    and the max overview; the statistics and the mean overview come from one statistics pass when first asked,
    bitwise what the call would have computed, and every other answer is bitwise the same."""
    pipe = pipes[family]
    eager, later = traced(pipe, mode="lazy"), traced(pipe, mode="lazy", statistics=False)
    assert later.trace.exact and torch.equal(eager.logits.rows(), later.logits.rows())
    for name in eager.trace:
        assert eager.trace.statistics_ready(name) and not later.trace.statistics_ready(name)
        np.testing.assert_array_equal(eager.trace.overview(name, "max"), later.trace.overview(name, "max"))
        rows = range(0, eager.trace.shape(name).tq)
        w_a = eager.trace.window(name, 0, rows, range(0, eager.trace.shape(name).tk))
        w_b = later.trace.window(name, 0, rows, range(0, eager.trace.shape(name).tk))
        np.testing.assert_array_equal(w_a.values, w_b.values)
        assert later.trace.statistics_ready(name) is False  # windows need no statistics
    check_contract(traced(pipe, mode="full").trace, later.trace, exact=True)  # asks for statistics, mean overviews
    assert later.trace.statistics_passes == len(list(later.trace))
    for name in eager.trace:
        a, b = eager.trace.row_stats(name), later.trace.row_stats(name)
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, dict):
                for w in x:
                    np.testing.assert_array_equal(x[w].numpy(), y[w].numpy(), err_msg=f"{name} {f.name} {w}")
            elif x is not None:  # NaN where a statistic is undefined: equal when both are NaN
                np.testing.assert_array_equal(torch.as_tensor(x).numpy(), torch.as_tensor(y).numpy(),
                                              err_msg=f"{name} {f.name}")


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen3", "gpt2", "bert", "dates"])
def test_after_the_fast_first_pass_every_method_agrees_to_float_rounding(pipes, family, monkeypatch):
    """Forcing the fast path (flash attention + an overview pass) on a short input: the same answers within
    float32 rounding; the max overview and the masks exactly; the context is the one the fast path passed on."""
    import model.capture.recorder as capture

    monkeypatch.setattr(capture, "FAST_ABOVE", 0)
    pipe = pipes[family]
    full = traced(pipe, mode="full")
    from model.capture.recorder import Recorder

    original = Recorder.__init__

    def fast_recorder(self, *args, **kwargs):
        original(self, *args, **{**kwargs, "fast_above": 0})

    monkeypatch.setattr(Recorder, "__init__", fast_recorder)
    lazy = traced(pipe, mode="lazy")
    assert not lazy.trace.exact
    check_contract(full.trace, lazy.trace, exact=False)
    torch.testing.assert_close(lazy.logits.rows(), full.logits.rows(), atol=1e-4, rtol=1e-4)
