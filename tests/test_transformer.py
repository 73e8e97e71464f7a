"""The transformer and its trace: consistency, masks by perturbation, capture vs fast path."""

import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model import ModelConfig, Trace, Transformer
from tests.forward import forward

PAD = 0


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(src_vocab_size=23, tgt_vocab_size=17, d_model=32, n_heads=4, n_encoder_layers=2,
               n_decoder_layers=2, d_ff=64, dropout=0.0, max_len=40)
    cfg.update(overrides)
    return Transformer(ModelConfig(**cfg)).eval()


SRC = torch.tensor([[5, 6, 7, 8, 2, PAD, PAD], [9, 10, 11, 12, 13, 14, 2]])
TGT = torch.tensor([[1, 4, 5, 6, PAD], [1, 7, 8, 9, 10]])


def test_trace_names_and_shapes():
    m = make_model()
    out = forward(m, SRC, TGT, capture=True)
    assert out.logits.shape == (2, 5, 17)
    assert list(out.trace) == ["encoder.0.self_attn", "encoder.1.self_attn", "decoder.0.self_attn",
                               "decoder.0.cross_attn", "decoder.1.self_attn", "decoder.1.cross_attn"]
    enc, dself, cross = out.trace["encoder.0.self_attn"], out.trace["decoder.0.self_attn"], \
        out.trace["decoder.0.cross_attn"]
    assert enc.weights.shape == (2, 4, 7, 7) and enc.q.shape == (2, 4, 7, 8)
    assert dself.weights.shape == (2, 4, 5, 5)
    assert cross.weights.shape == (2, 4, 5, 7) and cross.k.shape == (2, 4, 7, 8) and cross.v.shape == (2, 4, 7, 8)
    assert cross.query_input.shape == (2, 5, 32) and cross.key_input.shape == (2, 7, 32)
    assert cross.output.shape == (2, 5, 32) and cross.concat.shape == (2, 5, 32)
    assert dself.causal_mask is not None and enc.causal_mask is None and cross.causal_mask is None
    assert forward(m, SRC, TGT).trace is None


def test_trace_is_read_only():
    trace = forward(make_model(), SRC, TGT, capture=True).trace
    with pytest.raises(TypeError):
        trace["encoder.0.self_attn"] = None
    with pytest.raises(AttributeError):
        trace["encoder.0.self_attn"].weights = None


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_every_record_is_internally_consistent(norm, positional):
    m = make_model(norm=norm, positional=positional, activation="gelu")
    trace = forward(m, SRC, TGT, capture=True).trace
    for name, r in trace.items():
        d_k = r.q.shape[-1]
        torch.testing.assert_close(r.scores, r.q @ r.k.transpose(-2, -1), msg=name)
        assert torch.equal(r.scaled, r.scores / math.sqrt(d_k)), name
        allowed = r.mask.expand_as(r.scaled)
        assert torch.all(torch.isneginf(r.masked[~allowed])) and torch.equal(r.masked[allowed], r.scaled[allowed])
        torch.testing.assert_close(r.weights, torch.softmax(r.masked, -1), msg=name)
        torch.testing.assert_close(r.context, r.weights @ r.v, msg=name)
        torch.testing.assert_close(r.weights.sum(-1), torch.ones(r.weights.shape[:-1]), msg=name)
        B, H, Tq, dv = r.context.shape
        torch.testing.assert_close(r.concat, r.context.transpose(1, 2).reshape(B, Tq, H * dv))
        for field in ("q", "k", "v", "scores", "scaled", "weights", "context", "output", "query_input", "key_input"):
            assert torch.isfinite(getattr(r, field)).all(), (name, field)  # pad-position queries included


def test_records_use_the_module_projections():
    m = make_model()
    trace = forward(m, SRC, TGT, capture=True).trace
    r = trace["decoder.1.cross_attn"]
    attn = m.decoder_layers[1].cross_attn
    q = attn.W_query(r.query_input).view(2, 5, 4, 8).transpose(1, 2)
    k = attn.W_key(r.key_input).view(2, 7, 4, 8).transpose(1, 2)
    torch.testing.assert_close(r.q, q)
    torch.testing.assert_close(r.k, k)
    torch.testing.assert_close(r.output, attn.W_out(r.concat))


def test_capture_and_fast_paths_agree():
    for seed in range(3):
        m = make_model(seed=seed)
        fast, slow = forward(m, SRC, TGT).logits, forward(m, SRC, TGT, capture=True).logits
        assert (fast - slow).abs().max().item() <= 1e-5


def test_changing_a_target_token_leaves_earlier_logits_unchanged():
    m = make_model()
    src, tgt = SRC[1:], TGT[1:]
    base = forward(m, src, tgt, capture=True)
    for j in range(1, tgt.shape[1]):
        changed = tgt.clone()
        changed[0, j] = 3 if tgt[0, j] != 3 else 4
        out = forward(m, src, changed, capture=True)
        torch.testing.assert_close(out.logits[:, :j], base.logits[:, :j], atol=1e-6, rtol=0)
        assert not torch.allclose(out.logits[:, j:], base.logits[:, j:])  # and later ones do change


