"""Why the model does it: knockouts passed in the call, the logit lens and head patching (model.analysis), against
hand computations, transformers' own hidden states and the shipped induction model."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from model import forbidden_by_reason, intervened_outputs, load, mask_reason_matrix, run
from model.analysis import (
    PatchingError,
    default_positions,
    effect_of,
    induction_score,
    knockout_effect,
    knockout_spec,
    logit_lens,
    metric_for,
    parse_pairs,
    patch_each_position,
    patch_heads,
    rerun,
    run_corrupt,
    select_cells,
    token_id,
)
from model.core.interventions import DENSE_MAX_CELLS, Cells, knockout_cells
from model.core.names import in_forward_order
from model.training.tasks import INDUCTION_WORDS, RepeatedSequence, repeated_sequence
from tests.hf_models import build

SOURCE = "Saturday, November 21, 2026"
TEXT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("why_families")


_PIPES: dict = {}


def hf(family: str, root: Path):
    """A tiny model of ``family`` (built once per test module run). Its final norm gets random weights, so that
    applying it twice is visibly not the model (a LayerNorm / RMSNorm with unit weights is idempotent)."""
    if family not in _PIPES:
        pipe = load(build(family, root / family), "cpu")
        torch.manual_seed(1)
        with torch.no_grad():
            for path in {"gpt2": ["transformer.ln_f"], "llama": ["model.norm"],
                         "t5": ["decoder.final_layer_norm", "encoder.final_layer_norm"]}.get(family, []):
                norm = pipe.model.get_submodule(path)
                norm.weight.copy_(1 + 0.5 * torch.randn_like(norm.weight))
                if getattr(norm, "bias", None) is not None:
                    norm.bias.copy_(0.1 * torch.randn_like(norm.bias))
        _PIPES[family] = pipe
    return _PIPES[family]


def text_for(pipe) -> str:
    return SOURCE if pipe.info.family.startswith("transformer") and pipe.arch == "encoder-decoder" else TEXT


def weights(result, name) -> np.ndarray:
    return np.asarray(result.trace[name].numpy().weights)[0]


def renormalised(w: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Weights restricted to the cells kept, each row renormalised; a row with nothing left is 0 (by hand)."""
    kept = np.where(keep, w.astype(np.float64), 0)
    total = kept.sum(-1, keepdims=True)
    return np.divide(kept, total, out=np.zeros_like(kept), where=total > 0)


# knockouts in the call ---------------------------------------------------------------------------------------------

KNOCK_CASES = [("dates", "decoder.1.cross_attn"), ("dates", "decoder.0.self_attn"), ("dates", "encoder.1.self_attn"),
               ("induction", "decoder.1.self_attn"), ("gpt2", "decoder.1.self_attn"), ("llama", "decoder.0.self_attn"),
               ("bert", "encoder.1.self_attn"), ("t5", "decoder.1.cross_attn")]


def pipe_of(which: str, dates, induction, root):
    return {"dates": dates, "induction": induction}.get(which) or hf(which, root)


@pytest.mark.parametrize("which,name", KNOCK_CASES)
def test_knocking_out_every_key_but_one_puts_weight_one_on_it(which, name, dates, induction, family_dir):
    pipe = pipe_of(which, dates, induction, family_dir)
    base = pipe.run(text_for(pipe))
    rec = base.trace[name]
    Tq, Tk = rec.weights.shape[2:]
    keep = Tk - 1 if "cross" in name or name.startswith("encoder") else 0  # a key every query may attend
    cells = np.ones((Tq, Tk), dtype=bool)
    cells[:, keep] = False
    ko = pipe.run(text_for(pipe), generated_ids=None if base.target is None or pipe.arch == "encoder-only" else
                  list(base.target.ids), knockouts={name: {1: cells}})
    w = weights(ko, name)[1]
    np.testing.assert_array_equal(w[:, keep], np.ones(Tq, dtype=w.dtype))
    assert (np.delete(w, keep, axis=1) == 0).all()


