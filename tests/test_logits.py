"""What a call keeps of its logits (model.capture.logits): every number a view reads from it is the number it read
from the whole (T, V) logits before, bitwise, for the shipped models and every transformers family; rows on demand are
the call's own; the blocks, and the bytes kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import model.capture.logits as kept_module
from model import load, run
from model.analysis import effect_of, logit_lens, metric_for, rerun
from model.call import forward
from model.capture.logits import KeptLogits, block_of, block_rows, blocks, kept_from_head
from model.capture.recorder import Recorder
from tests.hf_models import FAMILIES, MORE_FAMILIES, build

LONG = ("the cat sat on the mat and a dog ran in the park while the quick brown fox jumps over the lazy dog "
        "hello world hello again attention is all you need")
SOURCE = "Saturday, November 21, 2026"


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 16 positions and nothing kept whole: every row the views read is computed by the head again."""
    monkeypatch.setattr(kept_module, "BLOCK_BYTES", 1)
    monkeypatch.setattr(kept_module, "WHOLE_BYTES", 0)


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logits_families")


_PIPES: dict = {}


def pipe_of(name: str, root, dates, induction):
    if name == "dates":
        return dates
    if name == "induction":
        return induction
    if name not in _PIPES:
        _PIPES[name] = load(build(name, root / name), "cpu")
    return _PIPES[name]


def text_of(pipe) -> str:
    if pipe.info.family.startswith("transformer"):
        return SOURCE if pipe.arch == "encoder-decoder" else " ".join(["a b c d e f g h"] * 5)
    return LONG


def reference(pipe, result, capture: bool = False) -> torch.Tensor:
    """(T, V) the logits as the call kept them before: the model's own forward, head included, float32."""
    src = None if result.source is None else [list(result.source.ids)]
    tgt = None if result.target is None else [list(result.target.ids)]
    out, *_ = forward(pipe, src, tgt, Recorder(capture=capture))
    n = len((result.target if pipe.arch != "encoder-only" else result.source).ids)
    return out.logits[0, :n].float().cpu()


def old_generated_token_probabilities(result, logits: torch.Tensor) -> list[float]:
    """RunResult.generated_token_probabilities as it was, on the whole logits."""
    if not result.generated or result.target is None:
        return []
    start = result.n_prompt if result.n_prompt else 1
    ids = list(result.target.ids[start:])
    positions = list(range(start - 1, len(result.target.ids) - 1))
    if result.stopped == "eos" and result.output_ids:
        ids.append(result.output_ids[-1])
        positions.append(len(result.target.ids) - 1)
    logp = torch.log_softmax(logits[positions], -1)
    return [float(logp[n, i].exp()) for n, i in enumerate(ids)]


MODELS = ["dates", "induction", *FAMILIES, *MORE_FAMILIES]


