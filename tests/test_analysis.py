"""Analyses of captured attention against hand computations and known properties."""

import numpy as np
import pytest
import torch

from model import ModelConfig, Tokenizer, Transformer, TransformerPipeline
from model.analysis import (
    align_tokens,
    effect_of,
    entropy,
    flow,
    fuse_heads,
    head_js_distances,
    head_scores,
    induction_score,
    induction_targets,
    js_distance_rows,
    previous_token_score,
    rank_heads,
    residual_attention,
    rollout,
    source_attribution,
    uniform_weights,
)
from model.analysis.heads import diagonal_score, key_share, max_weight, mean_distance

CAUSAL3 = np.tril(np.ones((3, 3), bool))


# head statistics ----------------------------------------------------------------------------------------------------

def test_entropy_by_hand_with_masked_keys_excluded():
    w = np.array([[[1.0, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]])
    ent, norm = entropy(w, CAUSAL3)
    assert ent[0] == pytest.approx((0 + np.log(2) + np.log(3)) / 3)
    assert norm[0] == pytest.approx(1.0)  # rows 1 and 2 are uniform over their allowed keys; row 0 has one key
    one_hot = np.array([[[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]]])
    assert entropy(one_hot, CAUSAL3)[1][0] == pytest.approx(0.0)


def test_distance_max_self_prev_and_first_share_by_hand():
    w = np.array([[[1.0, 0, 0], [0.25, 0.75, 0], [0.5, 0.3, 0.2]]])
    assert mean_distance(w, CAUSAL3)[0] == pytest.approx((0 + 0.25 * 1 + (0.5 * 2 + 0.3 * 1)) / 3)
    assert max_weight(w, CAUSAL3)[0] == pytest.approx((1 + 0.75 + 0.5) / 3)
    assert diagonal_score(w, CAUSAL3)[0] == pytest.approx((1 + 0.75 + 0.2) / 3)
    assert previous_token_score(w, CAUSAL3)[0] == pytest.approx((0.25 + 0.3) / 2)
    assert key_share(w, [0], CAUSAL3)[0] == pytest.approx((1 + 0.25 + 0.5) / 3)


def test_fully_masked_rows_are_left_out():
    w = np.array([[[0.0, 0, 0], [0.5, 0.5, 0], [0, 0, 1.0]]])
    allowed = np.array([[False] * 3, [True, True, False], [True, True, True]])
    assert max_weight(w, allowed)[0] == pytest.approx((0.5 + 1.0) / 2)


def test_induction_targets_and_a_perfect_induction_head_scores_one():
    ids = [7, 1, 2, 3, 1, 2, 3]  # [BOS] A B C A B C
    assert induction_targets(ids) == [[], [], [], [], [2], [3], [4]]
    T = len(ids)
    perfect = np.zeros((1, T, T))
    perfect[0, :, 0] = 1.0  # rows without a target look at BOS
    for i, tg in enumerate(induction_targets(ids)):
        if tg:
            perfect[0, i] = 0
            perfect[0, i, tg[0]] = 1.0
    allowed = np.tril(np.ones((T, T), bool))
    assert induction_score(perfect, ids, allowed)[0] == pytest.approx(1.0)
    uniform = uniform_weights(allowed)[None]
    assert induction_score(uniform, ids, allowed)[0] == pytest.approx(np.mean([1 / 5, 1 / 6, 1 / 7]))
    assert np.isnan(induction_score(uniform, [1, 2, 3, 4, 5, 6, 7], allowed)[0])  # nothing repeats


def test_previous_token_head_scores_one_and_uniform_scores_chance():
    T = 6
    allowed = np.tril(np.ones((T, T), bool))
    prev = np.zeros((1, T, T))
    prev[0, 0, 0] = 1
    prev[0, np.arange(1, T), np.arange(T - 1)] = 1
    assert previous_token_score(prev, allowed)[0] == pytest.approx(1.0)
    chance = np.mean([1 / (i + 1) for i in range(1, T)])
    assert previous_token_score(uniform_weights(allowed)[None], allowed)[0] == pytest.approx(chance)


def test_head_scores_for_cross_attention_leave_out_position_statistics():
    w = np.full((2, 3, 4), 0.25)
    s = head_scores(w, None, self_attention=False, causal=False, key_special=[True, False, False, True])
    assert s.distance is None and s.prev_token is None and s.induction is None and s.self_share is None
    np.testing.assert_allclose(s.sep_share, [0.25, 0.25])  # the last key is special ([EOS])
    np.testing.assert_allclose(s.entropy_norm, [1.0, 1.0])


# rollout and flow ---------------------------------------------------------------------------------------------------

def test_rollout_by_hand_on_three_tokens():
    a1 = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]])
    a2 = np.array([[1.0, 0, 0], [0.0, 1.0, 0], [0.0, 0.0, 1.0]])
    r1 = 0.5 * np.eye(3) + 0.5 * a1
    r2 = 0.5 * np.eye(3) + 0.5 * a2
    np.testing.assert_allclose(rollout([a1[None], a2[None]]), r2 @ r1)
    np.testing.assert_allclose(residual_attention(a1), r1)


