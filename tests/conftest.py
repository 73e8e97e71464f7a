"""Test-wide settings."""

import torch

# The app computes with one intra-op thread (app.py, ATTN_TORCH_THREADS). Reference runs in the tests use the
# same, so that "the chart holds exactly the model's numbers" compares like with like: another thread count
# changes the summation order and the last float bits.
torch.set_num_threads(1)
