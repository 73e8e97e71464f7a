"""Trained models in the Hugging Face layout: every family's records equal transformers' own eager attention.

Tiny random models of each family are built from config objects and saved with save_pretrained (nothing is
downloaded); the reference is the same checkpoint loaded by transformers with attn_implementation="eager".
"""

import dataclasses
import json
import math
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

from model import CheckpointError, estimate_bytes, load
from model.capture.recorder import Recorder
from tests.hf_models import FAMILIES, MORE_FAMILIES, build
from tests.hostile import forbid, public_policy, sparse_safetensors

transformers = pytest.importorskip("transformers")

TEXT = "the cat sat on the mat, hello world 😀\nand again the cat sat"
TARGET = "a dog ran in the park"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {fam: build(fam, root / fam) for fam in FAMILIES}


@pytest.fixture(scope="module")
def pipes(dirs):
    return {fam: load(path, "cpu") for fam, path in dirs.items()}


def traced(pipe, **kwargs):
    return pipe.run(TEXT, TARGET if pipe.arch == "encoder-decoder" else None, **kwargs)


def eager(pipe, path, res):
    """transformers' own eager attention on the same ids: {name: weights (1, H, Tq, Tk)}, logits."""
    ref = type(pipe.model).from_pretrained(path, attn_implementation="eager").eval()
    src = None if res.source is None else torch.tensor([res.source.ids])
    tgt = None if res.target is None else torch.tensor([res.target.ids])
    with torch.no_grad():
        if pipe.arch == "encoder-decoder":
            out = ref(input_ids=src, decoder_input_ids=tgt, output_attentions=True)
            att = {**{f"encoder.{i}.self_attn": a for i, a in enumerate(out.encoder_attentions)},
                   **{f"decoder.{i}.self_attn": a for i, a in enumerate(out.decoder_attentions)},
                   **{f"decoder.{i}.cross_attn": a for i, a in enumerate(out.cross_attentions)}}
        elif pipe.arch == "decoder-only":
            out = ref(input_ids=tgt, output_attentions=True)
            att = {f"decoder.{i}.self_attn": a for i, a in enumerate(out.attentions)}
        else:
            out = ref(input_ids=src, output_attentions=True)
            att = {f"encoder.{i}.self_attn": a for i, a in enumerate(out.attentions)}
    return att, out.logits[0]


def rows_with_a_key(rec):
    return rec.mask.expand_as(rec.weights).any(-1) if rec.mask is not None else torch.ones(rec.weights.shape[:-1],
                                                                                           dtype=torch.bool)


def compare(res, att, atol=1e-6):
    assert set(att) == set(res.trace), (sorted(att), sorted(res.trace))
    worst = 0.0
    for name, ref_w in att.items():
        rec = res.trace[name]
        keep = rows_with_a_key(rec)
        worst = max(worst, float((rec.weights - ref_w).abs()[keep].max()))
    assert worst <= atol, worst
    return worst


@pytest.mark.parametrize("family", FAMILIES)
def test_records_equal_transformers_eager_attention(pipes, dirs, family):
    pipe = pipes[family]
    res = traced(pipe)
    att, logits = eager(pipe, dirs[family], res)
    compare(res, att)
    torch.testing.assert_close(res.logits.rows(), logits.float(), atol=1e-5, rtol=1e-5)
    for rec in res.trace.values():  # every record is internally the math it claims
        torch.testing.assert_close(rec.weights.sum(-1)[rows_with_a_key(rec)],
                                   torch.ones_like(rec.weights.sum(-1)[rows_with_a_key(rec)]))
        assert torch.isfinite(rec.weights).all() and torch.isfinite(rec.context).all()


