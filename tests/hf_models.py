"""Tiny random models of each transformers family, saved in the Hugging Face layout with a small tokenizer.json.

Built from config objects (nothing downloaded), for the tests and the benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CORPUS = [
    "the cat sat on the mat", "a dog ran in the park", "Saturday, November 21, 2026", "hello world, hello again",
    "attention is all you need", "the quick brown fox jumps over the lazy dog", "1 2 3 4 5 6 7 8 9 10",
    "When Mary and John went to the store, John gave a drink to Mary", "café naïve résumé 😀",
    "line one\nline two\ttabbed",
] * 3
FAMILIES = ("bert", "roberta", "distilbert", "gpt2", "llama", "mistral", "qwen2", "qwen3", "t5", "bart")
# beyond the families the app was built for: logit softcapping, other position schemes, local/global layers
MORE_FAMILIES = ("gemma2", "gemma3", "gpt_neox", "opt", "modernbert")


def wordpiece_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def byte_level_tokenizer(specials: list[str], template: str | None) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if template:
        names = [t for t in specials if t in template]
        tok.post_processor = processors.TemplateProcessing(single=template,
                                                           special_tokens=[(t, tok.token_to_id(t)) for t in names])
    return tok


def sentencepiece_tokenizer(specials: list[str], template: str) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False))
    names = [t for t in specials if t in template]
    tok.post_processor = processors.TemplateProcessing(single=template,
                                                       special_tokens=[(t, tok.token_to_id(t)) for t in names])
    return tok


def build(family: str, path: Path, seed: int = 0, **overrides) -> Path:
    """Save a tiny random ``family`` model and its tokenizer under ``path``; returns ``path``."""
    import transformers as tf

    torch.manual_seed(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if family in ("bert", "distilbert"):
        tok = wordpiece_tokenizer()
    elif family in ("roberta", "bart"):
        tok = byte_level_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s> $A </s>")
    elif family == "gpt2":
        tok = byte_level_tokenizer(["<|endoftext|>"], None)
    elif family in ("qwen2", "qwen3"):
        tok = byte_level_tokenizer(["<|endoftext|>", "<|im_start|>"], None)
    elif family == "llama":
        tok = byte_level_tokenizer(["<|begin_of_text|>", "<|end_of_text|>"], "<|begin_of_text|> $A")
    elif family == "mistral":
        tok = sentencepiece_tokenizer(["<unk>", "<s>", "</s>"], "<s> $A")
    elif family == "t5":
        tok = sentencepiece_tokenizer(["<pad>", "</s>", "<unk>"], "$A </s>")
    elif family in MORE_FAMILIES:
        tok = byte_level_tokenizer(["<|endoftext|>", "<bos>"], None)
    else:
        raise ValueError(f"unknown family {family}")
    V = tok.get_vocab_size() + 3  # a few unused rows, as real checkpoints have
    small = dict(vocab_size=V)
    if family == "bert":
        cfg = tf.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=64, **small)
        model = tf.BertForMaskedLM(cfg)
    elif family == "roberta":
        cfg = tf.RobertaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2, **small)
        model = tf.RobertaForMaskedLM(cfg)
    elif family == "distilbert":
        cfg = tf.DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=4, max_position_embeddings=64, **small)
        model = tf.DistilBertForMaskedLM(cfg)
    elif family == "gpt2":
        eos = tok.token_to_id("<|endoftext|>")
        cfg = tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=eos, eos_token_id=eos,
                            **small)
        model = tf.GPT2LMHeadModel(cfg)
    elif family in ("llama", "mistral", "qwen2", "qwen3"):
        common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, **small)
        if family == "llama":
            cfg = tf.LlamaConfig(bos_token_id=tok.token_to_id("<|begin_of_text|>"),
                                 eos_token_id=tok.token_to_id("<|end_of_text|>"), **common)
            model = tf.LlamaForCausalLM(cfg)
        elif family == "mistral":
            cfg = tf.MistralConfig(sliding_window=4, bos_token_id=tok.token_to_id("<s>"),
                                   eos_token_id=tok.token_to_id("</s>"), **{**common, "num_key_value_heads": 1})
            model = tf.MistralForCausalLM(cfg)
        elif family == "qwen2":
            cfg = tf.Qwen2Config(eos_token_id=tok.token_to_id("<|endoftext|>"), **common)
            model = tf.Qwen2ForCausalLM(cfg)
        else:
            cfg = tf.Qwen3Config(head_dim=8, use_sliding_window=True, sliding_window=4, max_window_layers=1,
                                 eos_token_id=tok.token_to_id("<|endoftext|>"), **common)
            model = tf.Qwen3ForCausalLM(cfg)
    elif family == "t5":
        cfg = tf.T5Config(d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, relative_attention_max_distance=16,
                          pad_token_id=tok.token_to_id("<pad>"), eos_token_id=tok.token_to_id("</s>"),
                          decoder_start_token_id=tok.token_to_id("<pad>"), **small)
        model = tf.T5ForConditionalGeneration(cfg)
    elif family in MORE_FAMILIES:
        model = _more(tf, family, small)
    else:  # bart
        cfg = tf.BartConfig(d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_layers=2, decoder_layers=2,
                            encoder_attention_heads=4, decoder_attention_heads=4, max_position_embeddings=64,
                            pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                            forced_bos_token_id=0, **small)
        model = tf.BartForConditionalGeneration(cfg)
    for key, value in overrides.items():
        setattr(model.config, key, value)
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    return path


def _more(tf, family: str, small: dict):
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, **small)
    if family == "gemma2":  # attention logits soft-capped, alternating sliding-window layers
        return tf.Gemma2ForCausalLM(tf.Gemma2Config(head_dim=8, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                                                    sliding_window=4, query_pre_attn_scalar=8, **common))
    if family == "gemma3":  # QK-norm, local and global layers
        return tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(head_dim=8, sliding_window=4, query_pre_attn_scalar=8,
                                                        **common))
    if family == "gpt_neox":  # partial rotary embeddings, fused QKV
        return tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                      num_attention_heads=4, max_position_embeddings=64, **small))
    if family == "opt":  # learned positions with an offset
        return tf.OPTForCausalLM(tf.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                                              max_position_embeddings=64, word_embed_proj_dim=32, **small))
    # modernbert: an encoder with local (windowed) and global layers
    return tf.ModernBertForMaskedLM(tf.ModernBertConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, local_attention=4,
        max_position_embeddings=64, pad_token_id=0, eos_token_id=0, bos_token_id=0, cls_token_id=0, sep_token_id=0,
        **small))


# image models: (model class, config class, processor class, processor sizes), tiny: 32 x 32 images, 8-pixel patches
VISION_FAMILIES = ("vit", "vit_model", "deit", "clip_vision_model", "siglip_vision_model", "clip", "siglip", "dinov2",
                   "dinov2_with_registers")
VISION_LABELS = {0: "cat", 1: "dog", 2: "owl"}


def build_vision(family: str, path: Path, seed: int = 0, image_size: int = 32, patch_size: int = 8, **overrides
                 ) -> Path:
    """Save a tiny random image model of ``family`` and its image processor (PIL backend) under ``path``."""
    import transformers as tf

    torch.manual_seed(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  image_size=image_size, patch_size=patch_size, **overrides)
    square = {"height": image_size, "width": image_size}
    labels = dict(id2label=VISION_LABELS, label2id={v: k for k, v in VISION_LABELS.items()})
    if family == "vit":
        model = tf.ViTForImageClassification(tf.ViTConfig(**common, **labels))
        processor = tf.ViTImageProcessorPil(size=square)
    elif family == "vit_model":
        model = tf.ViTModel(tf.ViTConfig(**common))
        processor = tf.ViTImageProcessorPil(size=square)
    elif family == "deit":  # [CLS] and a distillation token; the classifier averages both heads
        model = tf.DeiTForImageClassificationWithTeacher(tf.DeiTConfig(**common, **labels))
        processor = tf.DeiTImageProcessorPil(size={"height": image_size + 8, "width": image_size + 8},
                                             crop_size=square)
    elif family == "clip_vision_model":
        model = tf.CLIPVisionModel(tf.CLIPVisionConfig(**common))
        processor = tf.CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size=square)
    elif family == "siglip_vision_model":  # no [CLS]: patches only
        model = tf.SiglipVisionModel(tf.SiglipVisionConfig(**common))
        processor = tf.SiglipImageProcessorPil(size=square)
    elif family in ("clip", "siglip"):  # the two-tower model's directory: the app reads its vision tower
        text = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=99,
                    max_position_embeddings=16)
        if family == "clip":
            model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=common, projection_dim=16))
            processor = tf.CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size=square)
        else:
            model = tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=common))
            processor = tf.SiglipImageProcessorPil(size=square)
    elif family == "dinov2":
        model = tf.Dinov2Model(tf.Dinov2Config(**common))
        processor = tf.BitImageProcessorPil(size={"shortest_edge": image_size + 8}, crop_size=square)
    elif family == "dinov2_with_registers":  # [CLS], then 4 registers, then the patches
        model = tf.Dinov2WithRegistersForImageClassification(tf.Dinov2WithRegistersConfig(
            **common, num_register_tokens=4, **labels))
        processor = tf.BitImageProcessorPil(size={"shortest_edge": image_size + 8}, crop_size=square)
    else:
        raise ValueError(f"unknown image family {family}")
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path