@pytest.mark.parametrize("which,name", [("dates", "decoder.1.self_attn"), ("gpt2", "decoder.1.self_attn"),
                                        ("llama", "decoder.1.self_attn"), ("t5", "decoder.1.cross_attn")])
def test_knocking_out_a_heads_cells_leaves_the_other_heads_and_upstream_bitwise_unchanged(which, name, dates,
                                                                                          induction, family_dir):
    pipe = pipe_of(which, dates, induction, family_dir)
    base = pipe.run(text_for(pipe))
    ids = None if base.target is None else list(base.target.ids)
    Tq, Tk = base.trace[name].weights.shape[2:]
    cells = select_cells(Tq, Tk, keys=[0], pairs=[(Tq - 1, Tk - 1)])
    ko = pipe.run(text_for(pipe), generated_ids=ids, knockouts={name: {2: cells}})
    ref = pipe.run(text_for(pipe), generated_ids=ids)  # the same call without knockouts, the same way
    w_ko, w_ref = weights(ko, name), weights(ref, name)
    for h in range(pipe.info.n_heads):
        if h != 2:
            np.testing.assert_array_equal(w_ko[h], w_ref[h])  # bitwise: same attention
    assert not np.array_equal(w_ko[2], w_ref[2])
    names = in_forward_order(pipe.info.record_names)
    for upstream in names[: names.index(name)]:
        np.testing.assert_array_equal(weights(ko, upstream), weights(ref, upstream))
    # the knocked head's rows renormalise over the keys left (its scores are unchanged)
    np.testing.assert_allclose(w_ko[2], renormalised(w_ref[2], ~cells), atol=2e-6)
    np.testing.assert_array_equal(np.asarray(ko.trace[name].numpy().scores)[0], np.asarray(
        ref.trace[name].numpy().scores)[0])


def test_a_fully_knocked_out_row_gives_zeros(dates):
    name = "decoder.1.cross_attn"
    base = dates.run(SOURCE)
    Tq, Tk = base.trace[name].weights.shape[2:]
    ko = dates.run(SOURCE, generated_ids=list(base.target.ids), knockouts={name: {0: select_cells(Tq, Tk,
                                                                                                   queries=[3])}})
    rec = ko.trace[name].numpy()
    assert (np.asarray(rec.weights)[0, 0, 3] == 0).all() and (np.asarray(rec.context)[0, 0, 3] == 0).all()
    assert np.isfinite(ko.logits.rows().numpy()).all()
    assert (np.asarray(rec.weights)[0, 0, 2] > 0).any()  # the other rows still attend


def test_the_knocked_out_runs_trace_says_knocked_out(dates):
    name = "decoder.0.self_attn"
    base = dates.run(SOURCE)
    Tq, Tk = base.trace[name].weights.shape[2:]
    cells = select_cells(Tq, Tk, keys=[0])  # a key column: row 0 loses its only key, later rows keep others
    ko = dates.run(SOURCE, generated_ids=list(base.target.ids), knockouts={name: {1: cells}})
    rec = ko.trace[name].numpy()
    assert np.asarray(rec.knocked_out)[0, 1].tolist() == cells.tolist()
    assert not np.asarray(rec.knocked_out)[0, 0].any()
    reasons = mask_reason_matrix(rec)
    assert set(reasons[1][cells].tolist()) == {"knocked out"}
    assert (reasons[1][np.triu(np.ones((Tq, Tk), bool), 1)] == "causal").all()
    by_reason = forbidden_by_reason(rec, 1)
    assert by_reason["knocked out"].tolist() == cells.tolist()
    lazy = dates.run(SOURCE, generated_ids=list(base.target.ids), knockouts={name: {1: cells}}, mode="lazy")
    lrec = lazy.trace[name].numpy()  # recomputed on demand: bitwise what the full capture holds
    np.testing.assert_array_equal(np.asarray(lrec.weights), np.asarray(rec.weights))
    np.testing.assert_array_equal(np.asarray(lrec.knocked_out), np.asarray(rec.knocked_out))
    np.testing.assert_array_equal(lazy.logits.rows().numpy(), ko.logits.rows().numpy())