@pytest.mark.parametrize("how", ["mean", "max", "min", 1])
def test_rollout_rows_sum_to_one_and_identity_stays_identity(how):
    rng = np.random.default_rng(0)
    layers = []
    for _ in range(3):
        x = np.tril(rng.random((4, 5, 5)))
        layers.append(x / x.sum(-1, keepdims=True))
    r = rollout(layers, how)
    np.testing.assert_allclose(r.sum(-1), np.ones(5))
    assert np.allclose(np.triu(r, 1), 0)  # causal layers give a causal rollout
    eye = [np.broadcast_to(np.eye(5), (4, 5, 5))] * 3
    np.testing.assert_allclose(rollout(eye, how), np.eye(5))


def test_fuse_heads():
    w = np.array([[[0.2, 0.8]], [[0.6, 0.4]]])
    np.testing.assert_allclose(fuse_heads(w, "mean"), [[0.4, 0.6]])
    np.testing.assert_allclose(fuse_heads(w, "max"), [[0.6 / 1.4, 0.8 / 1.4]])
    np.testing.assert_allclose(fuse_heads(w, 1), [[0.6, 0.4]])
    with pytest.raises(ValueError):
        fuse_heads(w, "median")


def test_flow_by_hand_on_a_two_layer_chain():
    # layer 1: token 1 reads token 0 fully; layer 2: identity. With the residual, Â1 = [[1, 0], [.5, .5]]
    a1 = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    a2 = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    f = flow([a1, a2])
    # paths from input 0 to top 1: (0 ->1 at layer 1: 0.5) -> (1 -> 1 at layer 2: 1.0): 0.5
    np.testing.assert_allclose(f, [[1.0, 0.0], [0.5, 0.5]], atol=2e-6)
    eye = [np.eye(3)[None]] * 2
    np.testing.assert_allclose(flow(eye), np.eye(3), atol=2e-6)


def test_flow_never_exceeds_one_and_matches_rollout_on_a_single_layer():
    rng = np.random.default_rng(1)
    x = np.tril(rng.random((2, 4, 4)))
    x /= x.sum(-1, keepdims=True)
    f = flow([x])
    assert (f <= 1 + 1e-6).all() and (f >= 0).all()
    np.testing.assert_allclose(f, rollout([x]), atol=2e-6)  # one layer: a single edge per pair, flow = capacity


def test_source_attribution_rows_sum_to_one_and_by_hand():
    enc = [np.array([[[0.5, 0.5], [0.5, 0.5]]])]
    dec_self = [np.array([[[1.0, 0.0], [0.5, 0.5]]])]
    cross = [np.array([[[1.0, 0.0], [0.0, 1.0]]])]
    S, D = source_attribution(enc, dec_self, cross)
    np.testing.assert_allclose((S.sum(-1) + D.sum(-1)), [1.0, 1.0])
    r_enc = residual_attention(enc[0][0])
    a = residual_attention(dec_self[0][0])
    np.testing.assert_allclose(S, 0.5 * cross[0][0] @ r_enc)
    np.testing.assert_allclose(D, 0.5 * a)


# comparison ---------------------------------------------------------------------------------------------------------

