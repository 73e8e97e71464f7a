"""How far a decoder-only model has learned to copy from context, measured on repeated word sequences.

- loss on the first occurrence of the segment vs on its repetition (in-context learning: the repetition falls far
  lower once the model copies);
- per layer and head, the previous-token score (mean weight on position i-1) and the induction score (at each word
  of the repetition, the weight on the word that followed its first occurrence), with uniform attention's value as
  the chance level.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..capture.recorder import Recorder
from ..own.tokenizer import Tokenizer
from ..own.transformer import Transformer
from .data import make_text_batch
from .tasks import RepeatedSequence


@torch.inference_mode()
def induction_report(model: Transformer, tokenizer: Tokenizer, sequences: list[RepeatedSequence],
                     batch_size: int = 128) -> dict:
    """Losses and per-head scores over ``sequences`` (see the module docstring); JSON-ready."""
    was_training = model.training
    model.eval()
    L, H = model.config.n_decoder_layers, model.config.n_heads
    sums = {"first": 0.0, "repeated": 0.0, "n_first": 0, "n_repeated": 0}
    ind, prev = np.zeros((L, H)), np.zeros((L, H))
    n_ind = n_prev = 0
    chance_ind = chance_prev = 0.0
    try:
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start: start + batch_size]
            x, y = make_text_batch([s.text for s in chunk], tokenizer, model.config.max_len, model.device)
            recorder = Recorder(capture=True)
            logits = model(None, x, recorder)
            trace = recorder.trace(None, x)
            nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T)
            weights = [trace[f"decoder.{layer}.self_attn"].weights for layer in range(L)]  # (B, H, T, T)
            for b, seq in enumerate(chunk):
                # word w is token w + 1 ([BOS] first); logits at token w predict word w
                first = torch.tensor(list(seq.first)[1:])
                rep = torch.tensor(list(seq.second)[1:])
                sums["first"] += float(nll[b, first].sum())
                sums["repeated"] += float(nll[b, rep].sum())
                sums["n_first"] += len(first)
                sums["n_repeated"] += len(rep)
                q_ind = torch.tensor(list(seq.second)) + 1  # token positions of the repetition
                k_ind = torch.tensor(list(seq.first)) + 2  # the token after each first occurrence
                T = len(seq.words) + 1
                q_prev = torch.arange(1, T)
                for layer in range(L):
                    w = weights[layer][b]
                    ind[layer] += w[:, q_ind, k_ind].sum(-1).cpu().numpy()
                    prev[layer] += w[:, q_prev, q_prev - 1].sum(-1).cpu().numpy()
                n_ind += len(q_ind)
                n_prev += len(q_prev)
                chance_ind += float((1.0 / (q_ind + 1).double()).sum())
                chance_prev += float((1.0 / (q_prev + 1).double()).sum())
    finally:
        model.train(was_training)
    ind, prev = ind / max(n_ind, 1), prev / max(n_prev, 1)
    return {
        "n_sequences": len(sequences),
        "loss_first": round(sums["first"] / max(sums["n_first"], 1), 4),
        "loss_repeated": round(sums["repeated"] / max(sums["n_repeated"], 1), 4),
        "induction": np.round(ind, 4).tolist(),  # [layer][head]
        "prev_token": np.round(prev, 4).tolist(),
        "chance": {"induction": round(chance_ind / max(n_ind, 1), 4), "prev_token": round(chance_prev / max(n_prev, 1),
                                                                                           4)},
        "best_induction_last_layer": round(float(ind[-1].max()), 4),
        "best_prev_token_first_layer": round(float(prev[0].max()), 4),
    }
