"""A GPT-2-small-shaped model with random weights (12 layers x 12 heads, d_model 768, 50,257-token vocabulary,
1,024 positions) in the Hugging Face layout, built once into benchmarks/.cache (never shipped), and texts of an
exact token length for it."""

from __future__ import annotations

from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "gpt2small"


def gpt2_small() -> Path:
    if (CACHE / "model.safetensors").is_file() and (CACHE / "tokenizer.json").is_file():
        return CACHE
    import torch
    import transformers as tf

    from tests.hf_models import byte_level_tokenizer

    torch.manual_seed(0)
    tok = byte_level_tokenizer(["<|endoftext|>"], None)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257,
                                             bos_token_id=0, eos_token_id=0))
    CACHE.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(CACHE)
    tok.save(str(CACHE / "tokenizer.json"))
    return CACHE


def text_of_tokens(tokenizer, n: int, shift: int = 0) -> str:
    """A text that the tokenizer splits into exactly ``n`` tokens (whole-word tokens, varied by ``shift``)."""
    words = sorted({t[1:] for t in tokenizer.get_vocab() if t.startswith("Ġ") and t[1:].isalpha()})
    text = "".join(" " + words[(i * 7 + shift) % len(words)] for i in range(n))
    ids = tokenizer.encode(text).ids
    if len(ids) != n:  # a merge across words: trim or pad with single letters
        text = tokenizer.decode(ids[:n])
        while len(tokenizer.encode(text).ids) < n:
            text += " a"
    return text