@pytest.mark.parametrize("family", MORE_FAMILIES)
def test_more_families_equal_transformers_eager_attention(tmp_path, family):
    """Families beyond the ones the app was built for go through the same attention function: the same numbers."""
    pipe = load(build(family, tmp_path / family), "cpu")
    res = traced(pipe)
    att, logits = eager(pipe, tmp_path / family, res)
    assert compare(res, att, atol=0.0) == 0.0
    torch.testing.assert_close(res.logits.rows(), logits.float(), atol=0, rtol=0)
    lazy = traced(pipe, mode="lazy")
    for name in res.trace:
        assert torch.equal(lazy.trace[name].weights, res.trace[name].weights), name
    if family == "gemma2":  # the softcap is a stage of its own
        assert all(rec.adjusted is not None for rec in res.trace.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_and_uncaptured_calls_agree(pipes, family):
    pipe = pipes[family]
    a, b = traced(pipe), traced(pipe, capture=False)
    assert b.trace is None and b.mode == "none"
    torch.testing.assert_close(a.logits.rows(), b.logits.rows(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_lazy_records_are_bitwise_the_full_capture(pipes, family):
    pipe = pipes[family]
    full, lazy = traced(pipe), traced(pipe, mode="lazy")
    assert lazy.trace.lazy and list(lazy.trace) == list(full.trace) == list(pipe.info.record_names)
    for name in full.trace:
        a, b = full.trace[name], lazy.trace[name]
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), (name, f.name)


@pytest.mark.parametrize("family", FAMILIES)
def test_stage_inputs_and_outputs_are_the_modules_own_tensors(pipes, dirs, family):
    """query_input is the tensor the module's projections read; output is its output projection's result."""
    pipe = pipes[family]
    res = traced(pipe)
    # a private copy of the model with hooks (never the shared one): what did each module really see and make?
    copy = load(dirs[family], "cpu")
    seen = {}
    hooks = []
    for module, spec in copy.specs.items():
        hooks.append(module.register_forward_pre_hook(
            lambda m, args, kwargs, n=spec.name: seen.__setitem__(n + ":in", kwargs.get("hidden_states", args[0]
                                                                                         if args else None)),
            with_kwargs=True))
        if spec.out_proj is not None:
            hooks.append(spec.out_proj.register_forward_hook(
                lambda m, args, out, n=spec.name: seen.__setitem__(n + ":out", out)))
    try:
        again = traced(copy)
    finally:
        for h in hooks:
            h.remove()
    for name, rec in again.trace.items():
        assert rec.query_input is not None and torch.equal(rec.query_input, seen[name + ":in"]), name
        assert rec.output is not None and torch.equal(rec.output, seen[name + ":out"]), name
        if name.endswith("cross_attn"):
            assert rec.key_input.shape[1] == len(res.source.ids)
        B, H, Tq, dv = rec.context.shape
        assert torch.equal(rec.concat, rec.context.transpose(1, 2).reshape(B, Tq, H * dv))
    for name in res.trace:  # and the shared pipe recorded the same numbers
        assert torch.equal(res.trace[name].weights, again.trace[name].weights)


def test_model_info_per_family(pipes):
    kinds = {f: p.arch for f, p in pipes.items()}
    assert kinds == {"bert": "encoder-only", "roberta": "encoder-only", "distilbert": "encoder-only",
                     "gpt2": "decoder-only", "llama": "decoder-only", "mistral": "decoder-only",
                     "qwen2": "decoder-only", "qwen3": "decoder-only", "t5": "encoder-decoder",
                     "bart": "encoder-decoder"}
    t5 = pipes["t5"].info
    assert t5.record_names[:2] == ("encoder.0.self_attn", "encoder.1.self_attn")
    assert "decoder.1.cross_attn" in t5.record_names and t5.has_cross and t5.n_encoder_layers == 2
    assert pipes["mistral"].info.n_kv_heads == 1 and pipes["llama"].info.n_kv_heads == 2
    assert pipes["gpt2"].info.dtype == "float32" and pipes["gpt2"].info.parameters > 0


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen3"])
def test_grouped_query_records_say_which_kv_head_each_head_reads(pipes, family):
    pipe = pipes[family]
    rec = traced(pipe).trace["decoder.1.self_attn"]
    H, H_kv = pipe.info.n_heads, pipe.info.n_kv_heads
    assert rec.q.shape[1] == H and rec.k.shape[1] == H_kv == rec.v.shape[1]
    for h in range(H):
        torch.testing.assert_close(rec.scores[0, h], rec.q[0, h] @ rec.k[0, rec.kv_head(h)].T)


@pytest.mark.parametrize("family, layer", [("mistral", 0), ("mistral", 1), ("qwen3", 1)])
def test_sliding_window_and_causal_cells(pipes, family, layer):
    pipe = pipes[family]
    res = traced(pipe)
    rec = res.trace[f"decoder.{layer}.self_attn"]
    T = rec.weights.shape[-1]
    window = pipe.model.config.sliding_window
    assert T > window + 2
    q, k = torch.arange(T)[:, None], torch.arange(T)[None, :]
    assert torch.equal(rec.causal_mask[0, 0], k <= q)
    assert torch.equal(rec.window_mask[0, 0], k > q - window)
    assert torch.equal(rec.mask[0, 0], (k <= q) & (k > q - window))
    assert torch.all(rec.weights[0][:, ~((k <= q) & (k > q - window))] == 0)
    from model import mask_reason_matrix
    reasons = mask_reason_matrix(rec)[0]
    assert reasons[T - 1, 0] == "window" and reasons[0, T - 1] == "causal" and reasons[T - 1, T - 1] == ""


def test_qwen3_full_attention_layer_has_no_window(pipes):
    rec = traced(pipes["qwen3"]).trace["decoder.0.self_attn"]  # max_window_layers=1: layer 0 attends fully
    assert rec.window_mask is None and rec.mask[0, 0].sum() == rec.mask.shape[-1] * (rec.mask.shape[-1] + 1) // 2


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_padded_batch_gives_zero_rows_not_nan(pipes, family):
    """Left padding makes a pad query's row fully masked in a causal model: zeros, never NaN."""
    from model.hf.interface import call_context

    pipe = pipes[family]
    ids = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 7, 8, 9]])
    am = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    recorder = Recorder(True)
    with call_context(recorder, pipe.specs, {"decoder": am.bool(), "encoder": am.bool()}), torch.inference_mode():
        pipe.model(input_ids=ids, attention_mask=am)
    for name, rec in recorder.records.items():
        assert torch.isfinite(rec.weights).all() and torch.isfinite(rec.context).all(), name
        assert torch.all(rec.weights[1][..., [0, 1]] == 0), name  # padded keys get nothing
        if pipe.arch == "decoder-only":
            assert torch.all(rec.weights[1, :, 0] == 0)  # the first pad query has no key at all
        assert torch.equal(rec.padding_mask[1, 0, 0], am[1].bool())