def test_js_distance_bounds():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    assert np.allclose(js_distance_rows(p, p), 0)
    assert js_distance_rows(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_alignment_of_different_inputs_and_head_distances():
    al = align_tokens(["[BOS]", "a", "b", "c"], ["[BOS]", "a", "x", "b", "c"])
    assert not al.identical and al.a.tolist() == [0, 1, 2, 3] and al.b.tolist() == [0, 1, 3, 4]
    same = align_tokens(["x", "y"], ["x", "y"])
    assert same.identical and same.size == 2
    w = np.random.default_rng(2).random((3, 4, 4))
    w /= w.sum(-1, keepdims=True)
    idx = np.arange(4)
    np.testing.assert_allclose(head_js_distances(w, w, idx, idx, idx, idx), 0, atol=1e-7)
    other = np.roll(w, 1, axis=-1)
    assert (head_js_distances(w, other, idx, idx, idx, idx) > 0.05).all()


# ablation -----------------------------------------------------------------------------------------------------------

def test_effect_of_identical_runs_is_nothing():
    logits = torch.randn(5, 11)
    eff = effect_of(logits, logits)
    assert np.allclose(eff.kl, 0, atol=1e-6) and not eff.changed.any()
    np.testing.assert_allclose(eff.p_before, eff.p_after)


@pytest.fixture(scope="module")
def tiny_pipe():
    tok = Tokenizer.train(["a b c d e f g"], level="word")
    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, d_model=16, n_heads=2,
                      n_encoder_layers=1, n_decoder_layers=1, d_ff=16, dropout=0.0, max_len=16)
    return TransformerPipeline(cfg, Transformer(cfg).eval(), tok, tok)


def test_rank_heads_ablates_every_head_and_matches_single_runs(tiny_pipe):
    res = tiny_pipe.run("a b c d", "c d e")
    table, seconds = rank_heads(tiny_pipe, res, "zero")
    assert len(table) == 3 * 2 and seconds > 0 and table["rank"].tolist() == list(range(1, 7))
    assert (table["mean_kl"].diff().dropna() <= 0).all()
    top = table.iloc[0]
    alone = tiny_pipe.run("a b c d", "c d e", ablations={top["attention"]: {int(top["head"]): "zero"}})
    eff = effect_of(res.logits, alone.logits.rows())
    assert eff.kl.mean() == pytest.approx(top["mean_kl"], rel=1e-4, abs=1e-6)


def test_ablated_generation_differs_and_is_traced(tiny_pipe):
    every_head = {n: {0: "zero", 1: "zero"} for n in tiny_pipe.info.record_names}
    base = tiny_pipe.run("a b c d", max_new_tokens=6)
    ablated = tiny_pipe.run("a b c d", max_new_tokens=6, ablations=every_head)
    assert ablated.trace["decoder.0.cross_attn"].ablated.all()
    assert torch.equal(ablated.trace["decoder.0.cross_attn"].context, torch.zeros_like(
        ablated.trace["decoder.0.cross_attn"].context))
    assert base.trace["decoder.0.cross_attn"].ablated is None


def test_head_table_covers_every_head_of_every_attention(tiny_pipe):
    from model.analysis.heads import STAT_DEFINITIONS, head_table

    res = tiny_pipe.run("a b c a b c", "c d e")
    table = head_table(res.trace)
    assert len(table) == 3 * 2 and set(STAT_DEFINITIONS) <= set(table.columns)
    cross = table[table["kind"] == "cross"]
    assert cross["distance"].isna().all() and cross["prev_token"].isna().all()  # positions of two sequences
    enc = table[table["attention"] == "encoder.0.self_attn"].iloc[0]
    w = res.trace["encoder.0.self_attn"].weights[0, 0].numpy()
    assert enc["max_weight"] == pytest.approx(w.max(-1).mean(), rel=1e-5)
    assert (table["entropy_norm"].dropna().between(0, 1 + 1e-6)).all()


def test_alignment_score_against_a_reference():
    from model.analysis import alignment_score

    ref = np.array([[[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]]])
    assert alignment_score(ref, ref)[0] == pytest.approx((0.9 + 0.7) / 2)
    uniform = np.full((1, 2, 3), 1 / 3)
    assert alignment_score(uniform, ref)[0] == pytest.approx(1 / 3)
