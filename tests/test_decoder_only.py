"""The project's transformer as a decoder-only model, and greedy decoding with a key/value cache."""

import pytest
import torch

from model import BOS_ID, EOS_ID, ModelConfig, Tokenizer, Transformer, TransformerPipeline, load, save_checkpoint
from tests.forward import forward


def make_decoder(seed=0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    cfg = dict(src_vocab_size=20, tgt_vocab_size=20, d_model=32, n_heads=4, n_encoder_layers=0, n_decoder_layers=2,
               d_ff=0, dropout=0.0, max_len=40, arch="decoder-only", norm="pre")
    cfg.update(overrides)
    return Transformer(ModelConfig(**cfg)).eval()


def test_decoder_only_has_no_encoder_and_no_cross_attention():
    m = make_decoder()
    assert m.src_embed is None and len(m.encoder_layers) == 0
    assert m.record_names() == ["decoder.0.self_attn", "decoder.1.self_attn"]
    out = forward(m, None, torch.tensor([[1, 5, 6, 7]]), capture=True)
    assert out.logits.shape == (1, 4, 20) and list(out.trace) == m.record_names()
    assert all(layer.feed_forward is None for layer in m.decoder_layers)  # d_ff = 0: attention-only
    with pytest.raises(ValueError, match="no encoder"):
        m.encode(torch.tensor([[1, 2]]))


def test_config_rules_for_decoder_only():
    with pytest.raises(ValueError, match="n_encoder_layers = 0"):
        ModelConfig(src_vocab_size=9, tgt_vocab_size=9, arch="decoder-only", n_encoder_layers=2)
    with pytest.raises(ValueError, match="one vocabulary"):
        ModelConfig(src_vocab_size=9, tgt_vocab_size=8, arch="decoder-only", n_encoder_layers=0)
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(src_vocab_size=9, tgt_vocab_size=9, arch="encoder-only-ish")


def test_causality_by_perturbation():
    m = make_decoder()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    base = forward(m, None, ids, capture=True)
    for t in range(1, 6):
        changed = ids.clone()
        changed[0, t] = 3 + (changed[0, t] % 7)
        out = forward(m, None, changed, capture=True)
        torch.testing.assert_close(out.logits[:, :t], base.logits[:, :t])  # earlier positions never see it
        for name in base.trace:
            torch.testing.assert_close(out.trace[name].weights[..., :t, :], base.trace[name].weights[..., :t, :])
    w = base.trace["decoder.1.self_attn"].weights[0]
    assert torch.all(w.triu(1) == 0)


def test_capture_and_fast_paths_agree():
    m = make_decoder(d_ff=16, norm="post")
    ids = torch.tensor([[1, 5, 6, 7, 0, 0], [1, 9, 8, 7, 6, 5]])
    torch.testing.assert_close(forward(m, None, ids).logits, forward(m, None, ids, capture=True).logits, atol=1e-5,
                               rtol=1e-5)


def _full_rerun_greedy(model: Transformer, src, limit):
    """Greedy decoding the slow way: the whole prefix through the decoder at every step (the reference)."""
    memory = src_padding = None
    if src is not None:
        memory, src_padding = model.encode(src)
    tgt = torch.full((1, 1), BOS_ID, dtype=torch.long)
    while tgt.shape[1] < limit:
        logits = model.decode(tgt, memory, src_padding)
        nxt = int(logits[0, -1].argmax())
        if nxt == EOS_ID:
            break
        tgt = torch.cat([tgt, torch.tensor([[nxt]])], dim=1)
    return tgt[0].tolist()


@pytest.mark.parametrize("decoder_only", [False, True])
def test_key_value_cache_decodes_as_the_full_rerun(decoder_only):
    torch.manual_seed(3)
    if decoder_only:
        m = make_decoder(seed=3, d_ff=32)
        src = None
    else:
        m = Transformer(ModelConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=32, n_heads=4, d_ff=32,
                                    dropout=0.0, max_len=40, norm="pre")).eval()
        src = torch.tensor([[4, 5, 6, 7, 2]])
    with torch.inference_mode():
        rows, timed_out = m.greedy(src, torch.tensor([[BOS_ID]]), 30, EOS_ID)
        assert rows[0] == _full_rerun_greedy(m, src, 30) and not timed_out
        cached_logits = forward(m, src, torch.tensor([rows[0]])).logits  # the decoded sequence, traced in one pass
    assert cached_logits.shape[1] == len(rows[0])


def test_greedy_stops_at_its_deadline():
    m = make_decoder(max_len=200)
    with torch.inference_mode():
        rows, timed_out = m.greedy(None, torch.tensor([[BOS_ID]]), 200, EOS_ID, deadline=0.0)
    assert timed_out and rows[0] == [BOS_ID]


def test_decoder_only_checkpoint_round_trip_and_pipeline(tmp_path):
    tok = Tokenizer.train(["cat dog owl fox red blue green"], level="word")
    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, d_model=16, n_heads=2,
                      n_encoder_layers=0, n_decoder_layers=2, d_ff=0, dropout=0.0, max_len=24, arch="decoder-only")
    path = save_checkpoint(tmp_path / "dec", Transformer(cfg).eval(), tok, tok, {"task": "test"})
    assert (path / "tokenizer.json").is_file() and not (path / "source_tokenizer.json").exists()
    pipe = load(path, "cpu")
    assert isinstance(pipe, TransformerPipeline) and pipe.arch == "decoder-only" and not pipe.info.has_cross
    res = pipe.run("cat dog owl cat dog")
    assert res.source is None and res.target.tokens == ["[BOS]", "cat", "dog", "owl", "cat", "dog"]
    assert list(res.trace) == ["decoder.0.self_attn", "decoder.1.self_attn"]
    assert res.logits.shape == (6, tok.vocab_size) and not res.generated
    gen = pipe.run("cat dog", max_new_tokens=5)
    assert gen.generated and gen.n_prompt == 3 and 3 <= len(gen.target.ids) <= 8
    assert gen.target.ids == pipe.greedy("cat dog", max_new_tokens=5)
    assert gen.stopped in ("eos", "limit")
