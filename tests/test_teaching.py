"""Pure tests of model.teaching: every playground tensor against an independent NumPy computation."""

import numpy as np
import pytest
import torch

from model import teaching
from model.core.attention import attention, subsequent_mask
from model.training.shapes import COLOURS, scenes


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_self_attention(X, Wq, Wk, Wv, scale=True, future=None):
    """Reference: the tutorial's formulas in float64 NumPy."""
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    omega = Q @ K.T
    logits = omega / np.sqrt(Q.shape[1]) if scale else omega
    if future is not None:
        logits = np.where(future, -np.inf, logits)
    weights = np_softmax(logits)
    return Q, K, V, omega, weights, weights @ V


def test_tokenize_words_punctuation_and_distinct_labels():
    s = teaching.tokenize("Life is short, eat dessert first")
    assert s.tokens == ["Life", "is", "short", ",", "eat", "dessert", "first"]
    rep = teaching.tokenize("the cat saw the cat")
    assert len(set(rep.labels)) == len(rep.labels) == 5
    assert teaching.tokenize("").tokens == [] and teaching.tokenize("   ").tokens == []
    emoji = teaching.tokenize("I ❤️ 🍰 !")
    assert "I" in emoji.tokens and len(emoji.tokens) == 4


def test_tokenize_caps_long_input():
    s = teaching.tokenize(" ".join(f"w{i}" for i in range(300)))
    assert s.truncated and s.n_tokens == 300 and len(s.tokens) == teaching.MAX_TOKENS
    assert not teaching.tokenize("a b c").truncated


def test_embeddings_are_seeded_and_stable_when_the_sentence_grows():
    a = teaching.embed(3, 8, seed=7)
    b = teaching.embed(10, 8, seed=7)
    assert torch.equal(a, b[:3])
    assert not torch.equal(a, teaching.embed(3, 8, seed=8))
    # changing d_v must not change W_query
    s1 = teaching.self_attention(b, d_k=4, d_v=3, seed=7)
    s2 = teaching.self_attention(b, d_k=4, d_v=5, seed=7)
    assert np.array_equal(s1.W_query, s2.W_query) and s1.W_value.shape == (8, 3) and s2.W_value.shape == (8, 5)


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("seed", [0, 123])
def test_self_attention_matches_numpy(seed, scale):
    X = teaching.embed(7, 8, seed)
    s = teaching.self_attention(X, d_k=4, d_v=3, seed=seed, scale=scale)
    assert s.W_query.shape == (8, 4) and s.W_value.shape == (8, 3)  # (d_in, d_out): Q = X W, no transpose
    Q, K, V, omega, weights, Z = np_self_attention(*(a.astype(np.float64) for a in
                                                     (s.X, s.W_query, s.W_key, s.W_value)), scale=scale)
    np.testing.assert_allclose(s.Q, Q, atol=1e-5)
    np.testing.assert_allclose(s.omega, omega, atol=1e-4)
    np.testing.assert_allclose(s.weights, weights, atol=1e-5)
    np.testing.assert_allclose(s.Z, Z, atol=1e-5)
    np.testing.assert_allclose(s.weights.sum(axis=1), 1.0, atol=1e-5)


def test_scaling_changes_the_weights_and_not_omega():
    X = teaching.embed(6, 8, 1)
    on = teaching.self_attention(X, 16, 3, 1, scale=True)
    off = teaching.self_attention(X, 16, 3, 1, scale=False)
    np.testing.assert_allclose(on.omega, off.omega, atol=1e-4)
    np.testing.assert_allclose(on.logits * 4.0, off.logits, atol=1e-4)
    assert np.abs(on.weights - off.weights).max() > 1e-2


def test_run_attention_is_the_model_attention():
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 6, 4), torch.randn(2, 6, 3)
    a = teaching.run_attention(q, k, v)
    b = attention(q, k, v)
    assert torch.equal(a.weights, b.weights) and torch.equal(a.context, b.context)


