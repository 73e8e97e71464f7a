"""Checkpoints as a directory: config.json, model.safetensors, tokenizer file(s) (a vision checkpoint has none: its
config.json holds the image size, normalisation and class names), meta.json. Never unpickled.

Loading treats every file as untrusted: JSON is size- and depth-bounded, sizes in config.json are bounded, and the
shapes and dtypes in the safetensors header are checked against the config before any tensor is allocated.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from ..core.encoding import TokenizerError
from ..safe.errors import CheckpointError
from ..safe.files import checked_path, is_file, read_json_file, require_directory
from ..safe.memory import check_model_bytes
from ..safe.tokenizer_file import read_tokenizer_file
from .config import VISION_ARCH, ModelConfig, VisionConfig
from .tokenizer import SPECIAL_TOKENS, Tokenizer
from .transformer import Transformer
from .vit import VisionTransformer

if TYPE_CHECKING:
    from ..safe.paths import PathPolicy

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"  # when source and target share one tokenizer
SOURCE_TOKENIZER_FILE = "source_tokenizer.json"  # when they differ
TARGET_TOKENIZER_FILE = "target_tokenizer.json"
KNOWN_FILES = (CONFIG_FILE, WEIGHTS_FILE, META_FILE, TOKENIZER_FILE, SOURCE_TOKENIZER_FILE, TARGET_TOKENIZER_FILE)

# The most a config may ask for: far above any model this app can show, far below what exhausts a server.
LIMITS = {"d_model": 16_384, "n_heads": 256, "n_encoder_layers": 256, "n_decoder_layers": 256, "d_ff": 65_536,
          "max_len": 65_536, "src_vocab_size": 1_000_000, "tgt_vocab_size": 1_000_000}
VISION_LIMITS = {"image_size": 1_024, "patch_size": 1_024, "channels": 4, "d_model": 16_384, "n_heads": 256,
                 "n_encoder_layers": 256, "d_ff": 65_536}
MAX_IMAGE_TOKENS = 16_385  # [CLS] + 128 x 128 patches
MAX_CLASSES = 100_000
MAX_CLASS_NAME = 200  # characters
MAX_PARAMETERS = 2_000_000_000
WEIGHT_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
DTYPE_BYTES = {"F64": 8, "F32": 4, "I64": 8, "U64": 8, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
PROBE_TEXTS = ("21 November 2026", "Hello, world! 123", "😀 ünïcödé \t\n", "a" * 300)



def write_config_and_weights(path: Path, model) -> Path:
    """The part every checkpoint shares: ``path`` created, config.json and model.safetensors written, the tokenizer
    files of an earlier checkpoint there removed (the caller writes its own)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
    for stale in (TOKENIZER_FILE, SOURCE_TOKENIZER_FILE, TARGET_TOKENIZER_FILE):
        (path / stale).unlink(missing_ok=True)
    return path