def test_upper_triangle_of_decoder_self_weights_is_exactly_zero():
    trace = forward(make_model(), SRC, TGT, capture=True).trace
    for name in trace.layers("decoder", "self_attn"):
        w = trace[name].weights
        assert torch.all(w.triu(diagonal=1) == 0)
        assert torch.all(w.diagonal(dim1=-2, dim2=-1)[..., 0] == 1)  # position 0 sees only itself


def test_appending_source_padding_leaves_outputs_unchanged():
    m = make_model()
    src = torch.tensor([[5, 6, 7, 2]])
    tgt = torch.tensor([[1, 4, 5]])
    base = forward(m, src, tgt, capture=True)
    padded_src = torch.tensor([[5, 6, 7, 2, PAD, PAD, PAD]])
    padded = forward(m, padded_src, tgt, capture=True)
    torch.testing.assert_close(padded.logits, base.logits, atol=1e-5, rtol=1e-5)
    for name in base.trace:
        b, p = base.trace[name], padded.trace[name]
        Tk = b.weights.shape[-1]
        torch.testing.assert_close(p.weights[..., : b.weights.shape[-2], :Tk], b.weights, atol=1e-5, rtol=1e-5)


def test_padded_source_keys_get_exactly_zero_weight():
    trace = forward(make_model(), SRC, TGT, capture=True).trace
    for name, r in trace.items():
        if name.startswith("encoder") or name.endswith("cross_attn"):
            assert torch.all(r.weights[0, :, :, 5:] == 0), name  # SRC[0] is padded from position 5
            assert torch.all(r.padding_mask[0, 0, 0] == (SRC[0] != PAD))
            assert torch.all(r.weights[1] > 0), name  # row 1 has no padding


def test_target_padding_appended_does_not_change_real_positions():
    m = make_model()
    src = SRC[:1]
    tgt = torch.tensor([[1, 4, 5, 6]])
    base = forward(m, src, tgt).logits
    padded = forward(m, src, torch.tensor([[1, 4, 5, 6, PAD, PAD]])).logits
    torch.testing.assert_close(padded[:, :4], base, atol=1e-5, rtol=1e-5)


def test_dropout_never_touches_recorded_weights_in_eval():
    m = make_model(dropout=0.5)
    a = forward(m, SRC, TGT, capture=True)
    b = forward(m, SRC, TGT, capture=True)
    assert torch.equal(a.logits, b.logits)
    for name in a.trace:
        assert torch.equal(a.trace[name].weights, b.trace[name].weights)


def test_training_mode_records_are_still_softmax_rows():
    m = make_model(dropout=0.5).train()
    trace = forward(m, SRC, TGT, capture=True).trace
    for r in trace.values():
        torch.testing.assert_close(r.weights.sum(-1), torch.ones(r.weights.shape[:-1]))


def test_backward_reaches_encoder_and_decoder():
    m = make_model().train()
    out = forward(m, SRC, TGT)
    out.logits.sum().backward()
    assert m.src_embed.tokens.weight.grad is not None and m.src_embed.tokens.weight.grad.abs().sum() > 0
    assert m.decoder_layers[0].cross_attn.W_key.weight.grad.abs().sum() > 0


def test_forward_does_not_store_state_on_modules():
    m = make_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    attrs_before = {n: set(vars(mod)) for n, mod in m.named_modules()}
    forward(m, SRC, TGT, capture=True)
    assert {n: set(vars(mod)) for n, mod in m.named_modules()} == attrs_before
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())


