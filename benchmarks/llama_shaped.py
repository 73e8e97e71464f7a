"""Llama-shaped models with random weights in the Hugging Face layout, built once into benchmarks/.cache (never
shipped): the long-context benchmark's models, and texts of an exact token length for them."""

from __future__ import annotations

from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
SHAPES = {  # name -> (layers, heads, key/value heads, d_model, positions)
    "llama-4x8-d512": (4, 8, 2, 512, 8192),
    "llama-8x16-d1024": (8, 16, 4, 1024, 4096),
    "llama3-8b": (32, 32, 8, 4096, 32768),  # only on a GPU, in bfloat16
}


def llama_shaped(name: str, dtype: str = "float32") -> Path:
    """The directory of one shape (built on first use: random weights, seed 0)."""
    path = CACHE / f"{name}-{dtype}"
    if (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file():
        return path
    import torch
    import transformers as tf

    from tests.hf_models import byte_level_tokenizer

    layers, heads, kv, d, positions = SHAPES[name]
    torch.manual_seed(0)
    tok = byte_level_tokenizer(["<|begin_of_text|>", "<|end_of_text|>"], "<|begin_of_text|> $A")
    cfg = tf.LlamaConfig(hidden_size=d, intermediate_size=int(d * 8 / 3) // 64 * 64, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=positions,
                         vocab_size=32000, bos_token_id=tok.token_to_id("<|begin_of_text|>"),
                         eos_token_id=tok.token_to_id("<|end_of_text|>"), torch_dtype=dtype)
    with torch.device("cpu"):
        model = tf.LlamaForCausalLM(cfg).to(getattr(torch, dtype))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save(str(path / "tokenizer.json"))
    return path
