"""The fast first pass's attention (model.capture.passes.flash_with_lse) against F.scaled_dot_product_attention with the
whole mask materialised: plain causal, a sliding window, padding, rows with no key; a block of query rows at a
time gives the same rows as one call."""

import math

import pytest
import torch
import torch.nn.functional as F

from model.capture.passes import flash_with_lse
from model.core.masks import MaskSpec


def reference(q, k, v, allowed, scale):
    """Softmax attention and each row's log-sum-exp from the materialised mask (rows with no key: 0 and -inf)."""
    x = (q @ k.transpose(-2, -1)) * scale
    x = x.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(x, -1)
    has = allowed.any(-1)
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    ctx = torch.where(has[..., None], ctx, torch.zeros_like(ctx))
    return torch.nan_to_num(ctx), torch.where(has, lse, torch.full_like(lse, float("-inf")))


def allowed_of(spec: MaskSpec, B: int) -> torch.Tensor:
    m = spec.allowed(range(spec.tq), range(spec.tk))
    return torch.ones(B, 1, spec.tq, spec.tk, dtype=torch.bool) if m is None else m.expand(B, 1, spec.tq, spec.tk)


@pytest.mark.parametrize("case", ["causal", "window", "padding", "padding+causal", "empty rows"])
@pytest.mark.parametrize("block_mb", ["32", "0.01"])
def test_flash_with_lse_equals_the_materialised_reference(case, block_mb, monkeypatch):
    monkeypatch.setenv("ATTN_BLOCK_MB", block_mb)  # 0.01 MiB: a block of a few rows, many calls
    torch.manual_seed(0)
    B, H, T, d = 2, 4, 96, 16
    q, k, v = (torch.randn(B, H, T, d) for _ in range(3))
    padding = torch.ones(B, T, dtype=torch.bool)
    padding[1, 70:] = False
    spec = {"causal": MaskSpec(T, T, causal=True),
            "window": MaskSpec(T, T, causal=True, window=8),
            "padding": MaskSpec(T, T, padding=padding),
            "padding+causal": MaskSpec(T, T, padding=padding, causal=True),
            "empty rows": MaskSpec(T, T, padding=torch.zeros(B, T, dtype=torch.bool).index_fill_(1, torch.tensor([5]),
                                                                                               True), causal=True),
            }[case]
    ctx, lse = flash_with_lse(q, k, v, spec, None)
    ref_ctx, ref_lse = reference(q, k, v, allowed_of(spec, B), 1 / math.sqrt(d))
    torch.testing.assert_close(ctx, ref_ctx, atol=2e-6, rtol=1e-5)
    finite = torch.isfinite(ref_lse)
    assert torch.equal(finite, torch.isfinite(lse))
    torch.testing.assert_close(lse[finite], ref_lse[finite], atol=2e-6, rtol=1e-5)
    if case == "empty rows":  # rows before the one real key have none: zeros, never NaN
        assert not torch.isnan(ctx).any() and (ctx[:, :, :5] == 0).all()


def test_a_block_of_rows_at_a_time_gives_the_rows_of_one_call(monkeypatch):
    torch.manual_seed(1)
    B, H, T, d = 1, 2, 200, 8
    q, k, v = (torch.randn(B, H, T, d) for _ in range(3))
    spec = MaskSpec(T, T, causal=True, window=16)
    whole = flash_with_lse(q, k, v, spec, 0.3)
    monkeypatch.setenv("ATTN_BLOCK_MB", "0.005")
    blocks = flash_with_lse(q, k, v, spec, 0.3)
    torch.testing.assert_close(blocks[0], whole[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(blocks[1], whole[1], atol=1e-6, rtol=1e-6)