def test_concurrent_captures_do_not_mix():
    m = make_model()
    inputs = [(torch.randint(3, 23, (1, 4 + i)), torch.randint(3, 17, (1, 3 + i))) for i in range(8)]
    expected = [forward(m, s, t, capture=True).trace["decoder.1.cross_attn"].weights for s, t in inputs]
    results = [None] * 8

    def work(i):
        with torch.inference_mode():
            for _ in range(5):
                results[i] = forward(m, *inputs[i], capture=True).trace["decoder.1.cross_attn"].weights

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for got, want in zip(results, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_sequence_longer_than_max_len_is_a_clear_error():
    m = make_model(max_len=6)
    with pytest.raises(ValueError, match="max_len"):
        forward(m, torch.ones(1, 7, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))


def test_trace_numpy_dataframe_and_item():
    out = forward(make_model(), SRC, TGT, capture=True)
    npt = out.trace.numpy()
    assert isinstance(npt["decoder.0.cross_attn"].weights, np.ndarray)
    assert npt["decoder.0.cross_attn"].weights.dtype == np.float32
    assert npt["decoder.0.self_attn"].mask.dtype == bool
    src_tokens = ["a", "b", "c", "d", "[EOS]", "[PAD]", "[PAD]"]
    tgt_tokens = ["[BOS]", "x", "y", "z", "[PAD]"]
    df = out.trace.to_dataframe(src_tokens, tgt_tokens)
    assert len(df) == sum(r.weights[0].numel() for r in out.trace.values())
    for col in ("stack", "layer", "sublayer", "kind", "head", "query_pos", "query_token", "key_pos", "key_token",
                "score", "scaled", "weight", "masked"):
        assert col in df.columns
    cross = df[(df["stack"] == "decoder") & (df["layer"] == 1) & (df["sublayer"] == "cross_attn")]
    w = out.trace["decoder.1.cross_attn"].weights[0]
    row = cross[(cross["head"] == 2) & (cross["query_pos"] == 3) & (cross["key_pos"] == 1)]
    assert row["weight"].item() == pytest.approx(w[2, 3, 1].item())
    assert row["query_token"].item() == "z" and row["key_token"].item() == "b"
    assert set(cross[cross["key_pos"] >= 5].mask_reason) == {"padding"}
    dself = df[(df["stack"] == "decoder") & (df["layer"] == 0) & (df["sublayer"] == "self_attn")]
    assert set(dself[dself["key_pos"] > dself["query_pos"]].mask_reason) <= {"causal", "padding+causal"}
    # TGT[0][4] is [PAD]: key 4 is masked for every query, the future for the rest
    assert (dself["masked"] == ((dself["key_pos"] > dself["query_pos"]) | (dself["key_pos"] == 4))).all()
    item = out.trace.item(0, src_len=5, tgt_len=4)
    assert item["decoder.0.cross_attn"].weights.shape == (1, 4, 4, 5)
    assert item["encoder.0.self_attn"].q.shape == (1, 4, 5, 8)
    assert isinstance(item, Trace) and item.src_ids.shape == (1, 5)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="distinct"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, pad_id=1, bos_id=1)
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, dropout=1.5)
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, norm="middle")
    with pytest.raises(ValueError, match="n_encoder_layers"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, n_encoder_layers=0)
    with pytest.raises(ValueError, match="outside"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=2)
    with pytest.raises(ValueError, match="unknown config keys"):
        ModelConfig.from_dict({"src_vocab_size": 10, "tgt_vocab_size": 10, "colour": "red"})
    cfg = ModelConfig(src_vocab_size=10, tgt_vocab_size=12)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and cfg.d_k == 32


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), S=st.integers(1, 8), T=st.integers(1, 8), src_pad=st.integers(0, 3),
       heads=st.sampled_from([1, 2, 4]))
def test_property_random_batches(seed, S, T, src_pad, heads):
    m = make_model(seed=seed % 3, n_heads=heads)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 23, (2, S + src_pad), generator=g)
    src[0, S:] = PAD
    tgt = torch.randint(3, 17, (2, T), generator=g)
    out = forward(m, src, tgt, capture=True)
    assert (out.logits - forward(m, src, tgt).logits).abs().max() <= 1e-5
    for name, r in out.trace.items():
        for f in ("scores", "weights", "context", "output"):
            assert torch.isfinite(getattr(r, f)).all()
        if name.startswith("encoder") or name.endswith("cross_attn"):
            assert torch.all(r.weights[0, ..., S:] == 0)


def test_mask_reasons_per_head_agree_with_the_full_matrix():
    """forbidden_by_reason (one head, bool arrays) and mask_reason_matrix (strings) name the same cells the same
    way, including joined reasons, a window mask and a cell the mask forbids for none of the named reasons."""
    from model import allowed_matrix, forbidden_by_reason, mask_reason_matrix
    from model.core.attention import AttentionRecord

    out = forward(make_model(), SRC, TGT, capture=True)
    rec = out.trace["decoder.0.self_attn"]
    T = rec.weights.shape[-1]
    window = torch.ones(1, 1, T, T, dtype=torch.bool).tril(1).triu(-1)  # |i - j| <= 1
    mask = rec.mask & window
    mask[..., 0, 0] = False  # forbidden by none of padding / causal / window
    odd = AttentionRecord(**{**{f: getattr(rec, f) for f in rec.__dataclass_fields__}, "mask": mask,
                             "window_mask": window})
    for r in (rec, odd):
        full = mask_reason_matrix(r, batch_index=0)
        np.testing.assert_array_equal(allowed_matrix(r), full == "")
        for h in range(full.shape[0]):
            per_head = forbidden_by_reason(r, h)
            rebuilt = np.full(full.shape[1:], "", dtype=object)
            for why, cells in per_head.items():
                assert cells.any() and not (rebuilt[cells] != "").any()  # each cell has exactly one reason
                rebuilt[cells] = why
            np.testing.assert_array_equal(rebuilt, full[h])
    names = set(np.unique(mask_reason_matrix(odd)))
    assert {"other", "window", "causal+window"} <= names and "" in names
