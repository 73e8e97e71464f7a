"""What a transformers directory may ask for, checked before anything is built: sizes (nested configs too), the
memory the weights need, weights stored in dtypes the model would cast silently, special ids and tokens that only
break at run time, and the files transformers itself opens."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..own.checkpoint import DTYPE_BYTES
from ..safe.errors import CheckpointError
from ..safe.files import checked_path, is_file, read_json_file
from ..safe.memory import check_model_bytes

if TYPE_CHECKING:
    from ..safe.paths import PathPolicy

SIZE_FIELDS = ("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "num_hidden_layers", "n_layer", "num_layers",
               "encoder_layers", "decoder_layers", "num_decoder_layers", "n_layers", "num_attention_heads", "n_head",
               "num_heads", "encoder_attention_heads", "decoder_attention_heads", "intermediate_size", "d_ff",
               "hidden_dim", "n_inner", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "vocab_size",
               "max_position_embeddings", "n_positions", "num_key_value_heads", "head_dim", "d_kv",
               "num_local_experts", "num_experts", "moe_intermediate_size", "embedding_size", "type_vocab_size",
               "image_size", "patch_size", "num_channels", "projection_dim")
SIZE_LIMIT = 4_000_000  # any one of these fields above this is refused (vocabularies of 256k are real)
LAYER_LIMIT = 1_024  # layers or heads of one stack (the largest real models have about 130 layers, 128 heads)
HIDDEN_FIELDS = ("hidden_size", "n_embd", "d_model", "dim", "embed_dim")
FFN_FIELDS = ("intermediate_size", "d_ff", "n_inner", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim")
STACK_FIELDS = (("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers"),
                ("num_decoder_layers", "decoder_layers"))
EXPERT_FIELDS = ("num_local_experts", "num_experts")
GENERATION_FILE = "generation_config.json"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_layer_or_head_field(key: str) -> bool:
    return key.endswith(("layers", "layer", "heads", "head"))


def config_dicts(config_data: dict, where: str = "") -> list[tuple[str, dict]]:
    """(where, dict) for config.json and every nested config in it (encoder, decoder, text_config, vision_config...)."""
    out = [(where, config_data)]
    for key, value in config_data.items():
        if isinstance(value, dict):
            out += config_dicts(value, f"{where}{key}.")
    return out


def check_sizes(config_data: dict, file: Path) -> None:
    """Every size field of config.json and its nested configs within bounds (CheckpointError naming the field)."""
    over = []
    for where, cfg in config_dicts(config_data):
        for key, value in cfg.items():
            if not _is_count(value):
                continue
            if key in SIZE_FIELDS and not 0 <= value <= SIZE_LIMIT:
                over.append(f"{where}{key}={value}")
            elif _is_layer_or_head_field(key) and value > LAYER_LIMIT:  # -1, -2 are layer indices (LLaVA's)
                over.append(f"{where}{key}={value} (at most {LAYER_LIMIT:,})")
    if over:
        raise CheckpointError(f"{file}: sizes beyond what this app loads: {', '.join(over[:8])}")


def _first(cfg: dict, fields: tuple[str, ...]) -> int:
    return next((cfg[f] for f in fields if _is_count(cfg.get(f)) and cfg[f] > 0), 0)


def estimate_parameters(config_data: dict) -> int:
    """A rough lower bound on the parameters config.json implies, from its fields alone (nothing built): per
    config with a hidden size h, layers x (2 h^2 + 2 h x ffn x experts) + vocabulary x h."""
    total = 0
    for _, cfg in config_dicts(config_data):
        h = _first(cfg, HIDDEN_FIELDS)
        if not h:
            continue
        layers = sum(_first(cfg, fields) for fields in STACK_FIELDS)
        ffn = _first(cfg, FFN_FIELDS) or (cfg["hidden_dim"] if cfg.get("dim") and _is_count(cfg.get("hidden_dim"))
                                          else 4 * h)
        experts = max(1, _first(cfg, EXPERT_FIELDS))
        vocab = cfg["vocab_size"] if _is_count(cfg.get("vocab_size")) and cfg["vocab_size"] > 0 else 0
        total += layers * (2 * h * h + 2 * h * ffn * experts) + vocab * h
    return total


def check_shapes_before_building(config_data: dict, headers: dict, dtype_bytes: int, file: Path) -> None:
    """Refuse a config whose layers outnumber the stored tensors (every layer has weights) or whose implied size is
    over the memory budget, before transformers builds anything for it."""
    n_tensors = len(headers)
    for where, cfg in config_dicts(config_data):
        for key, value in cfg.items():
            if _is_count(value) and key.endswith(("layers", "layer")) and value > n_tensors and key in SIZE_FIELDS:
                raise CheckpointError(f"{file}: {where}{key}={value:,} layers, but the weights hold only "
                                      f"{n_tensors:,} tensors")
    n = estimate_parameters(config_data)
    check_model_bytes(n * dtype_bytes, file, f"the sizes it names (about {n:,} parameters)")


def stored_bytes(headers: dict) -> int:
    """Bytes the stored tensors take, from the safetensors headers."""
    return sum(math.prod(int(s) for s in shape) * DTYPE_BYTES.get(dtype, 8) for shape, dtype in headers.values())


def check_weight_dtypes(headers: dict, model_is_float: dict[str, bool], file: Path) -> None:
    """A tensor the model holds in floating point must be stored in floating point: int64 or bool weights would be
    cast without a word. Stored non-float tensors the model does not have (old buffers) are ignored, as
    transformers ignores them."""
    for name, (_, dtype) in sorted(headers.items()):
        if dtype.startswith(("F", "BF")):
            continue
        for model_name, is_float in model_is_float.items():
            if name == model_name or model_name.endswith("." + name) or name.endswith("." + model_name):
                if is_float:
                    raise CheckpointError(f"{file}: tensor {name!r} is stored as {dtype}, but the model's "
                                          f"{model_name} is floating point; this app does not cast it silently")
                break


def read_generation_config(path: Path, policy: PathPolicy | None = None) -> dict | None:
    """generation_config.json through the checked, size-capped reader (transformers would read it whole)."""
    file = path / GENERATION_FILE
    if not is_file(file):
        return None
    data = read_json_file(file, policy=policy)
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: must be a JSON object")
    return data


def check_special_ids(config_data: dict, generation: dict | None, vocab: int, path: Path) -> None:
    """The ids the app feeds to the model (decoder_start_token_id) must be rows of its embedding."""
    for data, name in ((config_data, "config.json"), (generation, GENERATION_FILE)):
        for key in ("decoder_start_token_id",):
            value = (data or {}).get(key)
            if value is None:
                continue
            if not _is_count(value) or not 0 <= value < vocab:
                raise CheckpointError(f"{path / name}: {key}={value!r} is not a token id of the model's "
                                      f"{vocab:,}-token vocabulary")


def check_added_special_tokens(tokenizer, max_len: int, file: Path) -> None:
    """A post-processor that adds as many special tokens as the model reads leaves no room for any text."""
    enc = tokenizer.hf.encode("a", add_special_tokens=True)
    n = sum(enc.special_tokens_mask)
    if n >= max_len:
        raise CheckpointError(f"{file}: its post-processor adds {n:,} special tokens to every input, but the model "
                              f"reads at most {max_len:,} tokens")


def check_files_inside(files: list[Path], policy: PathPolicy | None) -> None:
    """The files transformers opens itself (the weights) resolve inside the allowed roots, checked just before."""
    for file in files:
        checked_path(file, policy)
