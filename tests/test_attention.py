"""attention() and MultiHeadAttention against independent references."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from model import MultiHeadAttention, Recorder, attention, causal_mask, fast_attention, padding_mask, subsequent_mask


def rand_qkv(B=2, H=3, Tq=5, Tk=7, d_k=4, d_v=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, Tq, d_k, generator=g), torch.randn(B, H, Tk, d_k, generator=g),
            torch.randn(B, H, Tk, d_v, generator=g))


def recorded(module, *args, **kwargs):
    """One module call with a recorder: (output, its record)."""
    recorder = Recorder()
    out = module(*args, recorder=recorder, name="attention", **kwargs)
    return out, recorder.records["attention"]


def test_matches_sdpa_without_mask():
    q, k, v = rand_qkv()
    rec = attention(q, k, v)
    torch.testing.assert_close(rec.context, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["padding", "causal", "both", "random"])
def test_matches_sdpa_with_mask(kind):
    q, k, v = rand_qkv(Tq=6, Tk=6)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [5, 6, 7, 8, 9, 10]])
    masks = {
        "padding": padding_mask(ids, 0),
        "causal": causal_mask(6),
        "both": padding_mask(ids, 0) & causal_mask(6),
        "random": torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1)) > 0.3,
    }
    mask = masks[kind]
    mask = mask | torch.eye(6, dtype=torch.bool)  # keep every row non-empty so SDPA is defined
    rec = attention(q, k, v, mask)
    torch.testing.assert_close(rec.context, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec.context, fast_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)


def test_hand_computation_three_tokens():
    # one head, d_k = 2: every number below is worked out by hand
    q = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]])
    k = torch.tensor([[[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]]])
    v = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]]])
    rec = attention(q, k, v)
    scores = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 2.0, 2.0]])
    assert torch.equal(rec.scores[0, 0], scores)
    torch.testing.assert_close(rec.scaled[0, 0], scores / math.sqrt(2))
    e = torch.exp(scores / math.sqrt(2))
    weights = e / e.sum(-1, keepdim=True)
    torch.testing.assert_close(rec.weights[0, 0], weights)
    torch.testing.assert_close(rec.context[0, 0], weights @ v[0, 0])
    # row 0: keys 0 and 2 tie, key 1 gets exp(0) / (2 exp(1/sqrt 2) + 1)
    torch.testing.assert_close(rec.weights[0, 0, 0, 1], torch.tensor(1 / (2 * math.exp(1 / math.sqrt(2)) + 1)))


def test_causal_hand_computation():
    q, k, v = rand_qkv(B=1, H=1, Tq=3, Tk=3)
    rec = attention(q, k, v, causal_mask(3))
    assert rec.weights[0, 0, 0, 0] == 1.0  # the first token sees only itself
    assert torch.all(rec.weights[0, 0].triu(diagonal=1) == 0)
    assert torch.isinf(rec.masked[0, 0, 0, 1]) and rec.masked[0, 0, 0, 1] < 0
    assert torch.equal(rec.masked[0, 0].tril(), rec.scaled[0, 0].tril())


def test_subsequent_mask_allows_the_past_and_the_token_itself():
    m = subsequent_mask(4)  # True = may attend, as every mask here
    assert torch.equal(m, ~torch.triu(torch.ones(4, 4), diagonal=1).bool())  # the future is triu(diagonal=1)
    assert m.diagonal().all()  # a token always sees itself
    assert torch.equal(causal_mask(4)[0, 0], m)


def test_fully_masked_row_is_zero_not_nan():
    q, k, v = rand_qkv(B=1, H=2, Tq=3, Tk=4)
    mask = torch.ones(1, 1, 3, 4, dtype=torch.bool)
    mask[..., 1, :] = False  # query 1 may attend to nothing
    rec = attention(q, k, v, mask)
    assert torch.equal(rec.weights[0, :, 1], torch.zeros(2, 4))
    assert torch.equal(rec.context[0, :, 1], torch.zeros(2, v.shape[-1]))
    assert torch.isfinite(rec.weights).all() and torch.isfinite(rec.context).all()
    torch.testing.assert_close(rec.weights[0, :, [0, 2]].sum(-1), torch.ones(2, 2))
    fast = fast_attention(q, k, v, mask)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, rec.context, atol=1e-6, rtol=1e-6)
    # gradients stay finite through a fully masked row
    q2 = q.clone().requires_grad_(True)
    attention(q2, k, v, mask).context.sum().backward()
    assert torch.isfinite(q2.grad).all()


def test_mask_must_be_bool():
    q, k, v = rand_qkv()
    with pytest.raises(TypeError, match="bool"):
        attention(q, k, v, torch.ones(5, 7))


def test_record_is_frozen():
    q, k, v = rand_qkv()
    rec = attention(q, k, v)
    with pytest.raises(AttributeError):
        rec.weights = None


@pytest.mark.parametrize("d_kv_in", [16, 10])
def test_multihead_matches_torch_multihead_attention(d_kv_in):
    torch.manual_seed(0)
    d_model, H, B, Tq, Tk = 16, 4, 2, 5, 7
    ours = MultiHeadAttention(d_model, H, d_kv_in=d_kv_in).eval()
    ref = torch.nn.MultiheadAttention(d_model, H, kdim=d_kv_in, vdim=d_kv_in, batch_first=True).eval()
    with torch.no_grad():
        if d_kv_in == d_model:  # torch packs W_q, W_k, W_v into one in_proj_weight
            ref.in_proj_weight.copy_(torch.cat([ours.W_query.weight, ours.W_key.weight, ours.W_value.weight]))
        else:
            ref.q_proj_weight.copy_(ours.W_query.weight)
            ref.k_proj_weight.copy_(ours.W_key.weight)
            ref.v_proj_weight.copy_(ours.W_value.weight)
        ref.in_proj_bias.copy_(torch.cat([ours.W_query.bias, ours.W_key.bias, ours.W_value.bias]))
        ref.out_proj.weight.copy_(ours.W_out.weight)
        ref.out_proj.bias.copy_(ours.W_out.bias)
    x = torch.randn(B, Tq, d_model)
    mem = torch.randn(B, Tk, d_kv_in)
    ids = torch.tensor([[3] * Tk, [3] * (Tk - 2) + [0, 0]])
    out, rec = recorded(ours, x, mem, padding_mask=padding_mask(ids, 0))
    ref_out, ref_w = ref(x, mem, mem, key_padding_mask=(ids == 0), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec.weights, ref_w, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec.output, out)
    # fast path agrees too
    fast_out = ours(x, mem, padding_mask=padding_mask(ids, 0))  # no recorder: SDPA, nothing kept
    torch.testing.assert_close(fast_out, out, atol=1e-5, rtol=1e-5)


def test_multihead_with_causal_matches_torch():
    torch.manual_seed(1)
    ours = MultiHeadAttention(8, 2).eval()
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.W_query.weight, ours.W_key.weight, ours.W_value.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.W_query.bias, ours.W_key.bias, ours.W_value.bias]))
        ref.out_proj.weight.copy_(ours.W_out.weight)
        ref.out_proj.bias.copy_(ours.W_out.bias)
    x = torch.randn(1, 5, 8)
    out, rec = recorded(ours, x, x, causal_mask=causal_mask(5))
    ref_out, ref_w = ref(x, x, x, attn_mask=~subsequent_mask(5), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec.weights, ref_w, atol=1e-5, rtol=1e-5)


def test_cross_attention_between_different_widths_and_lengths():
    mha = MultiHeadAttention(12, 3, d_kv_in=5)
    out, rec = recorded(mha, torch.randn(2, 6, 12), torch.randn(2, 4, 5))
    assert out.shape == (2, 6, 12)
    assert rec.weights.shape == (2, 3, 6, 4)
    assert rec.q.shape == (2, 3, 6, 4) and rec.k.shape == (2, 3, 4, 4) and rec.v.shape == (2, 3, 4, 4)
    assert rec.query_input.shape == (2, 6, 12) and rec.key_input.shape == (2, 4, 5)
    assert rec.concat.shape == (2, 6, 12)


def test_multihead_rejects_indivisible_width():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 3), H=st.integers(1, 4), Tq=st.integers(1, 9), Tk=st.integers(1, 9),
       d_k=st.integers(1, 8), d_v=st.integers(1, 8), seed=st.integers(0, 10_000), p=st.floats(0.0, 1.0))
def test_property_random_shapes_and_masks(B, H, Tq, Tk, d_k, d_v, seed, p):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, Tq, d_k, generator=g), torch.randn(B, H, Tk, d_k, generator=g),
               torch.randn(B, H, Tk, d_v, generator=g))
    mask = torch.rand(B, 1, Tq, Tk, generator=g) >= p  # p = 1 masks everything
    rec = attention(q, k, v, mask)
    for name in ("scores", "scaled", "weights", "context"):
        assert torch.isfinite(getattr(rec, name)).all(), name
    assert torch.equal(rec.scaled, rec.scores / math.sqrt(d_k))
    row_sums = rec.weights.sum(-1)
    has_key = mask.any(-1).expand(B, H, Tq)
    torch.testing.assert_close(row_sums[has_key], torch.ones_like(row_sums[has_key]))
    assert torch.all(row_sums[~has_key] == 0)
    assert torch.all(rec.weights[~mask.expand(B, H, Tq, Tk)] == 0)  # masked keys get exactly 0
    assert torch.all(torch.isneginf(rec.masked[~mask.expand(B, H, Tq, Tk)]))
    torch.testing.assert_close(rec.context, fast_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)
    safe = mask | ~mask.any(-1, keepdim=True)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=safe) * mask.any(-1, keepdim=True)
    torch.testing.assert_close(rec.context, ref, atol=1e-5, rtol=1e-5)