def test_causal_mask_is_the_complement_of_the_tutorials_triu():
    assert torch.equal(teaching.causal_allowed(5), subsequent_mask(5))  # True = may attend, as everywhere
    assert torch.equal(~teaching.causal_allowed(5), torch.triu(torch.ones(5, 5), diagonal=1).bool())
    assert not teaching.causal_allowed(4, diagonal=0).diagonal().any()  # diagonal=0 hides the token itself
    assert teaching.causal_allowed(4, diagonal=1).diagonal().all()


@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("scale", [True, False])
def test_masking_before_and_after_softmax_agree(T, scale):
    X = teaching.embed(T, 8, 3)
    s = teaching.self_attention(X, 4, 3, 3)
    mc = teaching.compare_masking(s.Q, s.K, s.V, diagonal=1, scale=scale)
    assert mc.max_abs_diff < 1e-6
    assert mc.nan_rows == [] and mc.empty_rows == []
    np.testing.assert_allclose(mc.before, mc.after, atol=1e-6)
    assert np.all(mc.before[np.triu_indices(T, 1)] == 0)
    # reference: NumPy softmax of the -inf-filled scores
    ref = np_self_attention(s.X.astype(float), s.W_query, s.W_key, s.W_value, scale=scale,
                            future=np.triu(np.ones((T, T)), 1).astype(bool))[4]
    np.testing.assert_allclose(mc.before, ref, atol=1e-5)


def test_diagonal_zero_is_the_classic_bug():
    X = teaching.embed(5, 8, 0)
    s = teaching.self_attention(X, 4, 3, 0, causal=True, diagonal=0)
    assert np.all(s.weights[0] == 0) and np.all(s.Z[0] == 0)  # app's attention: zeros, not NaN
    assert np.allclose(np.diag(s.weights), 0)  # every token loses itself
    assert not np.isnan(s.weights).any()
    mc = teaching.compare_masking(s.Q, s.K, s.V, diagonal=0)
    assert mc.nan_rows == [0] and mc.empty_rows == [0]
    assert np.isnan(mc.naive[0]).all() and not np.isnan(mc.naive[1:]).any()
    assert not np.isnan(mc.before).any() and not np.isnan(mc.after).any()
    assert mc.max_abs_diff < 1e-6
    # diagonal=-1 empties two rows
    assert teaching.compare_masking(s.Q, s.K, s.V, diagonal=-1).empty_rows == [0, 1]


def test_query_breakdown_spells_out_one_row():
    X = teaching.embed(6, 8, 5)
    s = teaching.self_attention(X, 4, 3, 5)
    b = teaching.query_breakdown(s, 1)
    np.testing.assert_allclose(b.omega, s.K @ s.Q[1], atol=1e-5)  # omega_2j = q_2 . k_j
    np.testing.assert_allclose(b.weights, np_softmax(b.omega / 2.0), atol=1e-5)  # softmax over the whole row
    np.testing.assert_allclose(b.z_sum, (b.weights[:, None] * s.V).sum(axis=0), atol=1e-6)
    assert b.max_abs_diff < 1e-5


