"""Per-token norms from a trace (model.analysis.tokens): values, outputs and received attention, and the high-norm
tokens of "Vision Transformers Need Registers", found in a model built to have one."""

import numpy as np
import pytest
import torch

from model.analysis.tokens import OUTLIER_FACTOR, token_norms
from model.call import run
from model.own.config import VisionConfig
from model.own.pipeline import VisionPipeline
from model.own.vit import VisionTransformer
from model.training.shapes import SHAPES, scenes


@pytest.fixture(scope="module")
def artefact():
    """A tiny post-LN ViT (its first attention reads the embeddings unnormalised) with a huge vector at one position
    (the 6th patch), as a register-less ViT's artefact token."""
    torch.manual_seed(0)
    config = VisionConfig(class_names=SHAPES, d_model=32, n_heads=4, n_encoder_layers=2, d_ff=64, norm="post")
    model = VisionTransformer(config).eval().requires_grad_(False)
    with torch.no_grad():
        model.positions[0, 6] += 40.0  # a huge residual vector at position 6 from the start
    return VisionPipeline(config, model)


def test_norms_are_the_records_own_numbers(artefact):
    res = run(artefact, scenes(1, 0)[0].pixels)
    rec = res.trace["encoder.1.self_attn"]
    norms = token_norms(res.trace, "encoder.1.self_attn")
    v = rec.v[0].transpose(0, 1).reshape(65, -1)  # (T, H * d_v)
    np.testing.assert_allclose(norms.value, v.norm(dim=-1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(norms.output, rec.output[0].norm(dim=-1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(norms.received, rec.weights[0].sum(1).mean(0).numpy(), rtol=1e-6)
    assert norms.received.sum() == pytest.approx(65.0, rel=1e-5)  # every row's weights sum to one


def test_the_high_norm_token_is_found_and_a_model_without_one_has_none(artefact):
    res = run(artefact, scenes(1, 0)[0].pixels)
    norms = token_norms(res.trace, "encoder.0.self_attn")
    assert norms.outliers() == [6]
    assert norms.value[6] > OUTLIER_FACTOR * np.median(norms.value)
    torch.manual_seed(0)
    config = artefact.config
    plain = VisionPipeline(config, VisionTransformer(config).eval())
    assert token_norms(run(plain, scenes(1, 0)[0].pixels).trace, "encoder.0.self_attn").outliers() == []


def test_cross_attention_has_no_token_norms(dates):
    res = dates.run("21 November 2026")
    with pytest.raises(ValueError, match="self-attention"):
        token_norms(res.trace, "decoder.0.cross_attn")
    assert token_norms(res.trace, "decoder.0.self_attn").value.shape == (len(res.target.ids),)
