"""The per-call recorder: lazy capture recomputes records bitwise, ablations in the call, attention() generalised."""

import dataclasses
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import ModelConfig, Recorder, Transformer, attention, repeat_kv
from model.core.interventions import ablate
from model.core.pooling import block_max, pool_max, pool_weights, quantize_weights, thumbnails
from tests.forward import forward

SRC = torch.tensor([[5, 6, 7, 8, 2, 0, 0], [9, 10, 11, 12, 13, 14, 2]])
TGT = torch.tensor([[1, 4, 5, 6, 0], [1, 7, 8, 9, 10]])


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(src_vocab_size=23, tgt_vocab_size=17, d_model=32, n_heads=4, n_encoder_layers=2,
               n_decoder_layers=2, d_ff=64, dropout=0.0, max_len=40)
    cfg.update(overrides)
    return Transformer(ModelConfig(**cfg)).eval()


def assert_records_identical(a, b, name=""):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (x is None) == (y is None), (name, f.name)
        if x is not None:
            assert torch.equal(x, y), (name, f.name)


@pytest.mark.parametrize("shape,factor", [((3, 683, 1024), 2), ((2, 37, 53), 8), ((1, 64, 64), 4), ((4, 5, 130), 16),
                                          ((2, 9, 7), 1), ((1, 20, 3), 32)])
def test_block_max_is_max_pool2d(shape, factor):
    """The overviews' block maxima (by rows, then columns) are max_pool2d's with ceil_mode, bitwise: partial edge
    blocks, -inf and NaN included."""
    torch.manual_seed(sum(shape) + factor)
    x = torch.randn(shape)
    x[x > 1.5] = float("-inf")
    x[..., 0, 0] = float("nan")
    ref = F.max_pool2d(x[None], factor, factor, ceil_mode=True)[0] if factor > 1 else x
    torch.testing.assert_close(block_max(x, factor), ref, atol=0, rtol=0, equal_nan=True)
    w = torch.rand(shape)
    ref_w = F.max_pool2d(w[None], factor, factor, ceil_mode=True)[0] if factor > 1 else w
    np.testing.assert_array_equal(pool_max(w, factor), quantize_weights(ref_w))


def test_lazy_records_are_bitwise_the_full_capture():
    m = make_model()
    with torch.inference_mode():
        full = forward(m, SRC[:1], TGT[:1], capture=True)
        lazy = forward(m, SRC[:1], TGT[:1], lazy=True)
    assert torch.equal(full.logits, lazy.logits)
    assert lazy.trace.lazy and list(lazy.trace) == list(full.trace)
    assert lazy.trace.materialized == 0  # nothing computed until asked
    for name in full.trace:
        assert_records_identical(full.trace[name], lazy.trace[name], name)
    assert lazy.trace.materialized == len(full.trace)


def test_lazy_trace_keeps_vectors_not_matrices_and_bounds_its_cache():
    m = make_model()
    with torch.inference_mode():
        src, tgt = torch.randint(3, 20, (1, 30)), torch.randint(3, 15, (1, 30))
        full = forward(m, src, tgt, capture=True).trace
        one = full["decoder.1.cross_attn"].nbytes()
        lazy = forward(m, src, tgt, lazy=True, max_lazy_cache_bytes=int(one * 1.5)).trace
    assert lazy.inputs_nbytes() < full.nbytes() / 2
    for name in lazy:
        lazy[name]
    assert len(lazy.cached_names()) == 1  # the LRU keeps what fits (at least the last one)
    lazy["encoder.0.self_attn"]
    assert lazy.cached_names() == ["encoder.0.self_attn"]
    for name in lazy:  # the estimate that makes room before computing is close to what the record adds
        inputs = lazy.inputs_of(name)
        added = lazy[name].nbytes() - inputs.nbytes()
        assert 0.8 * added <= inputs.record_bytes() <= 1.25 * added, name


def test_lazy_overview_is_the_pooled_weights():
    m = make_model()
    src, tgt = torch.randint(3, 20, (1, 37)), torch.randint(3, 15, (1, 9))
    with torch.inference_mode():
        full = forward(m, src, tgt, capture=True).trace
        lazy = forward(m, src, tgt, lazy=True).trace
    for name in full:
        w = full[name].weights[0]
        for how in ("max", "mean"):  # one cell per pixel at this length: both are the quantised weights
            ov = lazy.overview(name, how)
            assert ov.dtype == np.uint8 and ov.shape == tuple(w.shape)
            np.testing.assert_array_equal(ov, np.round(w.numpy().clip(0, 1) * 255).astype(np.uint8))
            np.testing.assert_array_equal(full.overview(name, how), ov)
        np.testing.assert_array_equal(lazy.thumbnails(name), full.thumbnails(name))
        assert lazy.thumbnails(name).shape == (4, min(w.shape[1], 64), min(w.shape[2], 64))


