"""model.hf.adopt: a transformers model the user holds, traced for one call and handed back exactly as it was
(attention implementation of every config, hooks, training flags, parameters and buffers bitwise, requires_grad),
with numbers equal to the model's own eager attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import run
from model.hf.adopt import AdoptError, adopted, configs_of
from tests import hf_models

transformers = pytest.importorskip("transformers")

TEXT = "the cat sat on the mat"


def model_and_tokenizer(tmp_path, family: str):
    """A tiny random model of ``family`` and its fast tokenizer, as a user holds them (loaded by transformers)."""
    path = hf_models.build(family, tmp_path / family)
    cls = {"gpt2": transformers.GPT2LMHeadModel, "bert": transformers.BertForMaskedLM,
           "bart": transformers.BartForConditionalGeneration}[family]
    model = cls.from_pretrained(path)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
    return model, tokenizer


HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks", "_forward_hooks_with_kwargs",
              "_forward_hooks_always_called", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
              "_load_state_dict_pre_hooks")


def snapshot(model) -> dict:
    """Everything adopt must leave as it was."""
    return {
        "impl": [(id(c), c._attn_implementation_internal) for c in configs_of(model)],
        "hooks": [(name, d, list(getattr(m, d, {}))) for name, m in model.named_modules() for d in HOOK_DICTS],
        "training": [(name, m.training) for name, m in model.named_modules()],
        "grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "tensors": {name: (t.detach().clone(), t.dtype, t.device, t.data_ptr())
                    for name, t in [*model.named_parameters(), *model.named_buffers()]},
    }


def assert_same(before: dict, model) -> None:
    after = snapshot(model)
    for key in ("impl", "hooks", "training", "grad"):
        assert after[key] == before[key], key
    assert set(after["tensors"]) == set(before["tensors"])
    for name, (t, dtype, device, ptr) in before["tensors"].items():
        now, now_dtype, now_device, now_ptr = after["tensors"][name]
        assert (now_dtype, now_device, now_ptr) == (dtype, device, ptr), name
        assert torch.equal(now.view(torch.uint8) if now.dtype != torch.bool else now,
                           t.view(torch.uint8) if t.dtype != torch.bool else t), name  # bitwise


@pytest.mark.parametrize("family", ["gpt2", "bert", "bart"])
def test_the_model_is_exactly_as_it_was_after_a_traced_call(tmp_path, family):
    model, tokenizer = model_and_tokenizer(tmp_path, family)
    model.train()  # a model mid-training: dropout on, one parameter frozen, a hook of the user's own
    next(model.parameters()).requires_grad_(False)
    seen = []
    model.register_forward_hook(lambda *a: seen.append(1))
    before = snapshot(model)
    impl = model.config._attn_implementation
    with adopted(model, tokenizer) as pipe:
        assert model.config._attn_implementation == "attention_inspector" and not model.training
        res = run(pipe, TEXT, "the cat" if pipe.arch == "encoder-decoder" else None, mode="lazy")
    assert model.config._attn_implementation == impl
    assert_same(before, model)
    assert seen  # the user's hook ran during the call and is still there
    name = res.trace.layers(*("encoder", "self_attn") if family == "bert" else ("decoder", "self_attn"))[0]
    assert res.trace.window(name, 1, range(0, 3), range(0, 3)).values.shape == (3, 3)  # a lazy trace still answers


def eager_weights(model, tokenizer, text: str) -> list[np.ndarray]:
    model.set_attn_implementation("eager")
    try:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True)
    finally:
        model.set_attn_implementation("sdpa")
    return [a[0].numpy() for a in out.attentions]


def test_the_numbers_are_the_models_own(tmp_path):
    model, tokenizer = model_and_tokenizer(tmp_path, "gpt2")
    model.eval()
    want = eager_weights(model, tokenizer, TEXT)
    with adopted(model, tokenizer) as pipe:
        res = run(pipe, TEXT, mode="full")
    for layer, w in enumerate(want):
        got = np.asarray(res.trace[f"decoder.{layer}.self_attn"].weights[0])
        np.testing.assert_allclose(got, w, atol=1e-6, rtol=0)
    assert res.target.ids == tokenizer(TEXT)["input_ids"]


def test_restored_when_the_call_fails(tmp_path):
    model, tokenizer = model_and_tokenizer(tmp_path, "gpt2")
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="inside"), adopted(model, tokenizer):
        raise RuntimeError("inside the block")
    assert_same(before, model)


def test_the_users_tokenizer_is_not_changed(tmp_path):
    model, tokenizer = model_and_tokenizer(tmp_path, "gpt2")
    tokenizer.backend_tokenizer.enable_truncation(5)
    state = tokenizer.backend_tokenizer.to_str()
    with adopted(model, tokenizer) as pipe:
        assert len(pipe.tokenize_target(TEXT + " and the dog").ids) > 5  # the copy does not truncate
    assert tokenizer.backend_tokenizer.to_str() == state
    assert tokenizer.backend_tokenizer.truncation["max_length"] == 5


def test_clear_messages(tmp_path):
    model, tokenizer = model_and_tokenizer(tmp_path, "gpt2")

    class SlowTokenizer:  # a tokenizer without an HF tokenizers backend
        model_max_length = 64

    with pytest.raises(AdoptError, match="no fast .*backend"):
        with adopted(model, SlowTokenizer()):
            pass
    with pytest.raises(AdoptError, match="not a transformers PreTrainedModel"):
        with adopted(torch.nn.Linear(2, 2), tokenizer):
            pass
    other = transformers.PreTrainedTokenizerFast(tokenizer_object=hf_models.wordpiece_tokenizer())
    small = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=50))
    with pytest.raises(AdoptError, match="outside the model's 50-token vocabulary"):
        with adopted(small, other):
            pass


def test_a_notebook_result_does_not_change_when_the_user_changes_their_model_afterwards(tmp_path, monkeypatch):
    """Reported in review: a result traced from (model, tokenizer) recomputed logit rows with the model's head and a
    lazy trace's outputs with its W_o after the call, so changing the model later changed an earlier call's numbers.
    viz.notebook.trace detaches the result: logits kept whole (or top logits only over the budget), W_o copied."""
    import model.capture.logits as kept_logits
    import model.hf.adopt as adopt
    from viz.notebook import trace

    monkeypatch.setattr(kept_logits, "WHOLE_BYTES", 0)  # the call keeps only the head's input: rows recomputed
    model, tokenizer = model_and_tokenizer(tmp_path, "gpt2")
    res = trace((model, tokenizer), TEXT, mode="lazy")
    name = "decoder.1.self_attn"
    logits, output = res.logits.rows().clone(), res.trace[name].output.clone()
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
        for p in model.parameters():
            p.add_(0.5)
    assert torch.equal(res.logits.rows(), logits)
    assert torch.equal(res.trace[name].output, output)
    assert res.logits.head is None and res.logits.head_input is None  # nothing left that reads the model
    monkeypatch.setattr(adopt, "DETACHED_LOGITS_BYTES", 0)  # over the budget: the top logits, and a clear message
    small = trace((model, tokenizer), TEXT)
    assert small.logits.whole is None and small.logits.top_ids.shape[0] == len(small.target.ids)
    with pytest.raises(ValueError, match="head"):
        small.logits.rows([0])