def save_checkpoint(path: str | Path, model: Transformer, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory (created if needed); returns its path."""
    path = write_config_and_weights(Path(path), model)
    if src_tokenizer.to_str() == tgt_tokenizer.to_str():
        src_tokenizer.save(path / TOKENIZER_FILE)
    else:
        src_tokenizer.save(path / SOURCE_TOKENIZER_FILE)
        tgt_tokenizer.save(path / TARGET_TOKENIZER_FILE)
    (path / META_FILE).write_text(json.dumps(meta or {}, indent=2, default=str) + "\n")
    return path


def _read_tokenizer(file: Path, policy: PathPolicy | None = None) -> Tokenizer:
    hf = read_tokenizer_file(file, policy)  # bounded, checked for catastrophic regexes
    try:
        tok = Tokenizer(hf)
    except ValueError as e:
        raise CheckpointError(f"{file}: not a valid tokenizer ({e})") from None
    try:
        for text in PROBE_TEXTS:  # a tokenizer that fails on ordinary text fails here, not at the first input
            tok.tokenize(text)
    except TokenizerError as e:
        raise CheckpointError(f"{file}: the tokenizer fails on ordinary text ({e})") from None
    return tok


def check_config_bounds(config: ModelConfig, file: Path) -> None:
    """Refuse sizes no model of this app has, before anything is allocated for them."""
    over = [f"{k}={getattr(config, k)} (at most {v})" for k, v in LIMITS.items() if getattr(config, k) > v]
    if over:
        raise CheckpointError(f"{file}: sizes beyond what this app loads: " + ", ".join(over))


class SkipInit(TorchFunctionMode):
    """Parameter initialisers do nothing: a model built on the meta device for its shapes has no values to fill,
    and the initialisers' meta implementations import torch._dynamo (1.2 s of the app's cold start)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **(kwargs or {}))


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a model built from ``config``, without allocating it (meta device)."""
    with torch.device("meta"), SkipInit():
        model = Transformer(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_weights_header(weights_file: Path, expected: dict[str, tuple[int, ...]],
                         real_file: Path | None = None) -> dict[str, tuple[tuple[int, ...], str]]:
    """Compare the safetensors header (names, shapes, dtypes) with the config, reading no tensor data.

    Returns name -> (shape, dtype) as the header states them. ``real_file``: the checked path to open (by default
    ``weights_file`` itself)."""
    try:
        with safe_open(str(real_file or weights_file), framework="pt", device="cpu") as f:
            found = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise CheckpointError(f"{weights_file}: not a readable safetensors file, truncated or corrupt "
                              f"({type(e).__name__}: {str(e)[:200]})") from None
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = [f"{k}: file {found[k][0]} vs config {expected[k]}" for k in sorted(set(found) & set(expected))
             if found[k][0] != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        problems.append(f"unexpected keys {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    if wrong:
        problems.append("shape mismatch " + "; ".join(wrong[:5]))
    if problems:
        raise CheckpointError(f"{weights_file}: weights do not match {CONFIG_FILE}: " + "; ".join(problems))
    bad_dtype = sorted((k, d) for k, (_, d) in found.items() if d not in WEIGHT_DTYPES)
    if bad_dtype:  # int64 or bool weights would be cast to float without a word
        shown = ", ".join(f"{k} as {d}" for k, d in bad_dtype[:5]) + (" ..." if len(bad_dtype) > 5 else "")
        raise CheckpointError(f"{weights_file}: weights stored as {', '.join(sorted({d for _, d in bad_dtype}))} "
                              f"({shown}); this app reads {', '.join(WEIGHT_DTYPES)} only")
    return found


def loading_bytes(found: dict[str, tuple[tuple[int, ...], str]]) -> int:
    """Peak bytes of loading these weights: the stored tensors, the float32 model, and a float32 copy of each
    tensor stored in another dtype."""
    stored = sum(math.prod(s) * DTYPE_BYTES.get(d, 8) for s, d in found.values())
    model = sum(math.prod(s) * 4 for s, _ in found.values())
    converted = sum(math.prod(s) * 4 for s, d in found.values() if d != "F32")
    return stored + model + converted


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", policy: PathPolicy | None = None):
    """Read and validate a checkpoint directory.

    Returns (config, model in eval mode on ``device``, source tokenizer, target tokenizer, meta).
    Raises CheckpointError for a missing file, corrupt weights, weights that do not fit the config or the memory
    budget (INSPECTOR_MAX_MODEL_MB). ``policy``: every file is opened only if its real path is inside the policy's
    allowed roots (None: any path, for library use).
    """
    path = require_directory(Path(path))

    config_data = read_json_file(path / CONFIG_FILE, policy=policy)
    try:
        config = ModelConfig.from_dict(config_data)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid config ({e})") from None
    check_config_bounds(config, path / CONFIG_FILE)

    if is_file(path / TOKENIZER_FILE):
        src_tok = tgt_tok = _read_tokenizer(path / TOKENIZER_FILE, policy)
        tok_files = (path / TOKENIZER_FILE, path / TOKENIZER_FILE)
    elif is_file(path / SOURCE_TOKENIZER_FILE) or is_file(path / TARGET_TOKENIZER_FILE):
        src_tok = _read_tokenizer(path / SOURCE_TOKENIZER_FILE, policy)
        tgt_tok = _read_tokenizer(path / TARGET_TOKENIZER_FILE, policy)
        tok_files = (path / SOURCE_TOKENIZER_FILE, path / TARGET_TOKENIZER_FILE)
    else:
        raise CheckpointError(f"{path / TOKENIZER_FILE}: file is missing (nor are there "
                              f"{SOURCE_TOKENIZER_FILE} and {TARGET_TOKENIZER_FILE})")
    for tok, size_field, file in ((src_tok, "src_vocab_size", tok_files[0]),
                                  (tgt_tok, "tgt_vocab_size", tok_files[1])):
        if tok.vocab_size != getattr(config, size_field):
            raise CheckpointError(f"{path / CONFIG_FILE}: {size_field}={getattr(config, size_field)} but the "
                                  f"tokenizer has {tok.vocab_size} tokens")
        if tok.max_id >= getattr(config, size_field):
            raise CheckpointError(f"{file}: maps a token to id {tok.max_id}, outside the model's "
                                  f"{getattr(config, size_field)}-token vocabulary")
    specials = {"pad_id": SPECIAL_TOKENS[0], "bos_id": SPECIAL_TOKENS[1], "eos_id": SPECIAL_TOKENS[2]}
    for field_name, token in specials.items():
        for tok, file in ((src_tok, tok_files[0]), (tgt_tok, tok_files[1])):
            if tok.hf.token_to_id(token) != getattr(config, field_name):
                raise CheckpointError(f"{path / CONFIG_FILE}: {field_name}={getattr(config, field_name)} but "
                                      f"{file.name} maps {token} to id {tok.hf.token_to_id(token)}")

    meta = read_meta(path, policy)
    state = read_weights(path, expected_shapes(config), policy)
    model = Transformer(config)
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return config, model.to(device), src_tok, tgt_tok, meta


def read_meta(path: Path, policy: PathPolicy | None = None) -> dict[str, Any]:
    """meta.json, size- and depth-bounded; a JSON object."""
    meta = read_json_file(path / META_FILE, policy=policy)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path / META_FILE}: must be a JSON object")
    return meta


def read_weights(path: Path, expected: dict[str, tuple[int, ...]], policy: PathPolicy | None = None
                 ) -> dict[str, torch.Tensor]:
    """model.safetensors as float32 tensors, after its header was checked against ``expected`` (the config's
    shapes), the parameter count and the memory budget: nothing is allocated for weights that do not fit."""
    weights_file = path / WEIGHTS_FILE
    real_weights = checked_path(weights_file, policy)
    n_params = sum(math.prod(s) for s in expected.values())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"{path / CONFIG_FILE}: {n_params:,} parameters, over this app's "
                              f"{MAX_PARAMETERS:,}")
    check_model_bytes(n_params * 4, path / CONFIG_FILE, f"{n_params:,} float32 parameters")
    found = check_weights_header(weights_file, expected, real_weights)
    check_model_bytes(loading_bytes(found), weights_file, f"{n_params:,} parameters (stored, then as float32)")
    try:
        state = load_file(str(real_weights), device="cpu")  # safetensors: a header and raw bytes, no code
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise CheckpointError(f"{weights_file}: not a readable safetensors file, truncated or corrupt ({e})") from None
    bad = [k for k, t in state.items() if not t.is_floating_point() or not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{weights_file}: non-float or non-finite values in {bad[:5]}")
    return {k: t.to(torch.float32) for k, t in state.items()}


# ---- the vision transformer's checkpoints: config.json (arch "vit"), model.safetensors, meta.json --------------

def save_vision_checkpoint(path: str | Path, model: VisionTransformer, meta: dict[str, Any] | None = None) -> Path:
    """Write a vision checkpoint directory (created if needed); returns its path."""
    path = write_config_and_weights(Path(path), model)
    (path / META_FILE).write_text(json.dumps(meta or {}, indent=2, default=str) + "\n")
    return path


def is_vision_checkpoint(path: str | Path, policy: PathPolicy | None = None) -> bool:
    """config.json names this project's vision transformer (``"arch": "vit"``)."""
    try:
        data = read_json_file(Path(path) / CONFIG_FILE, policy=policy)
    except CheckpointError:
        return False
    return isinstance(data, dict) and data.get("arch") == VISION_ARCH