def test_knockouts_compose_with_ablations(dates):
    base = dates.run(SOURCE)
    ids = list(base.target.ids)
    name, up = "decoder.1.cross_attn", "decoder.0.cross_attn"
    Tq, Tk = base.trace[name].weights.shape[2:]
    cells = select_cells(Tq, Tk, keys=[Tk - 1])
    # a knocked-out head that is also zero-ablated passes nothing on: as the ablation alone
    both = dates.run(SOURCE, generated_ids=ids, knockouts={name: {3: cells}}, ablations={name: {3: "zero"}})
    alone = dates.run(SOURCE, generated_ids=ids, ablations={name: {3: "zero"}})
    np.testing.assert_allclose(both.logits.rows().numpy(), alone.logits.rows().numpy(), atol=1e-5)
    rec = both.trace[name].numpy()
    assert np.asarray(rec.knocked_out)[0, 3].any() and (np.asarray(rec.context)[0, 3] == 0).all()
    # an ablation upstream and a knockout downstream: the knocked head renormalises the ablated run's weights
    abl = dates.run(SOURCE, generated_ids=ids, ablations={up: {0: "zero"}})
    mixed = dates.run(SOURCE, generated_ids=ids, ablations={up: {0: "zero"}}, knockouts={name: {1: cells}})
    np.testing.assert_allclose(weights(mixed, name)[1], renormalised(weights(abl, name)[1], ~cells), atol=2e-6)
    assert bool(np.asarray(mixed.trace[up].numpy().ablated)[0, 0])


def test_batched_knockouts_are_the_single_calls(dates):
    base = dates.run(SOURCE)
    name = "decoder.1.cross_attn"
    Tq, Tk = base.trace[name].weights.shape[2:]
    specs = [{"knockouts": {name: {h: select_cells(Tq, Tk, keys=[h])}}} for h in range(4)]
    batched = intervened_outputs(dates, base, specs)
    for spec, out in zip(specs, batched, strict=True):
        single = dates.run(SOURCE, generated_ids=list(base.target.ids), knockouts=spec["knockouts"], capture=False)
        np.testing.assert_allclose(out.numpy(), single.logits.rows().numpy(), atol=1e-5)


def test_knockouts_while_decoding_apply_to_the_positions_that_exist(dates):
    name = "decoder.1.cross_attn"
    base = dates.run(SOURCE)
    Tq, Tk = base.trace[name].weights.shape[2:]
    spec = {name: {h: select_cells(Tq, Tk, keys=[1, 2, 3]) for h in range(4)}}
    ko = dates.run(SOURCE, knockouts=spec)  # generated greedily under the knockouts
    assert ko.generated and ko.output_text != base.output_text
    # greedy under the intervention: each generated token is the argmax of the knocked-out model at its position
    forced = intervened_outputs(dates, ko, [{"knockouts": spec}])[0]
    assert forced.argmax(-1)[:-1].tolist() == list(ko.target.ids[1:])


def test_knockout_cells_forms_and_mistakes():
    assert knockout_cells([[True, False], [False, True]], 2, 2).tolist() == [[True, False], [False, True]]
    assert knockout_cells(torch.tensor([[False, True]]), 1, 2).tolist() == [[False, True]]
    assert knockout_cells([(0, 1), (1, 0)], 2, 2).tolist() == [[False, True], [True, False]]
    assert knockout_cells((1, 1), 2, 2).tolist() == [[False, False], [False, True]]
    assert not knockout_cells([], 2, 3).any()
    # while decoding a call sees a prefix: a larger array is cut, pairs beyond it are left out
    assert knockout_cells(np.eye(4, dtype=bool), 2, 2).tolist() == [[True, False], [False, True]]
    assert knockout_cells([(3, 0), (0, 0)], 2, 2).tolist() == [[True, False], [False, False]]
    for bad in ([(-1, 0)], [(0.5, 1)], np.zeros((1, 2), dtype=bool), [(1, 2, 3)]):
        with pytest.raises(ValueError):
            knockout_cells(bad, 2, 2)