def test_pooled_overviews_keep_a_single_strong_key_and_the_mean():
    w = torch.zeros(1, 200, 200)
    w[0, 150, 7] = 1.0
    mx, mean = pool_weights(w, 4)
    assert mx.shape == (1, 50, 50) and mx.max() == 255 and (mx == 255).sum() == 1 and mx[0, 37, 1] == 255
    assert mean[0, 37, 1] == round(255 / 16) and mean.sum() == mean[0, 37, 1]
    t = thumbnails(mx)
    assert t.shape == (1, 50, 50)
    t = thumbnails(np.asarray(pool_weights(torch.zeros(1, 300, 300).index_put_(
        (torch.tensor([0]), torch.tensor([150]), torch.tensor([7])), torch.tensor(1.0)), 1)[0]))
    assert t.shape == (1, 64, 64) and t.max() == 255 and (t == 255).sum() == 1


def test_zero_ablation_changes_exactly_that_head_and_what_follows():
    m = make_model()
    name = "decoder.0.cross_attn"
    with torch.inference_mode():
        base = forward(m, SRC, TGT, capture=True)
        abl = forward(m, SRC, TGT, capture=True, ablations={name: {2: "zero"}})
    rec, ref = abl.trace[name], base.trace[name]
    assert torch.equal(rec.weights, ref.weights)  # the head still looks where it looked...
    assert torch.equal(rec.context[:, 2], torch.zeros_like(rec.context[:, 2]))  # ...but passes nothing on
    assert torch.equal(rec.context[:, [0, 1, 3]], ref.context[:, [0, 1, 3]])
    assert rec.ablated[:, 2].all() and not rec.ablated[:, [0, 1, 3]].any()
    for earlier in ("encoder.0.self_attn", "encoder.1.self_attn", "decoder.0.self_attn"):
        assert torch.equal(abl.trace[earlier].weights, base.trace[earlier].weights)
    assert not torch.equal(abl.trace["decoder.1.self_attn"].weights, base.trace["decoder.1.self_attn"].weights)
    assert not torch.allclose(abl.logits, base.logits)
    with torch.inference_mode():
        assert torch.equal(rec.output, m.decoder_layers[0].cross_attn.W_out(rec.concat))


def test_mean_ablation_uses_the_real_positions_only():
    ctx = torch.randn(2, 3, 5, 4)
    valid = torch.tensor([[True, True, True, False, False], [True] * 5])
    out, ablated = ablate(ctx, ({1: "mean"},), valid)
    torch.testing.assert_close(out[0, 1], ctx[0, 1, :3].mean(0, keepdim=True).expand(5, 4))
    torch.testing.assert_close(out[1, 1], ctx[1, 1].mean(0, keepdim=True).expand(5, 4))
    assert torch.equal(out[:, [0, 2]], ctx[:, [0, 2]]) and ablated.tolist() == [[False, True, False]] * 2


def test_batched_ablations_equal_one_run_each():
    m = make_model()
    src, tgt = SRC[1:].expand(4, -1), TGT[1:].expand(4, -1)
    per_item = [{"encoder.1.self_attn": {h: "zero"}} for h in range(4)]
    with torch.inference_mode():
        batched = forward(m, src, tgt, ablations=per_item).logits
        for h in range(4):
            alone = forward(m, SRC[1:], TGT[1:], ablations={"encoder.1.self_attn": {h: "zero"}}).logits
            torch.testing.assert_close(batched[h], alone[0], atol=1e-5, rtol=1e-5)


def test_bad_ablations_are_clear_errors():
    m = make_model()
    with pytest.raises(ValueError, match="cannot ablate"):
        forward(m, SRC, TGT, ablations={"decoder.9.cross_attn": {0: "zero"}})
    with pytest.raises(ValueError, match="heads 0..3"):
        forward(m, SRC, TGT, ablations={"decoder.0.cross_attn": {7: "zero"}})
    with pytest.raises(ValueError, match="ablation must be one of"):
        forward(m, SRC, TGT, ablations={"decoder.0.cross_attn": {0: "shuffle"}})


def test_lazy_capture_of_an_ablated_run_recomputes_the_ablation():
    m = make_model()
    abl = {"decoder.1.self_attn": {0: "mean", 3: "zero"}}
    with torch.inference_mode():
        full = forward(m, SRC[:1], TGT[:1], capture=True, ablations=abl).trace
        lazy = forward(m, SRC[:1], TGT[:1], lazy=True, ablations=abl).trace
    for name in full:
        assert_records_identical(full[name], lazy[name], name)