def check_vision_bounds(config: VisionConfig, file: Path) -> None:
    """Refuse sizes no vision model of this app has, before anything is allocated for them."""
    over = [f"{k}={getattr(config, k)} (at most {v})" for k, v in VISION_LIMITS.items() if getattr(config, k) > v]
    if config.seq_len > MAX_IMAGE_TOKENS:
        over.append(f"{config.seq_len:,} tokens per image (at most {MAX_IMAGE_TOKENS:,})")
    if config.n_classes > MAX_CLASSES or any(len(n) > MAX_CLASS_NAME for n in config.class_names):
        over.append(f"{config.n_classes:,} class names (at most {MAX_CLASSES:,}, each at most {MAX_CLASS_NAME} "
                    "characters)")
    if over:
        raise CheckpointError(f"{file}: sizes beyond what this app loads: " + ", ".join(over))


def expected_vision_shapes(config: VisionConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a vision transformer built from ``config``, without allocating it."""
    with torch.device("meta"), SkipInit():
        model = VisionTransformer(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_vision_checkpoint(path: str | Path, device: str | torch.device = "cpu", policy: PathPolicy | None = None):
    """Read and validate a vision checkpoint directory -> (config, model in eval mode on ``device``, meta), with the
    guarantees of ``load_checkpoint`` (bounded JSON and sizes, the header checked before any tensor is allocated)."""
    path = require_directory(Path(path))
    config_data = read_json_file(path / CONFIG_FILE, policy=policy)
    try:
        config = VisionConfig.from_dict(config_data)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid vision config ({e})") from None
    check_vision_bounds(config, path / CONFIG_FILE)
    meta = read_meta(path, policy)
    state = read_weights(path, expected_vision_shapes(config), policy)
    model = VisionTransformer(config)
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return config, model.to(device), meta


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files a checkpoint directory may hold that loading reads (never a listing of the directory)."""
    path = Path(path)
    return [path / name for name in KNOWN_FILES + ("model.safetensors.index.json", "tokenizer_config.json",
                                                   "generation_config.json")]


def stamp(path: str | Path) -> float:
    """Newest modification time of the known checkpoint files (0.0 when none): a cache key that changes when a
    checkpoint is retrained in place. Stats a fixed list of names, never lists the directory."""
    newest = 0.0
    for f in checkpoint_files(path):
        try:
            newest = max(newest, os.stat(f).st_mtime)
        except (OSError, ValueError):  # missing, too long, NUL byte...
            continue
    return newest