@pytest.mark.parametrize("family, dtype", [("llama", torch.bfloat16), ("gpt2", torch.float16)])
def test_half_precision_checkpoints_run_and_record_in_their_dtype(dirs, tmp_path, family, dtype):
    """A checkpoint stored in bfloat16 / float16 runs in that dtype; its records keep it and equal transformers'
    eager attention run the same way (softmax in float32, cast back)."""
    src = dirs[family]
    ref_model = type(load(src, "cpu").model).from_pretrained(src).to(dtype)
    half = tmp_path / f"{family}-{dtype}"
    ref_model.save_pretrained(half)
    shutil.copy(src / "tokenizer.json", half / "tokenizer.json")
    pipe = load(half, "cpu")
    assert pipe.info.dtype == str(dtype).removeprefix("torch.")
    res = traced(pipe)
    for rec in res.trace.values():
        assert rec.weights.dtype == dtype and rec.q.dtype == dtype
    T = len(res.target.ids)
    assert estimate_bytes(pipe, T, T) < estimate_bytes(load(src, "cpu"), T, T)
    att, logits = eager(pipe, half, res)
    assert all(a.dtype == dtype for a in att.values())
    worst = max(float((res.trace[n].weights.float() - a.float()).abs()[rows_with_a_key(res.trace[n])].max())
                for n, a in att.items())
    assert worst == 0.0, worst  # the same operations in the same dtype: the same numbers
    np_weights = res.trace.numpy()[pipe.info.record_names[0]].weights
    assert str(np_weights.dtype) == ("float32" if dtype == torch.bfloat16 else "float16")  # NumPy has no bfloat16


def test_eight_threads_share_one_model(pipes):
    pipe = pipes["gpt2"]
    texts = [f"the cat {'sat ' * i}on the mat" for i in range(8)]
    expected = [pipe.run(t).trace["decoder.1.self_attn"].weights for t in texts]
    got, errors = {}, []

    def worker(i):
        try:
            for _ in range(3):
                got[i] = pipe.run(texts[i]).trace["decoder.1.self_attn"].weights
        except BaseException as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(8):
        assert torch.equal(got[i], expected[i]), i