def test_lazy_trace_is_safe_from_many_threads():
    m = make_model()
    with torch.inference_mode():
        full = forward(m, SRC[:1], TGT[:1], capture=True).trace
        lazy = forward(m, SRC[:1], TGT[:1], lazy=True, max_lazy_cache_bytes=1).trace
    errors = []

    def worker(i):
        try:
            for _ in range(20):
                name = list(full)[i % len(full)]
                assert torch.equal(lazy[name].weights, full[name].weights)
        except BaseException as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# the generalised attention() ---------------------------------------------------------------------------------------

def test_scale_bias_and_softcap_by_hand():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 2, 3, 4, generator=g), torch.randn(1, 2, 5, 4, generator=g), torch.randn(1, 2, 5, 6,
                                                                                                         generator=g)
    bias = torch.randn(1, 2, 3, 5, generator=g)
    rec = attention(q, k, v, scale=0.3, bias=bias, softcap=2.0)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k)
    torch.testing.assert_close(rec.scores, scores)
    assert torch.equal(rec.scaled, rec.scores * 0.3)  # multiplied, as transformers does
    torch.testing.assert_close(rec.adjusted, 2.0 * torch.tanh(scores * 0.3 / 2.0) + bias)
    torch.testing.assert_close(rec.weights, torch.softmax(rec.adjusted, -1))
    torch.testing.assert_close(rec.context, rec.weights @ v)
    assert rec.logits is rec.adjusted and attention(q, k, v).adjusted is None


@pytest.mark.parametrize("H, H_kv", [(4, 1), (4, 2), (6, 3)])
def test_grouped_query_attention_matches_sdpa(H, H_kv):
    g = torch.Generator().manual_seed(H * 10 + H_kv)
    q, k, v = (torch.randn(2, H, 5, 8, generator=g), torch.randn(2, H_kv, 7, 8, generator=g),
               torch.randn(2, H_kv, 7, 3, generator=g))
    mask = torch.rand(2, 1, 5, 7, generator=g) > 0.3
    mask[..., 0] = True
    rec = attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, repeat_kv(k, H // H_kv), repeat_kv(v, H // H_kv), attn_mask=mask)
    torch.testing.assert_close(rec.context, ref, atol=1e-6, rtol=1e-5)
    assert rec.k.shape[1] == H_kv and rec.kv_groups == H // H_kv
    assert [rec.kv_head(h) for h in range(H)] == [h // (H // H_kv) for h in range(H)]
    for h in range(H):  # head h's scores use key head kv_head(h)
        torch.testing.assert_close(rec.scores[:, h], q[:, h] @ k[:, rec.kv_head(h)].transpose(-2, -1))


def test_half_precision_softmax_runs_in_float32_and_keeps_the_dtype():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=g).to(torch.bfloat16) for _ in range(3))
    rec = attention(q, k, v)
    assert rec.weights.dtype == torch.bfloat16 and rec.context.dtype == torch.bfloat16
    expected = torch.softmax(rec.scaled.float(), -1).to(torch.bfloat16)
    assert torch.equal(rec.weights, expected)
    assert rec.numpy().weights.dtype == np.float32  # NumPy has no bfloat16: exact float32 copies


def test_recorder_subset_keeps_only_what_was_asked():
    m = make_model()
    rec = Recorder({"decoder.1.cross_attn"})
    assert rec.wants("decoder.1.cross_attn") and not rec.wants("encoder.0.self_attn")
    out = forward(m, SRC, TGT, capture={"decoder.1.cross_attn"})
    assert list(out.trace) == ["decoder.1.cross_attn"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_without_intermediates_weights_and_context_are_bitwise_the_same(dtype):
    """The lazy first pass runs attention() in place; what it keeps (weights, context) must be bitwise what the
    full record holds, for every option: scale, softcap, bias, GQA, a mask with a fully masked row."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 5, 8, generator=g).to(dtype)
    k, v = torch.randn(2, 2, 6, 8, generator=g).to(dtype), torch.randn(2, 2, 6, 3, generator=g).to(dtype)
    bias = torch.randn(1, 4, 5, 6, generator=g).to(dtype)
    mask = torch.rand(2, 1, 5, 6, generator=g) > 0.4
    mask[0, 0, 2] = False  # a query with no key at all
    big_bias = torch.randn(2, 4, 5, 6, generator=g).to(dtype)  # more than batch item 0's scores: not in place
    cases = [((q, k, v), {}), ((q, k, v), {"mask": mask}), ((q, k, v), {"softcap": 1.5}),
             ((q, k, v), {"scale": 0.3, "softcap": 2.0, "bias": bias, "mask": mask}),
             ((q[:1], k[:1], v[:1]), {"bias": big_bias, "mask": mask})]
    for args, kwargs in cases:
        full = attention(*args, **kwargs)
        lean = attention(*args, keep_intermediates=False, **kwargs)
        assert torch.equal(full.weights, lean.weights) and torch.equal(full.context, lean.context), kwargs
        assert lean.scores is None and lean.masked is None and lean.scaled is None
        assert not full.weights.isnan().any()