@pytest.mark.parametrize("name", MODELS)
def test_kept_logits_read_what_the_whole_logits_gave(name, family_dir, dates, induction, small_blocks):
    """Rows, predictions, top-k, log-sum-exp, chosen log-probabilities, probabilities of each position and of the
    generated tokens: bitwise what the whole (T, V) logits of the model's forward give."""
    pipe = pipe_of(name, family_dir, dates, induction)
    max_new = 6 if pipe.arch != "encoder-only" else None
    for result in (run(pipe, text_of(pipe), capture=False), run(pipe, text_of(pipe), max_new_tokens=max_new)):
        ref = reference(pipe, result, capture=result.trace is not None)
        kept = result.logits
        T, V = ref.shape
        assert kept.shape == (T, V) and kept.whole is None and kept.head_input is not None
        if T > 16:
            assert len({block_of(p, T, kept.rows_per_block) for p in range(T)}) > 1  # several blocks
        torch.testing.assert_close(kept.rows(), ref, atol=0, rtol=0)
        torch.testing.assert_close(kept.rows([T - 1, 0, T // 2]), ref[[T - 1, 0, T // 2]], atol=0, rtol=0)
        if T > 16:  # one block of the whole input: a row asked for runs the head on 16 rows, the same bits
            sizes = []

            def counted(h, sizes=sizes, head=kept.head):
                sizes.append(len(h))
                return head(h)
            one = dataclasses.replace(kept, rows_per_block=T, head=counted)
            torch.testing.assert_close(one.rows([T - 1, 0]), ref[[T - 1, 0]], atol=0, rtol=0)
            assert sizes == [16, 16]
        assert result.output_ids == ref.argmax(-1).tolist()
        values, ids = ref.topk(kept.top_ids.shape[1], -1)
        assert torch.equal(kept.top_ids, ids) and torch.equal(kept.top_logits, values)
        torch.testing.assert_close(kept.lse, torch.logsumexp(ref, -1), atol=0, rtol=1e-6)  # log_softmax's own
        chosen = torch.tensor(list((result.target or result.source).ids[1:]) + [int(ref[-1].argmax())]) \
            if pipe.arch != "encoder-only" else ref.argmax(-1)
        assert torch.equal(kept.chosen_ids, chosen)
        assert torch.equal(kept.chosen_log_probs, torch.log_softmax(ref, -1).gather(-1, chosen[:, None])[:, 0])
        for p in (0, T - 1):
            assert torch.equal(result.probs_at(p), torch.softmax(ref[p], -1))
        assert result.generated_token_probabilities() == old_generated_token_probabilities(result, ref)


@pytest.mark.parametrize("name", ["dates", "induction", "gpt2", "llama", "t5", "bert", "gemma2", "bart"])
def test_effects_lens_and_patching_read_the_same_numbers(name, family_dir, dates, induction, small_blocks):
    """An ablation's or knockout's effect, the logit lens' last depth and patching's metric read from the kept
    logits equal what they read from the whole logits."""
    pipe = pipe_of(name, family_dir, dates, induction)
    result = run(pipe, text_of(pipe), capture=False)
    ref = reference(pipe, result)
    T = len(ref)
    after = ref.flip(0) if T > 1 else ref + 1  # any other (T, V): the comparison is row by row
    new, old = effect_of(result.logits, after), effect_of(ref, after)
    for field in ("token_ids", "p_before", "p_after", "logit_before", "logit_after", "kl", "argmax_after"):
        np.testing.assert_array_equal(getattr(new, field), getattr(old, field))
    hidden = rerun(pipe, result, text_of(pipe), capture=False, hidden_states=True)
    for full_bytes in (0, 2**40):  # top-k and tracked only; every log-probability
        lens = logit_lens(pipe, hidden, full_bytes=full_bytes)
        assert lens.token_ids.tolist() == ref.argmax(-1).tolist()
        lp = torch.log_softmax(ref, -1)
        np.testing.assert_array_equal(lens.row(lens.n_depths - 1, T - 1), lp[T - 1].numpy())
        if full_bytes:
            np.testing.assert_array_equal(lens.log_probs[-1], lp.numpy())
        else:
            lse = torch.logsumexp(ref, -1, keepdim=True)
            values, ids = ref.topk(lens.top_ids.shape[-1], -1)
            np.testing.assert_array_equal(lens.top_ids[-1], ids.numpy())
            np.testing.assert_array_equal(lens.top_log_probs[-1], (values - lse).numpy())
            tracked = ref.gather(-1, ref.argmax(-1)[:, None]) - lse
            np.testing.assert_array_equal(lens.token_log_probs[-1], tracked[:, 0].numpy())
    metric = metric_for(pipe, result)
    assert metric.tokens == tuple(ref[list(metric.positions)].argmax(-1).tolist())
    assert torch.equal(metric.value(result.logits.rows(metric.positions)), metric.value(ref[list(metric.positions)]))


def test_a_whole_small_call_is_kept_whole(dates):
    """Under WHOLE_BYTES the (T, V) logits are kept whole (the shipped models: a few kB), and nothing else."""
    result = run(dates, SOURCE)
    kept = result.logits
    assert kept.whole is not None and kept.head_input is None and kept.head is None
    torch.testing.assert_close(kept.rows(), reference(dates, result, capture=True), atol=0, rtol=0)


def test_blocks_cover_every_position_once_and_have_one_size():
    for n, rows in ((5, 16), (16, 16), (17, 16), (50, 16), (64, 16), (1000, 80), (8192, 2048)):
        owned = []
        for start, stop, first in blocks(n, rows):
            assert stop - start == min(n, rows) and start <= first < stop
            owned += list(range(first, stop))
            assert all(block_of(p, n, rows) == (start, stop) for p in range(first, stop))
        assert owned == list(range(n))
    assert block_rows(600, 50257) == 600 and block_rows(1024, 50257) == 512  # one block; two
    assert block_rows(3000, 50257) == 608  # five blocks of 600, rounded up to 16 rows
    assert block_rows(8192, 32000) == 1024 and block_rows(12, 40) == 12 and block_rows(100, 10**9) == 16


def test_rows_on_demand_are_checked_against_the_kept_top_logits():
    """A row asked for runs the head on 16 rows around it; where that gives other bits than the call (here a head
    whose numbers depend on how many rows it is given), the row comes from the call's own block."""
    torch.manual_seed(0)
    W = torch.randn(300, 8)
    seen = []

    def head(x, drift=0.0):
        seen.append(len(x))
        return x @ W.T + (drift if len(x) < 40 else 0.0)

    x = torch.randn(40, 8)
    kept = kept_from_head(head, x, 300, list(range(1, 40)), whole_bytes=0)
    assert kept.rows_per_block == 40 and kept.shape == (40, 300)
    full = x @ W.T
    seen.clear()
    assert torch.equal(kept.row(39), full[39]) and seen == [16]  # the last 16 rows, checked: the same
    drifting = dataclasses.replace(kept, head=lambda h: head(h, drift=1e-3))
    seen.clear()
    assert torch.equal(drifting.rows([3, 39]), full[[3, 39]]) and seen == [16, 16, 40]
    seen.clear()
    assert torch.equal(kept.rows(list(range(20))), full[:20]) and seen == [40]  # many rows: the call's block
    with pytest.raises(IndexError):
        kept.rows([40])


def test_kept_bytes_at_8192_tokens_and_a_32000_vocabulary():
    """A Llama-shaped call (d_model 512) at 8,192 tokens keeps its head's input and per-position numbers: under
    64 MB, where the whole float32 logits are 1,000 MiB."""
    T, d, V = 8192, 512, 32000
    torch.manual_seed(0)
    row = torch.randn(V)
    x = torch.randn(T, d)
    kept = kept_from_head(lambda h: row.expand(len(h), V), x, V, torch.randint(0, V, (T - 1,)).tolist())
    assert kept.whole is None and kept.shape == (T, V)
    assert kept.nbytes() <= 64 * 10**6 < T * V * 4
    assert isinstance(kept, KeptLogits)


@pytest.mark.parametrize("start", [0, 1, 5, 16, 20, 33, 47, 48])
def test_a_knockouts_effect_from_the_kept_logits_is_the_whole_logits_effect(induction, small_blocks, start):
    """A knockout changes the logits from ``start`` on: its effect, read block by block from what the call kept (the
    positions before ``start`` from the kept top logits, without the head), equals the effect over whole logits."""
    from model.analysis.knockout import effect_in_blocks

    result = run(induction, "a b c d e f " * 8)
    whole = result.logits.rows()
    T, V = whole.shape
    assert result.logits.whole is None and T == 48
    after = whole[start:] + torch.randn(T - start, V, generator=torch.Generator().manual_seed(start)) * 0.5
    kept, full = effect_in_blocks(result.logits, after, start), effect_in_blocks(whole, after, start)
    for field in full.__dataclass_fields__:
        np.testing.assert_allclose(getattr(kept, field), getattr(full, field), rtol=1e-6, atol=1e-7, err_msg=field)
    assert not kept.changed[:start].any() and (kept.kl[:start] == 0).all()