def test_negative_control_a_broken_mask_fails_the_comparison(pipes, dirs, monkeypatch):
    """If the mask function lost the causal part, the comparison with eager must fail: it is not vacuous."""
    from transformers import AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    from model.hf.interface import ATTENTION_NAME

    def no_causality(*args, **kwargs):
        mask = sdpa_mask(*args, **{**kwargs, "allow_is_causal_skip": False})
        return torch.ones_like(mask)

    pipe = pipes["llama"]
    good = traced(pipe)
    att, _ = eager(pipe, dirs["llama"], good)
    monkeypatch.setitem(AttentionMaskInterface._global_mapping, ATTENTION_NAME, no_causality)
    broken = traced(pipe)
    with pytest.raises(AssertionError):
        compare(broken, att)


def test_unknown_tokens_are_counted(pipes):
    """A WordPiece text with a character its vocabulary lacks has [UNK] tokens, counted; a byte-level BPE reads every
    text (it has no unknown token)."""
    enc = pipes["bert"].tokenize_source("the cat sat on the mat ☃ ☃")
    assert enc.n_unknown == enc.tokens.count("[UNK]") == 2
    assert pipes["bert"].tokenize_source("the cat sat").n_unknown == 0
    assert pipes["gpt2"].tokenizer.unk_id is None and pipes["gpt2"].tokenize_target("☃ ☃").n_unknown == 0


def test_encoder_only_run_gives_masked_lm_logits(pipes):
    pipe = pipes["bert"]
    res = pipe.run("the cat sat on the [MASK]")
    assert res.target is None and res.source.tokens[0] == "[CLS]" and res.source.tokens[-1] == "[SEP]"
    assert res.source.special[0] and res.source.special[-1] and not res.source.special[1]
    assert res.logits.shape[0] == len(res.source.ids) and not res.generated
    assert list(res.trace) == ["encoder.0.self_attn", "encoder.1.self_attn"]
    with pytest.raises(ValueError, match="does not generate"):
        pipe.greedy("x")


def test_decoder_only_generation_is_traced_whole(pipes):
    pipe = pipes["gpt2"]
    res = pipe.run("the cat", max_new_tokens=6)
    assert res.generated and res.n_prompt == 2 and len(res.target.ids) <= 8
    assert res.target.ids == pipe.greedy("the cat", max_new_tokens=6)
    assert res.trace["decoder.0.self_attn"].weights.shape[-1] == len(res.target.ids)
    # greedy with transformers' cache equals argmax of the traced logits (which saw the whole sequence)
    assert res.output_ids[res.n_prompt - 1: len(res.target.ids) - 1] == res.target.ids[res.n_prompt:]


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_encoder_decoder_generation_and_teacher_forcing(pipes, family):
    pipe = pipes[family]
    gen = pipe.run(TEXT, max_new_tokens=5)
    assert gen.generated and gen.target.ids[0] == pipe.decoder_start_id and len(gen.target.ids) <= 6
    assert gen.output_ids[: len(gen.target.ids) - 1] == gen.target.ids[1:]
    forced = pipe.run(TEXT, TARGET)
    assert not forced.generated and forced.target.ids[0] == pipe.decoder_start_id
    assert forced.trace["decoder.0.cross_attn"].weights.shape[-2:] == (len(forced.target.ids),
                                                                        len(forced.source.ids))


def test_token_labels_are_readable(pipes):
    gpt2 = pipes["gpt2"].run("hello world\nline 😀").target
    assert "␣world" in gpt2.tokens and "↵" in "".join(gpt2.tokens)
    assert not any("Ġ" in t or "Ċ" in t for t in gpt2.tokens)
    bert = pipes["bert"].run("attention unattentive").source
    assert any(t.startswith("##") for t in bert.tokens)  # WordPiece continuations stay marked
    t5 = pipes["t5"].run("the cat").source
    assert t5.tokens[0].startswith("␣") and t5.tokens[-1] == "</s>" and t5.special[-1]


def test_long_text_is_cut_keeping_the_special_tokens(pipes):
    pipe = pipes["bert"]
    res = pipe.run("the cat sat " * 400)
    assert len(res.source.ids) == pipe.info.max_len == 64
    assert res.source.truncated and res.source.tokens[0] == "[CLS]" and res.source.tokens[-1] == "[SEP]"