def test_cross_attention_shapes_and_values():
    X1, X2 = teaching.embed(6, 8, 2), teaching.embed(4, 5, 2, name="X2")
    cr = teaching.cross_attention(X1, X2, d_k=3, d_v=2, seed=2)
    assert cr.weights.shape == (6, 4) and cr.Z.shape == (6, 2)
    assert cr.W_query.shape == (8, 3) and cr.W_key.shape == (5, 3) and cr.W_value.shape == (5, 2)
    Q, K, V = cr.X1 @ cr.W_query, cr.X2 @ cr.W_key, cr.X2 @ cr.W_value
    np.testing.assert_allclose(cr.weights, np_softmax(Q @ K.T / np.sqrt(3)), atol=1e-5)
    np.testing.assert_allclose(cr.Z, cr.weights @ V, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_each_head_is_single_head_attention(causal):
    X = teaching.embed(5, 8, 4)
    mh = teaching.multi_head(X, n_heads=3, d_k=2, d_v=2, seed=4, causal=causal)
    assert mh.concat.shape == (5, 6) and mh.W_out.shape == (6, 8) and mh.output.shape == (5, 8)
    future = np.triu(np.ones((5, 5)), 1).astype(bool) if causal else None
    for h in range(3):
        ref = np_self_attention(X.numpy().astype(float), mh.W_query[h], mh.W_key[h], mh.W_value[h], future=future)
        np.testing.assert_allclose(mh.weights[h], ref[4], atol=1e-5)
        np.testing.assert_allclose(mh.concat[:, 2 * h:2 * h + 2], ref[5], atol=1e-5)
    np.testing.assert_allclose(mh.output, mh.concat @ mh.W_out, atol=1e-5)
    assert not np.array_equal(mh.W_query[0], mh.W_query[1])  # each head has its own matrices


def test_scaling_curve_unscaled_saturates():
    c = teaching.scaling_curve([1, 4, 64, 256], n_keys=8, seed=0, n_samples=8)
    assert c.entropy_unscaled[-1] < 0.3 * c.entropy_scaled[-1]
    assert c.max_weight_unscaled[-1] > 0.8 > c.max_weight_scaled[-1]
    # scaled rows stay spread out at every width
    assert c.entropy_scaled.min() > 0.7 * c.entropy_scaled.max()
    np.testing.assert_allclose(c.entropy_scaled[0], c.entropy_unscaled[0], atol=1e-5)  # sqrt(1) = 1


def test_edge_sizes_d_k_1_and_one_token():
    s = teaching.self_attention(teaching.embed(1, 1, 0), d_k=1, d_v=1, seed=0, causal=True)
    assert s.weights.shape == (1, 1) and s.weights[0, 0] == pytest.approx(1.0)
    mh = teaching.multi_head(teaching.embed(1, 1, 0), 1, 1, 1, 0, causal=True)
    assert mh.output.shape == (1, 1)


def test_cut_into_patches_is_row_major_over_the_grid():
    img = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)
    pixels = teaching.cut_into_patches(img, 4)  # a 2 x 3 grid
    assert pixels.shape == (6, 4 * 4 * 3)
    for n in range(6):
        r, c = divmod(n, 3)
        assert np.array_equal(pixels[n], img[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4].reshape(-1))
    assert teaching.patch_labels(2, 3) == ["[CLS]", "r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2"]


@pytest.mark.parametrize("query", teaching.QUERIES)
def test_the_cls_query_is_attention_over_the_patch_tokens(query):
    img = scenes(1, 3)[0].pixels
    s = teaching.patch_attention(img, 8, 64, 32, 3, query)
    assert s.grid == (8, 8) and s.X.shape == (65, 64) and s.K.shape == (65, 32) and s.labels[1] == "r0c0"
    np.testing.assert_allclose(s.K, s.X @ s.W_key, atol=1e-4)
    positions = s.X[1:] - s.pixels @ s.W_embed  # what the embedding adds to the pixels: small, one row per patch
    assert np.abs(positions).max() < 0.6 and not np.allclose(positions[0], positions[1])
    scores = s.K.astype(np.float64) @ s.q.astype(np.float64)
    np.testing.assert_allclose(s.scores, scores, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(s.weights, np_softmax(scores / np.sqrt(32)), atol=1e-5)
    assert s.patch_positions == list(range(1, 65))


def test_a_query_that_looks_for_red_finds_the_red_patches():
    """A perturbation, not a golden number: on scenes of the shapes task (black background), the patches holding
    red take most of the [CLS] weight; paint the red shape blue and they lose it."""
    d_model, d_k = teaching.PATCH_D_MODEL, teaching.PATCH_D_K
    for seed in range(8):
        scene = scenes(1, seed)[0]
        red = scene.patches(8).reshape(-1)  # (64,) the patches holding a red pixel
        on_red = teaching.patch_attention(scene.pixels, 8, d_model, d_k, seed).weights[1:][red].sum()
        blue = scene.pixels.copy()
        blue[scene.mask()] = COLOURS["blue"]
        after = teaching.patch_attention(blue, 8, d_model, d_k, seed).weights[1:][red].sum()
        assert on_red > 0.7 and after < 0.1, seed