def test_cells_are_compact_and_agree_with_the_dense_form():
    """Issue 32: a knockout's cells never as a (Tq, Tk) array at long inputs; the same cells either way."""
    rng = np.random.default_rng(0)
    pairs = [tuple(int(x) for x in rng.integers(0, 40, 2)) for _ in range(30)]
    compact = Cells.select(40, 50, keys=[0, 7], queries=[39], rows=range(3, 9), cols=range(10, 20), pairs=pairs)
    dense = select_cells(40, 50, keys=[0, 7], queries=[39], rows=range(3, 9), cols=range(10, 20), pairs=pairs)
    assert compact.dense_array(40, 50).tolist() == dense.tolist() == Cells.of(dense).dense_array(40, 50).tolist()
    assert compact.count(40, 50) == int(dense.sum())
    for rows in (range(0, 7), range(7, 33), range(33, 40)):  # any block of rows, as a pass asks for it
        assert compact.block(rows, 50).numpy().tolist() == dense[rows.start:rows.stop].tolist()
    assert compact.first_row() == 0 and Cells.select(40, 50, pairs=[(12, 3)]).first_row() == 12
    # at 32,768 tokens a key column is a few bytes, and so is its cache key (a bool array would be 1 GiB)
    column = Cells.select(32_768, 32_768, keys=[0])
    from ui.tracing import intervention_key

    key = intervention_key({"decoder.1.self_attn": {0: column}})
    assert column.nbytes() < 1_000 and len(repr(key)) < 200 and column.count(32_768, 32_768) == 32_768
    assert intervention_key({"decoder.1.self_attn": {0: Cells.select(32_768, 32_768, keys=[1])}}) != key
    with pytest.raises(ValueError, match="too large"):
        Cells.of(np.zeros((DENSE_MAX_CELLS + 1, 1), dtype=bool))


def test_select_cells_and_pairs():
    cells = select_cells(4, 5, keys=[0], queries=[3], rows=range(1, 2), cols=range(2, 4), pairs=[(0, 4)])
    expected = np.zeros((4, 5), bool)
    expected[:, 0] = expected[3] = True
    expected[1, 2:4] = True
    expected[0, 4] = True
    assert cells.tolist() == expected.tolist()
    assert parse_pairs("3,5; (4 5)\n 0,0") == [(3, 5), (4, 5), (0, 0)]
    for bad in ("3", "a,b", "1,2,3"):
        with pytest.raises(ValueError):
            parse_pairs(bad)
    with pytest.raises(ValueError):
        select_cells(2, 2, keys=[2])


def test_knockout_effect_is_the_ablation_views_effect(dates):
    from model import allowed_matrix

    base = dates.run(SOURCE)
    name = "decoder.0.self_attn"
    Tq, Tk = base.trace[name].weights.shape[2:]
    cells = select_cells(Tq, Tk, keys=[0, Tk - 1])
    spec = knockout_spec(name, [0, 2], cells)
    eff = knockout_effect(dates, base, spec, allowed={name: allowed_matrix(base.trace[name].numpy())})
    after = intervened_outputs(dates, base, [{"knockouts": spec}])[0]
    ref = effect_of(base.logits, after)
    np.testing.assert_array_equal(eff.effect.p_after, ref.p_after)
    np.testing.assert_array_equal(eff.effect.kl, ref.kl)
    assert eff.knocked == 2 * int(cells.sum())
    causal_forbidden = np.triu(np.ones((Tq, Tk), bool), 1)
    assert eff.already_masked == 2 * int((cells & causal_forbidden).sum())
    assert eff.empty_rows == 2  # row 0 may see key 0 only: knocked out in both heads
    assert eff.seconds > 0


# the logit lens ----------------------------------------------------------------------------------------------------