# broken directories -------------------------------------------------------------------------------------------------

@pytest.fixture()
def gpt2_copy(dirs, tmp_path):
    path = tmp_path / "gpt2"
    shutil.copytree(dirs["gpt2"], path)
    return path


def test_truncated_weights(gpt2_copy):
    w = gpt2_copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(truncated|corrupt)"):
        load(gpt2_copy, "cpu")


def test_config_that_does_not_match_the_weights(gpt2_copy):
    cfg = json.loads((gpt2_copy / "config.json").read_text())
    cfg["n_embd"] = 64
    (gpt2_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load(gpt2_copy, "cpu")


def test_pickled_weights_only_are_refused(gpt2_copy):
    (gpt2_copy / "model.safetensors").unlink()
    marker = gpt2_copy.parent / "ran"
    (gpt2_copy / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*safetensors"):
        load(gpt2_copy, "cpu")
    assert not marker.exists()


def test_missing_tokenizer(gpt2_copy):
    (gpt2_copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json.*missing"):
        load(gpt2_copy, "cpu")


def test_huge_sizes_in_config_are_refused_before_allocating(gpt2_copy):
    cfg = json.loads((gpt2_copy / "config.json").read_text())
    cfg["n_layer"] = 10**7
    (gpt2_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json.*n_layer"):
        load(gpt2_copy, "cpu")


def test_attention_sinks_are_refused_not_silently_ignored(tmp_path):
    """GPT-OSS adds learned sinks to the softmax: an argument this app does not compute -> a clear error."""
    from tests.hf_models import byte_level_tokenizer

    tok = byte_level_tokenizer(["<|endoftext|>"], None)
    torch.manual_seed(0)
    cfg = transformers.GptOssConfig(vocab_size=tok.get_vocab_size() + 3, hidden_size=32, intermediate_size=32,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                    num_local_experts=2, num_experts_per_tok=1, sliding_window=4,
                                    max_position_embeddings=64)
    transformers.GptOssForCausalLM(cfg).eval().save_pretrained(tmp_path / "oss")
    tok.save(str(tmp_path / "oss" / "tokenizer.json"))
    with pytest.raises(CheckpointError, match="gpt_oss.*s_aux"):
        load(tmp_path / "oss", "cpu")


# round 3 (issue 23): sizes before building, every file capped, special ids, dtypes, symlinks --------------------------


def family_copy(dirs, tmp_path, family: str) -> Path:
    path = tmp_path / family
    shutil.copytree(dirs[family], path)
    return path


def edit_config(path: Path, name: str = "config.json", **changes) -> dict:
    data = json.loads((path / name).read_text())
    data.update(changes)
    (path / name).write_text(json.dumps(data))
    return data


class NoBuild:
    """Stands in for the meta-device build of the model shell: the refusal must come before it."""

    def __enter__(self):
        raise AssertionError("the model shell was built: the check came too late")

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("layers, message", [(200_000, r"num_hidden_layers=200000 \(at most 1,024\)"),
                                             (1_000, r"num_hidden_layers=1,000 layers, but the weights hold only "
                                                     r"\d+ tensors")])
def test_a_llama_config_with_absurd_layers_is_refused_before_anything_is_built(dirs, tmp_path, monkeypatch, layers,
                                                                               message):
    """Issue 23: num_hidden_layers = 200,000 passed the checks and was still building after 120 s at 4.5 GB."""
    import model.hf.loader as loader

    path = family_copy(dirs, tmp_path, "llama")
    edit_config(path, num_hidden_layers=layers)
    monkeypatch.setattr(loader, "SkipInit", NoBuild)
    with pytest.raises(CheckpointError, match=r"config\.json: .*" + message):
        load(path, "cpu")


@pytest.mark.parametrize("nested, field", [
    ({"encoder": {"num_hidden_layers": 10**7}}, r"encoder\.num_hidden_layers=10000000"),
    ({"text_config": {"hidden_size": 10**8}}, r"text_config\.hidden_size=100000000"),
    ({"vision_config": {"encoder": {"num_attention_heads": 50_000}}}, r"vision_config\.encoder\.num_attention_heads"),
])
def test_sizes_in_nested_configs_are_checked(dirs, tmp_path, monkeypatch, nested, field):
    """Issue 23: an encoder-decoder config with encoder.num_hidden_layers = 10^7 passed (nested configs unchecked)."""
    import model.hf.loader as loader

    path = family_copy(dirs, tmp_path, "bert")
    bert = json.loads((path / "config.json").read_text())
    if "encoder" in nested:  # a real encoder-decoder config: two BERTs, the encoder's size absurd
        config = {"model_type": "encoder-decoder", "is_encoder_decoder": True, "architectures": ["EncoderDecoderModel"],
                  "encoder": {**bert, **nested["encoder"]}, "decoder": {**bert, "is_decoder": True,
                                                                        "add_cross_attention": True}}
        (path / "config.json").write_text(json.dumps(config))
    else:
        edit_config(path, **nested)
    monkeypatch.setattr(loader, "SkipInit", NoBuild)
    with pytest.raises(CheckpointError, match=r"config\.json: sizes beyond what this app loads: .*" + field):
        load(path, "cpu")


def test_6e9_float32_parameters_in_gpt2_shape_are_refused_by_the_memory_budget(dirs, tmp_path, monkeypatch):
    """Issue 23: a sparse file claiming 6e9 float32 parameters (24 GB) passed the 8e9 parameter cap."""
    path = family_copy(dirs, tmp_path, "gpt2")
    config = edit_config(path, n_embd=4096, n_layer=30, n_head=32)
    with torch.device("meta"):
        shell = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config))
    shapes = {k: tuple(v.shape) for k, v in shell.state_dict().items() if k != "lm_head.weight"}  # tied
    assert 6e9 < sum(math.prod(s) for s in shapes.values()) < 8e9
    sparse_safetensors(path / "model.safetensors", shapes)
    monkeypatch.setenv("INSPECTOR_MAX_MODEL_MB", "16384")
    forbid(monkeypatch, transformers.GPT2LMHeadModel, "from_pretrained")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: the stored weights \(6,0\d\d,\d{3},\d{3} values\) "
                                              r"need 22\.\d\d GiB, over this server's model memory budget of 16\.00"):
        load(path, "cpu")


@pytest.mark.parametrize("name, mb, cap", [("tokenizer.json", 300, 64), ("generation_config.json", 200, 4),
                                           ("tokenizer_config.json", 10, 4), ("config.json", 10, 4)])
def test_every_file_of_a_transformers_directory_is_read_with_a_byte_cap(dirs, tmp_path, monkeypatch, name, mb, cap):
    """Issue 23: a 300-MB tokenizer.json took 6 GB in 16 s (HF tokenizers had no cap); a 200-MB
    generation_config.json was read whole by transformers."""
    import model.safe.files as files

    path = family_copy(dirs, tmp_path, "t5")
    with open(path / name, "r+b") as f:
        f.truncate(mb * 2**20)  # sparse: the real file, then a hole
    reads = []
    real_read = os.read
    monkeypatch.setattr(files.os, "read", lambda fd, n: (data := real_read(fd, n), reads.append(len(data)))[0])
    with pytest.raises(CheckpointError, match=rf"{name}: {mb}\.0 MiB is too large for this file \(at most {cap} MiB\)"):
        load(path, "cpu")
    assert sum(reads) < 5 * 2**20


def test_an_hf_tokenizer_with_a_backtracking_regex_is_refused_at_load(dirs, tmp_path):
    """Issue 23: (q+)+$ in a Replace normalizer froze /_stcore/health for 16.4 s on 960 characters."""
    from tokenizers import Regex, Tokenizer, normalizers

    path = family_copy(dirs, tmp_path, "gpt2")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex("(q+)+$"), "q")])
    tok.save(str(path / "tokenizer.json"))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: the normalizer\.normalizers\[1\] \(Replace\) regex "
                                              r"'\(q\+\)\+\$' can take exponential time"):
        load(path, "cpu")


