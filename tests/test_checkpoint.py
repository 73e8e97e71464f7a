"""Tokenizer, checkpoint round-trips and every documented checkpoint error, and the inference API."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    CaptureBudget,
    CaptureBudgetError,
    CheckpointError,
    ModelConfig,
    Tokenizer,
    Transformer,
    estimate_bytes,
    load,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from tests.forward import forward

WORDS = ["21 November 2026", "Saturday, November 21, 2026", "1.2.1999", "2026/11/21", "March 3, 1950"]
ISO = ["2026-11-21", "1999-02-01", "1950-03-03"]


@pytest.fixture(scope="module")
def tokenizers():
    return Tokenizer.train(WORDS, level="word"), Tokenizer.train(ISO, level="char")


@pytest.fixture()
def checkpoint(tmp_path, tokenizers):
    src_tok, tgt_tok = tokenizers
    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab_size=src_tok.vocab_size, tgt_vocab_size=tgt_tok.vocab_size, d_model=16,
                      n_heads=2, n_encoder_layers=1, n_decoder_layers=2, d_ff=32, dropout=0.0, max_len=24)
    path = save_checkpoint(tmp_path / "ckpt", Transformer(cfg).eval(), src_tok, tgt_tok, {"task": "test"})
    return path


# tokenizer -----------------------------------------------------------------------------------------------

def test_word_tokenizer_is_readable(tokenizers):
    src_tok, _ = tokenizers
    enc = src_tok.tokenize("Saturday, 21 November 2026")
    assert enc.tokens == ["Saturday", ",", "2", "1", "November", "2", "0", "2", "6"]
    assert enc.offsets[4] == (13, 21) and "Saturday, 21 November 2026"[13:21] == "November"
    assert [src_tok.id_to_token(i) for i in enc.ids] == enc.tokens
    assert not enc.truncated


def test_special_ids_and_specials(tokenizers):
    src_tok, tgt_tok = tokenizers
    for tok in tokenizers:
        assert [tok.id_to_token(i) for i in (PAD_ID, BOS_ID, EOS_ID, UNK_ID)] == ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]
    enc = tgt_tok.tokenize("2026-11-21", bos=True, eos=True)
    assert enc.tokens[0] == "[BOS]" and enc.tokens[-1] == "[EOS]" and enc.offsets[0] == (0, 0)
    assert tgt_tok.detokenize(enc.ids) == "2026-11-21"
    assert tgt_tok.detokenize(enc.ids + [5, 6]) == "2026-11-21"  # stops at [EOS]


@pytest.mark.parametrize("text", ["", "   ", "😀🎉", "مرحبا", "\x00\x01\x1b[31m", "<script>alert(1)</script>",
                                  "zero\u200bwidth", "a" * 10_000, "\n\t"])
def test_hostile_text_never_raises(tokenizers, text):
    for tok in tokenizers:
        enc = tok.tokenize(text, max_len=20, eos=True)
        assert len(enc.ids) <= 20 and enc.ids[-1] == EOS_ID
        assert len(enc.ids) == len(enc.tokens) == len(enc.offsets)


def test_unknown_characters_become_unk(tokenizers):
    src_tok, _ = tokenizers
    enc = src_tok.tokenize("21 😀 November")
    assert enc.tokens == ["2", "1", "[UNK]", "November"] and enc.n_unknown == 1
    assert src_tok.tokenize("21 November", eos=True).n_unknown == 0


def test_truncation_is_reported(tokenizers):
    src_tok, _ = tokenizers
    enc = src_tok.tokenize("21 November 2026 " * 10, max_len=8, eos=True)
    assert enc.truncated and len(enc.ids) == 8 and enc.ids[-1] == EOS_ID and enc.n_text_tokens == 70
    assert not src_tok.tokenize("21 November", max_len=8, eos=True).truncated


def test_tokenizer_save_load(tmp_path, tokenizers):
    src_tok, _ = tokenizers
    src_tok.save(tmp_path / "t.json")
    again = Tokenizer.from_file(tmp_path / "t.json")
    assert again.tokenize("November 21, 2026").ids == src_tok.tokenize("November 21, 2026").ids


def test_tokenizer_level_is_validated():
    with pytest.raises(ValueError, match="level"):
        Tokenizer.train(["x"], level="bpe-ish")


# checkpoints ---------------------------------------------------------------------------------------------

def test_round_trip_gives_identical_logits(checkpoint, tokenizers):
    config, model, src_tok, tgt_tok, meta = load_checkpoint(checkpoint)
    assert meta == {"task": "test"} and (checkpoint / "source_tokenizer.json").is_file()
    fresh = Transformer(config).eval()
    fresh.load_state_dict(load_file(str(checkpoint / "model.safetensors")))
    src = torch.tensor([src_tok.tokenize("21 November 2026", eos=True).ids])
    tgt = torch.tensor([tgt_tok.tokenize("2026-11", bos=True).ids])
    assert torch.equal(forward(model, src, tgt).logits, forward(fresh, src, tgt).logits)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # save again from the loaded model: byte-identical weights
    path2 = save_checkpoint(checkpoint.parent / "again", model, src_tok, tgt_tok, meta)
    a, b = load_file(str(checkpoint / "model.safetensors")), load_file(str(path2 / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shared_tokenizer_is_one_file(tmp_path, tokenizers):
    tok = tokenizers[0]
    cfg = ModelConfig(src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, d_model=8, n_heads=2,
                      n_encoder_layers=1, n_decoder_layers=1, d_ff=8)
    path = save_checkpoint(tmp_path / "c", Transformer(cfg), tok, tok)
    assert (path / "tokenizer.json").is_file() and not (path / "source_tokenizer.json").exists()
    assert load_checkpoint(path)[2].vocab_size == tok.vocab_size


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_checkpoint(tmp_path / "nope")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "meta.json", "source_tokenizer.json"])
def test_missing_file_is_named(checkpoint, name):
    (checkpoint / name).unlink()
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.") + ".*missing"):
        load_checkpoint(checkpoint)


def test_truncated_weights(checkpoint):
    f = checkpoint / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated or corrupt"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("payload", [b"", b"\x00" * 64, b"not a safetensors file at all"])
def test_corrupt_weights(checkpoint, payload):
    (checkpoint / "model.safetensors").write_bytes(payload)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(checkpoint)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_disguised_as_weights_is_refused_and_never_runs(checkpoint, tmp_path):
    marker = tmp_path / "pwned"
    (checkpoint / "model.safetensors").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_config_that_does_not_match_the_weights(checkpoint):
    cfg = json.loads((checkpoint / "config.json").read_text())
    cfg["d_ff"] = 48
    (checkpoint / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape mismatch.*feed_forward"):
        load_checkpoint(checkpoint)


def test_missing_and_extra_keys(checkpoint):
    f = checkpoint / "model.safetensors"
    state = load_file(str(f))
    state.pop("generator.bias")
    state["surprise.weight"] = torch.zeros(2)
    save_file(state, str(f))
    with pytest.raises(CheckpointError, match=r"missing keys \['generator\.bias'\].*unexpected keys \['surprise"):
        load_checkpoint(checkpoint)


def test_more_layers_in_config_than_in_weights(checkpoint):
    cfg = json.loads((checkpoint / "config.json").read_text())
    cfg["n_decoder_layers"] = 3
    (checkpoint / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="missing keys.*decoder_layers.2"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("text,match", [("{not json", "not valid JSON"), ('{"d_model": 16}', "missing config keys"),
                                        ("[1, 2]", "JSON object")])
def test_bad_config_json(checkpoint, text, match):
    (checkpoint / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=r"config\.json.*" + match):
        load_checkpoint(checkpoint)


def test_impossible_config_values(checkpoint):
    cfg = json.loads((checkpoint / "config.json").read_text())
    cfg["n_heads"] = 3
    (checkpoint / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json.*divisible"):
        load_checkpoint(checkpoint)


def test_tokenizer_that_does_not_match_the_config(checkpoint, tokenizers):
    tokenizers[1].save(checkpoint / "source_tokenizer.json")  # the target tokenizer in the source's place
    with pytest.raises(CheckpointError, match="src_vocab_size"):
        load_checkpoint(checkpoint)


def test_broken_tokenizer_file(checkpoint):
    (checkpoint / "target_tokenizer.json").write_text('{"version": "1.0", "model": 42}')
    with pytest.raises(CheckpointError, match=r"target_tokenizer\.json"):
        load_checkpoint(checkpoint)


def test_non_finite_weights(checkpoint):
    f = checkpoint / "model.safetensors"
    state = load_file(str(f))
    state["generator.bias"][0] = float("nan")
    save_file(state, str(f))
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("dtype, stored", [(torch.int64, "I64"), (torch.bool, "BOOL")])
def test_integer_or_bool_weights_are_refused_naming_the_tensor(checkpoint, dtype, stored):
    """Issue 23: int64 or bool weights must be refused by name, never cast to float32 silently."""
    f = checkpoint / "model.safetensors"
    state = load_file(str(f))
    state["generator.weight"] = (state["generator.weight"] * 100).to(dtype)
    save_file(state, str(f))
    with pytest.raises(CheckpointError, match=rf"model\.safetensors: weights stored as {stored} \(generator\.weight "
                                              rf"as {stored}\); this app reads F32, F16, BF16 only"):
        load_checkpoint(checkpoint)


# inference API -------------------------------------------------------------------------------------------

def test_load_and_run(checkpoint):
    pipe = load(checkpoint, device="cpu")
    assert pipe.device.type == "cpu" and pipe.meta["task"] == "test"
    res = pipe.run("21 November 2026")
    assert res.generated and res.source.tokens[-1] == "[EOS]" and res.target.tokens[0] == "[BOS]"
    assert res.output_text == pipe.generate("21 November 2026")
    S, T = len(res.source.ids), len(res.target.ids)
    assert res.trace["decoder.0.cross_attn"].weights.shape == (1, 2, T, S)
    assert res.logits.shape == (T, pipe.config.tgt_vocab_size)
    torch.testing.assert_close(torch.stack([res.probs_at(i) for i in range(T)]).sum(-1), torch.ones(T))
    # the greedy choices are the argmax of the traced call's logits at every step
    assert res.output_ids[:-1] == res.target.ids[1:]


def test_teacher_forced_run(checkpoint):
    pipe = load(checkpoint, device="cpu")
    res = pipe.run("21 November 2026", "2026-11-21")
    assert not res.generated
    assert res.target.tokens == ["[BOS]", *"2026-11-21"]
    assert len(res.output_tokens) == 11
    fresh = forward(pipe.model, torch.tensor([res.source.ids]), torch.tensor([res.target.ids])).logits[0]
    torch.testing.assert_close(res.logits.rows(), fresh, atol=1e-5, rtol=1e-5)


def test_batch_with_padding_matches_single_runs(checkpoint):
    pipe = load(checkpoint, device="cpu")
    texts = ["21 November 2026", "1.2.1999", "Saturday, November 21, 2026"]
    assert pipe.generate(texts) == [pipe.generate(t) for t in texts]
    batch = pipe.run_batch(texts, ["2026-11-21", "1999", "2026-11-21-x"])
    for text, tgt, res in zip(texts, ["2026-11-21", "1999", "2026-11-21-x"], batch, strict=True):
        single = pipe.run(text, tgt)
        assert res.source.ids == single.source.ids
        for name in single.trace:
            torch.testing.assert_close(res.trace[name].weights, single.trace[name].weights, atol=1e-5, rtol=1e-5)


def test_a_batch_refuses_a_number_of_interventions_that_is_neither_one_nor_one_per_text(checkpoint):
    pipe = load(checkpoint, device="cpu")
    texts = ["21 November 2026", "1.2.1999", "Saturday, November 21, 2026"]
    two = [{"encoder.0.self_attn": {0: [(0, 0)]}}] * 2
    with pytest.raises(ValueError, match="one knockout per text"):
        pipe.run_batch(texts, knockouts=two)
    with pytest.raises(ValueError, match="one ablation per text"):
        pipe.run_batch(texts, ablations=[{"encoder.0.self_attn": {0: "zero"}}] * 2)
    one = pipe.run_batch(texts[:2], knockouts=two[:1])  # one for all
    per_text = pipe.run_batch(texts[:2], knockouts=two)
    for a, b in zip(one, per_text, strict=True):
        assert a.output_ids == b.output_ids


@pytest.mark.parametrize("text", ["", "😀", "\x00", "<b>x</b>", "21 November 2026 " * 50])
def test_hostile_sources_run(checkpoint, text):
    pipe = load(checkpoint, device="cpu")
    res = pipe.run(text)
    assert len(res.source.ids) <= pipe.config.max_len and len(res.target.ids) <= pipe.config.max_len
    assert res.source.truncated == (len(text) > 100)
    for r in res.trace.values():
        assert torch.isfinite(r.weights).all()


def test_generation_respects_max_new_tokens(checkpoint):
    pipe = load(checkpoint, device="cpu")
    res = pipe.run("21 November 2026", max_new_tokens=3)
    assert len(res.target.ids) <= 4


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_load_copies_work_independently(checkpoint, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(checkpoint, other)
    assert load(other, "cpu").generate("1.2.1999") == load(checkpoint, "cpu").generate("1.2.1999")


def test_selective_capture_records_only_the_named_attention(checkpoint):
    pipe = load(checkpoint, device="cpu")
    full = pipe.run("21 November 2026", "2026-11-21")
    part = pipe.run("21 November 2026", "2026-11-21", capture={"decoder.1.cross_attn"})
    assert list(part.trace) == ["decoder.1.cross_attn"]
    # other layers ran the fast path, so equal to float tolerance, not bitwise
    torch.testing.assert_close(part.trace["decoder.1.cross_attn"].weights, full.trace["decoder.1.cross_attn"].weights,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(part.logits.rows(), full.logits.rows(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot capture"):
        pipe.run("x", capture={"decoder.9.cross_attn"})


def test_capture_budget_refuses_before_running(checkpoint, monkeypatch):
    pipe = load(checkpoint, device="cpu")
    S, T = len(pipe.tokenize_source("21 November 2026").ids), len(pipe.tokenize_target("2026-11-21").ids)
    need_all = estimate_bytes(pipe, S, T)
    need_one = estimate_bytes(pipe, S, T, capture={"decoder.0.cross_attn"})
    assert 0 < need_one < need_all
    res = pipe.run("21 November 2026", "2026-11-21")
    assert res.estimate_bytes == need_all and res.mode == "full"
    assert res.trace.nbytes() <= need_all  # the estimate is an upper bound
    assert res.trace.nbytes() >= 0.8 * need_all  # and a tight one
    calls = []
    monkeypatch.setattr(pipe.model, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(CaptureBudgetError, match="MiB"):
        pipe.run("21 November 2026", "2026-11-21", mode="full", budget=CaptureBudget(full_bytes=need_all - 1))
    assert calls == []  # refused before the traced forward
    monkeypatch.undo()
    lazy = pipe.run("21 November 2026", "2026-11-21", budget=CaptureBudget(full_bytes=need_all - 1))
    assert lazy.mode == "lazy" and lazy.trace.lazy  # "auto": over the budget, captured lazily


def test_generation_that_hits_the_limit_says_so(checkpoint):
    pipe = load(checkpoint, device="cpu")
    with torch.no_grad():
        never_eos = Transformer(pipe.config).eval()
        never_eos.load_state_dict(pipe.model.state_dict())
        never_eos.generator.bias[EOS_ID] = -100.0
        always_eos = Transformer(pipe.config).eval()
        always_eos.load_state_dict(pipe.model.state_dict())
        always_eos.generator.bias[EOS_ID] = 100.0
    from model import TransformerPipeline
    capped = TransformerPipeline(pipe.config, never_eos, pipe.src_tokenizer, pipe.tgt_tokenizer).run(
        "1.2.1999", max_new_tokens=5)
    assert len(capped.target.ids) == 6 and not capped.stopped_at_eos
    done = TransformerPipeline(pipe.config, always_eos, pipe.src_tokenizer, pipe.tgt_tokenizer).run("1.2.1999")
    assert done.target.tokens == ["[BOS]"] and done.stopped_at_eos and done.output_text == ""


def test_greedy_ids_then_run_equals_run(checkpoint):
    pipe = load(checkpoint, device="cpu")
    ids = pipe.greedy("21 November 2026")
    assert ids[0] == BOS_ID and pipe.tgt_tokenizer.detokenize(ids) == pipe.generate("21 November 2026")
    a, b = pipe.run("21 November 2026"), pipe.run("21 November 2026", generated_ids=ids)
    assert a.target.ids == b.target.ids and a.output_text == b.output_text and b.generated
    for name in a.trace:
        assert torch.equal(a.trace[name].weights, b.trace[name].weights)
    with pytest.raises(ValueError, match="decoder start"):
        pipe.run("21 November 2026", generated_ids=[5, 6])