def reference_lens(pipe, family: str, text: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """transformers' own output_hidden_states through the family's final norm and head: lm_head(final_norm(h_i)) for
    every depth but the last, and the model's logits at the last."""
    m = pipe.model
    with torch.inference_mode():
        if pipe.arch == "encoder-decoder":
            src = torch.tensor([pipe.tokenize_source(text).ids])
            tgt = torch.tensor([pipe.decoder_start() + [5, 7, 11]])
            out = m(input_ids=src, decoder_input_ids=tgt, output_hidden_states=True, use_cache=False)
            states = out.decoder_hidden_states
        else:
            ids = torch.tensor([pipe.tokenize_source(text).ids if pipe.arch == "encoder-only" else
                                pipe.tokenize_target(text).ids])
            out = m(input_ids=ids, output_hidden_states=True, **({"use_cache": False}
                                                                 if pipe.arch == "decoder-only" else {}))
            states = out.hidden_states
        rows = []
        for h in states[:-1]:
            if family == "gpt2":
                logits = m.lm_head(m.transformer.ln_f(h))
            elif family == "llama":
                logits = m.lm_head(m.model.norm(h))
            elif family == "bert":
                logits = m.cls(h)  # BERT has no final norm: its MLM head (transform + LayerNorm + decoder)
            elif family == "t5":
                logits = m.lm_head(m.decoder.final_layer_norm(h) * m.config.d_model ** -0.5)
            else:  # bart: no final norm; its head and the final logits bias
                logits = m.lm_head(h) + m.final_logits_bias
            rows.append(torch.log_softmax(logits[0].float(), -1))
        return rows, torch.log_softmax(out.logits[0].float(), -1), (None if pipe.arch != "encoder-decoder" else tgt)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert", "t5", "bart"])
def test_logit_lens_is_the_final_norm_and_head_on_transformers_hidden_states(family, family_dir):
    pipe = hf(family, family_dir)
    rows, last, tgt = reference_lens(pipe, family, TEXT)
    result = pipe.run(TEXT, target=None, generated_ids=None if tgt is None else tgt[0].tolist(), capture=False,
                      hidden_states=True)
    lens = logit_lens(pipe, result)
    depths = (pipe.info.n_decoder_layers if lens.stack == "decoder" else pipe.info.n_encoder_layers) + 1
    assert lens.log_probs.shape == (depths, len(result.logits), pipe.info.vocab_size) == (len(rows) + 1,
                                                                                           *last.shape)
    for d, ref in enumerate(rows):
        np.testing.assert_allclose(lens.log_probs[d], ref.numpy(), atol=2e-5, err_msg=f"depth {d}")
    # the last depth is the model's own output: its log-probabilities
    np.testing.assert_allclose(lens.log_probs[-1], last.numpy(), atol=2e-5)
    np.testing.assert_array_equal(lens.log_probs[-1], torch.log_softmax(result.logits.rows(), -1).numpy())


@pytest.mark.parametrize("family,pre_norm", [("gpt2", False), ("llama", False), ("t5", False), ("bert", True),
                                             ("bart", True)])
def test_which_families_last_hidden_state_is_before_the_final_norm(family, pre_norm, family_dir):
    """Why the lens takes its last depth from the logits: transformers' hidden_states[-1] already has the final norm
    applied for GPT-2, Llama and T5 (unembedding it again normalises twice); BERT and BART have no final norm."""
    pipe = hf(family, family_dir)
    result = pipe.run(TEXT, capture=False, hidden_states=True)
    stack = pipe.info.output_stack
    with torch.inference_mode():
        again = pipe.unembed(stack, result.hidden[stack][-1]).float()
    assert torch.allclose(again, result.logits.rows(), atol=1e-5) is pre_norm


@pytest.mark.parametrize("which", ["dates", "induction"])
def test_logit_lens_of_the_projects_models(which, dates, induction):
    pipe = {"dates": dates, "induction": induction}[which]
    text = SOURCE if which == "dates" else "red fox blue owl green cat red fox blue owl green cat"
    result = pipe.run(text, capture=False, hidden_states=True)
    hidden = result.hidden["decoder"]
    assert hidden.shape[0] == pipe.info.n_decoder_layers + 1
    model = pipe.model
    ids = torch.tensor([result.target.ids])
    with torch.inference_mode():
        np.testing.assert_array_equal(hidden[0].numpy(), model.tgt_embed(ids)[0].numpy())  # depth 0: embeddings
        # the own model's last hidden state is the residual stream before its final norm: unembed gives the logits
        np.testing.assert_allclose(pipe.unembed("decoder", hidden[-1]).numpy(), result.logits.rows().numpy(),
                                   atol=1e-5)
        lens = logit_lens(pipe, result)
        for d in range(hidden.shape[0] - 1):
            ref = torch.log_softmax(model.generator(model.decoder_norm(hidden[d])), -1)
            np.testing.assert_allclose(lens.log_probs[d], ref.numpy(), atol=1e-5)
    np.testing.assert_array_equal(lens.log_probs[-1], torch.log_softmax(result.logits.rows(), -1).numpy())
    assert lens.depth_labels[0] == "embeddings" and lens.depth_labels[-1].endswith("(output)")


def test_the_lens_sees_induction_only_after_layer_1(induction):
    """The repeated half is predictable only by copying (an induction head in layer 1): the lens after layer 0 has
    not got it, the output has."""
    seq = repeated_sequence(random.Random(4))
    result = induction.run(seq.text, capture=False, hidden_states=True)
    lens = logit_lens(induction, result)
    # token position p predicts word p; the repetition's words from its second one on are predictable
    predict = list(range(seq.second.start + 1, seq.second.stop))
    truth = [induction.tokenize_target(w).ids[1] for w in (seq.words[p] for p in predict)]
    p_after_block0 = np.exp(lens.log_probs[1, predict, truth])
    p_output = np.exp(lens.log_probs[2, predict, truth])
    assert p_output.mean() > 0.8 and p_after_block0.mean() < 0.1


def test_lens_keeps_top_k_when_the_full_array_is_too_big(dates):
    result = dates.run(SOURCE, capture=False, hidden_states=True)
    full = logit_lens(dates, result)
    small = logit_lens(dates, result, full_bytes=0)
    assert small.log_probs is None and full.log_probs is not None
    np.testing.assert_array_equal(small.top_ids, full.top_ids)
    np.testing.assert_allclose(small.top_log_probs, full.top_log_probs, atol=1e-5)  # z - logsumexp(z)
    np.testing.assert_allclose(small.token_log_probs, full.token_log_probs, atol=1e-5)
    expect = np.take_along_axis(full.log_probs, full.top_ids, -1)
    np.testing.assert_array_equal(full.top_log_probs, expect)
    for depth, pos in ((0, 0), (1, 3), (2, 5)):
        np.testing.assert_allclose(small.row(depth, pos), full.log_probs[depth, pos], atol=1e-5)
    np.testing.assert_allclose(small.log_probs_of(7), full.log_probs[..., 7], atol=1e-5)
    # the tracked token by default: the model's final prediction at each position
    assert small.token_ids.tolist() == result.logits.rows().argmax(-1).tolist()


def test_lens_follows_a_given_token_and_refuses_a_call_without_hidden_states(dates):
    result = dates.run(SOURCE, capture=False, hidden_states=True)
    lens = logit_lens(dates, result, tokens=9)
    np.testing.assert_array_equal(lens.token_log_probs, lens.log_probs[..., 9])
    with pytest.raises(ValueError, match="hidden_states=True"):
        logit_lens(dates, dates.run(SOURCE, capture=False))
    with pytest.raises(ValueError, match="vocabulary"):
        logit_lens(dates, result, tokens=10_000)


# head patching -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["dates", "induction", "gpt2", "llama", "t5", "bert", "bart"])
def test_patching_from_the_same_input_gives_exactly_zero(which, dates, induction, family_dir):
    pipe = pipe_of(which, dates, induction, family_dir)
    text = text_for(pipe)
    clean = run(pipe, text, capture=False)
    res = patch_heads(pipe, clean, run_corrupt(pipe, clean, text))
    assert res.n_runs == len(pipe.info.record_names) * pipe.info.n_heads
    for kind, eff in res.effect.items():
        assert eff.shape == (len(res.layers[kind]), pipe.info.n_heads)
        assert (eff == 0).all(), (kind, eff)  # exactly
    assert res.clean_value == pytest.approx(res.corrupt_value, abs=1e-4)


def test_a_patched_head_is_the_ablation_tensor_passed_in_the_call(dates):
    clean = run(dates, SOURCE, capture=False)
    corrupt = run_corrupt(dates, clean, "Monday, March 13, 1999")
    res = patch_heads(dates, clean, corrupt)
    metric = res.metric
    assert metric.kind == "log_prob" and metric.positions == tuple(range(len(clean.target.ids)))
    ref_clean = float(metric.value(clean.logits.rows(metric.positions)))
    assert res.clean_value == pytest.approx(ref_clean, abs=1e-4)
    for name, h in (("decoder.1.cross_attn", 3), ("encoder.0.self_attn", 1)):
        patched = run(dates, SOURCE, generated_ids=list(clean.target.ids), capture=False,
                      ablations={name: {h: corrupt.contexts[name][h]}})
        expected = float(metric.value(patched.logits.rows(metric.positions))) - ref_clean
        kind = "cross" if "cross" in name else "encoder self"
        layer = int(name.split(".")[1])
        assert res.effect[kind][res.layers[kind].index(layer), h] == pytest.approx(expected, abs=1e-3)
    assert res.corrupt_value < res.clean_value  # the other date's decoder inputs are unlikely under this source
    table = res.table()
    assert len(table) == 24 and set(table["kind"]) == {"encoder self", "decoder masked self", "cross"}


def test_logit_difference_metric(induction):
    text = "red fox blue owl green cat red fox blue owl green"
    clean = run(induction, text, capture=False)
    corrupt = run_corrupt(induction, clean, "red fox blue owl green cat red fox blue owl gold")
    answer, wrong = token_id(induction, "cat"), token_id(induction, "gold")
    res = patch_heads(induction, clean, corrupt, answer, wrong)
    last = clean.logits.row(-1)
    assert res.metric.kind == "logit_diff" and res.metric.positions == (len(clean.target.ids) - 1,)
    assert res.clean_value == pytest.approx(float(last[answer] - last[wrong]), abs=1e-4)
    corrupt_last = corrupt.logits.row(-1)
    assert res.corrupt_value == pytest.approx(float(corrupt_last[answer] - corrupt_last[wrong]), abs=1e-4)
    assert "logit(cat) − logit(gold)" in res.metric.describe(induction.token_label)
    only = metric_for(induction, clean, answer)
    assert float(only.value(clean.logits.rows(only.positions))) == pytest.approx(
        float(torch.log_softmax(last, -1)[answer]), abs=1e-5)


def test_patching_refuses_inputs_of_different_lengths(dates, induction):
    clean = run(dates, SOURCE, capture=False)
    with pytest.raises(PatchingError, match=r"tokenize to 11 and 8 tokens"):
        patch_heads(dates, clean, run_corrupt(dates, clean, "21 November 2026"))
    clean = run(induction, "red fox blue", capture=False)
    with pytest.raises(PatchingError, match="same length"):
        patch_heads(induction, clean, run_corrupt(induction, clean, "red fox"))
    with pytest.raises(PatchingError, match="keep_contexts"):
        patch_heads(induction, clean, run(induction, "red fox owl", capture=False))


def test_default_metric_positions(dates, induction):
    plain = run(induction, "red fox blue owl", capture=False)
    assert default_positions(induction, plain) == [4]  # a text: its last position (the next token)
    grown = run(induction, "red fox blue owl", max_new_tokens=3, capture=False)
    assert default_positions(induction, grown) == list(range(4, len(grown.target.ids)))  # from the prompt's end
    assert default_positions(dates, run(dates, SOURCE, capture=False)) == list(range(11))  # every output position


def repeated_pair(seed: int) -> tuple[RepeatedSequence, RepeatedSequence]:
    seq = repeated_sequence(random.Random(seed))
    r = random.Random(10_000 + seed)
    other = RepeatedSequence(noise=tuple(r.choice(INDUCTION_WORDS) for _ in seq.noise),
                             segment=tuple(r.sample(INDUCTION_WORDS, len(seq.segment))))
    return seq, other


def test_patching_finds_the_induction_head_on_the_repeated_half(induction):
    """Patching a head from another random sequence of the same shape: layer 1's best induction head matters most
    for predicting the repeated half, and hardly at all for the first half (nothing to copy there)."""
    repeated, first, scores = [], [], []
    for seed in range(12):
        seq, other = repeated_pair(seed)
        clean = run(induction, seq.text, capture=True)
        corrupt = run_corrupt(induction, clean, other.text)
        second = list(range(seq.second.start + 1, seq.second.stop))
        early = list(range(seq.first.start + 1, seq.first.stop))
        repeated.append(patch_heads(induction, clean, corrupt, positions=second).effect["decoder masked self"]
                        / len(second))
        first.append(patch_heads(induction, clean, corrupt, positions=early).effect["decoder masked self"]
                     / len(early))
        w = np.asarray(clean.trace["decoder.1.self_attn"].numpy().weights)[0]
        scores.append(induction_score(w, clean.target.ids))
    repeated, first = np.mean(repeated, 0), np.mean(first, 0)  # (layers, heads), nats per position
    best = int(np.argmax(np.mean(scores, 0)))  # layer 1's best induction head, by its attention
    assert np.mean(scores, 0)[best] > 0.9
    assert np.unravel_index(np.argmin(repeated), repeated.shape) == (1, best)
    assert repeated[1, best] < -0.5  # nats per position
    others = np.delete(repeated.ravel(), 4 + best)
    assert repeated[1, best] < 1.3 * np.median(others)
    assert abs(first[1, best]) < 0.2 * abs(repeated[1, best])


def test_patching_one_position_of_a_last_layer_head(induction):
    seq, other = repeated_pair(3)
    clean = run(induction, seq.text, capture=False, keep_contexts=True)
    corrupt = run_corrupt(induction, clean, other.text)
    second = list(range(seq.second.start + 1, seq.second.stop))
    pp = patch_each_position(induction, clean, corrupt, "decoder.1.self_attn", 1, positions=second)
    assert pp.effect.shape == (len(clean.target.ids),)
    outside = [t for t in range(len(pp.effect)) if t not in second]
    assert (pp.effect[outside] == 0).all()  # the last layer's context at t reaches position t only
    whole = patch_heads(induction, clean, corrupt, positions=second).effect["decoder masked self"][1, 1]
    assert pp.effect[second].sum() == pytest.approx(whole, abs=1e-3)  # so the positions add up
    same = patch_each_position(induction, clean, run_corrupt(induction, clean, seq.text), "decoder.1.self_attn", 1)
    assert (same.effect == 0).all()
    with pytest.raises(PatchingError, match="keep_contexts"):
        patch_each_position(induction, run(induction, seq.text, capture=False), corrupt, "decoder.1.self_attn", 1)


def test_corrupted_encoder_decoder_run_reads_the_clean_output(dates):
    clean = run(dates, SOURCE, capture=False)
    corrupt = run_corrupt(dates, clean, "Monday, March 13, 1999")
    assert list(corrupt.target.ids) == list(clean.target.ids) and corrupt.contexts
    again = rerun(dates, clean, SOURCE, keep_contexts=True, capture=False)
    np.testing.assert_array_equal(again.logits.rows().numpy(), clean.logits.rows().numpy())
    with pytest.raises(ValueError, match="source"):
        rerun(dates, clean, "Monday, March 13, 1999")


def test_output_head_at_chosen_positions(dates, induction, family_dir):
    """intervened_outputs(..., positions=...): the head runs on those positions only, the same logits."""
    for pipe in (dates, induction, hf("gpt2", family_dir), hf("t5", family_dir), hf("bert", family_dir)):
        res = pipe.run(text_for(pipe), capture=False)
        T = len(res.logits)
        specs = [{}, {"ablations": {pipe.info.record_names[-1]: {1: "zero"}}}]
        full = intervened_outputs(pipe, res, specs)
        at = intervened_outputs(pipe, res, specs, positions=[T - 1, 0])
        assert at.shape == (2, 2, full.shape[-1])
        np.testing.assert_allclose(at.numpy(), full[:, [T - 1, 0]].numpy(), atol=1e-5)