@pytest.mark.parametrize("name", ["config.json", "generation_config.json"])
@pytest.mark.parametrize("value", [10**9, -7])
def test_a_t5_decoder_start_token_outside_the_vocabulary_is_refused_at_load(dirs, tmp_path, name, value):
    """Issue 23: decoder_start_token_id = 10^9 or -7 loaded, then raised IndexError on the first run."""
    path = family_copy(dirs, tmp_path, "t5")
    edit_config(path, name, decoder_start_token_id=value)
    with pytest.raises(CheckpointError, match=rf"{name}: decoder_start_token_id={value} is not a token id of the "
                                              r"model's \d+-token vocabulary"):
        load(path, "cpu")


def test_a_post_processor_adding_100_special_tokens_is_refused_at_load(dirs, tmp_path):
    """Issue 23: 100 trailing special tokens (the model reads 64) loaded, then raised IndexError at run time."""
    from tokenizers import Tokenizer, processors

    path = family_copy(dirs, tmp_path, "gpt2")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single="$A" + " <|endoftext|>" * 100,
                                                       special_tokens=[("<|endoftext|>", eos)])
    tok.save(str(path / "tokenizer.json"))
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: its post-processor adds 100 special tokens to every "
                                              r"input, but the model reads at most 64 tokens"):
        load(path, "cpu")


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_or_bool_weights_are_refused_not_cast_silently(dirs, tmp_path, dtype):
    """Issue 23: an int64 or bool weight was cast to float32 without a word."""
    from safetensors.torch import load_file, save_file

    path = family_copy(dirs, tmp_path, "gpt2")
    state = load_file(str(path / "model.safetensors"))
    name = "transformer.h.0.attn.c_attn.weight"
    state[name] = (state[name] * 100).to(dtype)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    stored = {torch.int64: "I64", torch.bool: "BOOL"}[dtype]
    with pytest.raises(CheckpointError, match=rf"model\.safetensors: tensor '{name}' is stored as {stored}, but the "
                                              r"model's .*c_attn\.weight is floating point"):
        load(path, "cpu")


def test_integer_buffers_the_model_has_are_not_refused(dirs, tmp_path):
    """Old checkpoints store position_ids (int64) beside the weights: a buffer the model holds as int64 too."""
    from safetensors.torch import load_file, save_file

    path = family_copy(dirs, tmp_path, "bert")
    state = load_file(str(path / "model.safetensors"))
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    assert load(path, "cpu").model.config.model_type == "bert"


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                  "model.safetensors", "shard"])
def test_a_file_that_links_out_of_the_roots_is_never_opened(dirs, tmp_path, name):
    """Issue 23: config.json, tokenizer.json, tokenizer_config.json, a shard or generation_config.json linking out of
    the allowed roots was opened in public mode (strace). Each is checked where it is opened."""
    from model.hf.loader import load_model

    root, outside = tmp_path / "root", tmp_path / "outside"
    path = root / "t5"
    shutil.copytree(dirs["t5"], path)
    outside.mkdir()
    if name == "shard":  # the same model in three shards, one of them linking out
        model = transformers.T5ForConditionalGeneration.from_pretrained(str(dirs["t5"]))
        (path / "model.safetensors").unlink()
        model.save_pretrained(str(path), max_shard_size="80KB")
        name = sorted(p.name for p in path.glob("model-*.safetensors"))[1]
    shutil.move(path / name, outside / name)
    (path / name).symlink_to(outside / name)
    assert load_model(path, torch.device("cpu"))[0].config.is_encoder_decoder  # library use: links are followed
    with pytest.raises(CheckpointError, match=rf"{name}: links outside the allowed checkpoint directories"):
        load_model(path, torch.device("cpu"), policy=public_policy(root))
    assert load_model(path, torch.device("cpu"), policy=public_policy(root, outside))[0].config.is_encoder_decoder


def test_links_inside_the_roots_are_followed(dirs, tmp_path):
    """The Hugging Face cache keeps files in blobs/ and links them from snapshots/: inside the roots, fine."""
    from model.hf.loader import load_model

    root = tmp_path / "root"
    path, blobs = root / "snapshots" / "abc", root / "blobs"
    shutil.copytree(dirs["gpt2"], path)
    blobs.mkdir()
    for f in list(path.iterdir()):
        shutil.move(f, blobs / f.name)
        f.symlink_to(Path("../../blobs") / f.name)
    assert load_model(path, torch.device("cpu"), policy=public_policy(root))[0].config.model_type == "gpt2"
