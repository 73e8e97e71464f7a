"""Open a trained model stored in the Hugging Face layout, safely and offline.

config.json + model.safetensors (or sharded, with model.safetensors.index.json) + tokenizer.json. Nothing is
downloaded, no remote code runs, nothing is unpickled (a directory with only pytorch_model.bin is refused), and
sizes are checked from config.json and the safetensors headers before any weight is allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import transformers
from safetensors import safe_open

from ..own.checkpoint import SkipInit
from ..safe.errors import CheckpointError
from ..safe.files import checked_path, is_file, read_json_file, require_directory
from ..safe.memory import check_model_bytes
from ..safe.tokenizer_file import read_tokenizer_file
from .interface import ATTENTION_NAME
from .limits import (
    check_added_special_tokens,
    check_files_inside,
    check_shapes_before_building,
    check_sizes,
    check_special_ids,
    check_weight_dtypes,
    read_generation_config,
    stored_bytes,
)
from .tokens import TextTokenizer

if TYPE_CHECKING:
    from ..safe.paths import PathPolicy

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
MAX_PARAMETERS = 8_000_000_000  # fp32 on a 24-GB machine is about 6e9; the header check refuses more
HEADER_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
DEFAULT_MAX_LEN = 2048  # for models without a position limit (T5's relative positions)


def _count(shape) -> int:
    return math.prod(int(s) for s in shape)


def weights_files(path: Path, policy: PathPolicy | None = None) -> list[Path]:
    """The safetensors files of a directory (one, or the shards an index names); CheckpointError otherwise."""
    if is_file(path / WEIGHTS):
        return [path / WEIGHTS]
    if is_file(path / INDEX):
        index = read_json_file(path / INDEX, policy=policy)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{path / INDEX}: has no weight_map")
        names = sorted({str(v) for v in weight_map.values()})
        for n in names:
            if "/" in n or "\\" in n or n.startswith(".") or not n.endswith(".safetensors"):
                raise CheckpointError(f"{path / INDEX}: shard name {n!r} is not a file beside it")
            if not is_file(path / n):
                raise CheckpointError(f"{path / n}: file is missing (named in {INDEX})")
        return [path / n for n in names]
    pickled = [n for n in PICKLED if is_file(path / n)]
    if pickled:
        raise CheckpointError(f"{path / pickled[0]}: only pickled/non-safetensors weights here; loading them would "
                              f"run code from the file. Convert them to {WEIGHTS} (safetensors) first")
    raise CheckpointError(f"{path / WEIGHTS}: file is missing")


def read_headers(files: list[Path], policy: PathPolicy | None = None) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, dtype) from the safetensors headers, reading no tensor data."""
    found = {}
    for file in files:
        real = checked_path(file, policy)
        try:
            with safe_open(str(real), framework="pt", device="cpu") as f:
                for k in f.keys():
                    s = f.get_slice(k)
                    found[k] = (tuple(s.get_shape()), s.get_dtype())
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:
            raise CheckpointError(f"{file}: not a readable safetensors file, truncated or corrupt "
                                  f"({type(e).__name__}: {str(e)[:200]})") from None
    return found


def stored_dtype(headers: dict) -> torch.dtype:
    """The floating dtype most weights are stored in (records keep it)."""
    counts: dict[str, int] = {}
    for shape, dtype in headers.values():
        counts[dtype] = counts.get(dtype, 0) + _count(shape)
    floats = {d: n for d, n in counts.items() if d.startswith(("F", "BF"))}
    unsupported = sorted(d for d in floats if d not in HEADER_DTYPES)
    if unsupported:
        raise CheckpointError(f"weights stored as {', '.join(unsupported)}: this app reads F32, F16 and BF16")
    return HEADER_DTYPES[max(floats, key=floats.get)] if floats else torch.float32


def model_class(config) -> type:
    """The architecture class named in config.json, if transformers itself defines it (never remote code)."""
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, str(name), None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    if getattr(config, "is_encoder_decoder", False):
        return transformers.AutoModelForSeq2SeqLM
    return transformers.AutoModel


def max_positions(config, tok_config: dict | None) -> int:
    for field in ("max_position_embeddings", "n_positions", "max_seq_len"):
        v = getattr(config, field, None)
        if isinstance(v, int) and 1 < v <= 1_000_000:
            limit = v
            break
    else:
        limit = DEFAULT_MAX_LEN
    if getattr(config, "model_type", "") in ("bart", "mbart"):  # learned positions with an offset of 2
        limit = min(limit, getattr(config, "max_position_embeddings", limit))
    if tok_config and isinstance(tok_config.get("model_max_length"), int) and 1 < tok_config["model_max_length"]:
        limit = min(limit, tok_config["model_max_length"])
    return int(limit)


@dataclass(frozen=True)
class Stored:
    """What a directory's files say before anything is built: config.json's data, the weights files and their
    headers, the stored float type and the (capped) generation config."""

    config_data: dict
    files: list[Path]
    headers: dict
    dtype: torch.dtype
    generation: dict | None


INPUT_FILES = {  # what a model reads its input with -> why that file must be there
    "tokenizer.json": "this app reads the fast-tokenizer file; AutoTokenizer.from_pretrained(...).save_pretrained(dir) "
                      "writes it",
    "preprocessor_config.json": "an image model's image processor; AutoImageProcessor.from_pretrained(...)"
                                ".save_pretrained(dir) writes it",
}


def check_stored(path: Path, policy: PathPolicy | None, input_file: str = "tokenizer.json") -> Stored:
    """The files' checks: config.json's sizes, the weights' headers (dtype, counts, memory), the shapes they imply;
    ``input_file`` (tokenizer.json, or an image model's preprocessor_config.json) must be there."""
    require_directory(path)
    config_data = read_json_file(path / "config.json", policy=policy)
    if not isinstance(config_data, dict):
        raise CheckpointError(f"{path / 'config.json'}: must be a JSON object")
    check_sizes(config_data, path / "config.json")
    files = weights_files(path, policy)
    if not is_file(path / input_file):
        raise CheckpointError(f"{path / input_file}: file is missing ({INPUT_FILES[input_file]})")
    headers = read_headers(files, policy)
    try:
        dtype = stored_dtype(headers)
    except CheckpointError as e:
        raise CheckpointError(f"{files[0]}: {e}") from None
    n_stored = sum(_count(s) for s, _ in headers.values())
    if n_stored > MAX_PARAMETERS:
        raise CheckpointError(f"{files[0]}: {n_stored:,} stored values, over this app's {MAX_PARAMETERS:,}")
    check_model_bytes(stored_bytes(headers), files[0], f"the stored weights ({n_stored:,} values)")
    check_shapes_before_building(config_data, headers, dtype.itemsize, path / "config.json")
    generation = read_generation_config(path, policy)  # capped here; transformers gets the object, not the file
    return Stored(config_data=config_data, files=files, headers=headers, dtype=dtype, generation=generation)


def read_config(path: Path, policy: PathPolicy | None):
    """transformers' config object, read from the checked real file (never remote code)."""
    try:  # the checked real file, not the directory: transformers opens what was checked
        return transformers.AutoConfig.from_pretrained(str(checked_path(path / "config.json", policy)),
                                                       local_files_only=True, trust_remote_code=False)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise CheckpointError(f"{path / 'config.json'}: transformers cannot read it ({type(e).__name__}: "
                              f"{str(e)[:300]})") from None


def check_shell(cls: type, config, stored: Stored, path: Path) -> int:
    """Build the model on the meta device (no memory) and check it against the files -> its parameter count."""
    try:
        with torch.device("meta"), SkipInit():
            shell = cls._from_config(config) if hasattr(cls, "_from_config") else cls.from_config(config)
        n_params = sum(p.numel() for p in shell.parameters())
        is_float = {k: t.is_floating_point() for k, t in [*shell.named_parameters(), *shell.named_buffers()]}
        weight = getattr(shell.get_input_embeddings(), "weight", None)  # an image model's is a patch embedding
        vocab_rows = weight.shape[0] if isinstance(weight, torch.Tensor) and weight.dim() == 2 else 0
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise CheckpointError(f"{path / 'config.json'}: cannot build {cls.__name__} from it ({type(e).__name__}: "
                              f"{str(e)[:300]})") from None
    del shell
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"{path / 'config.json'}: {n_params:,} parameters, over this app's {MAX_PARAMETERS:,}")
    check_model_bytes(n_params * stored.dtype.itemsize, path / "config.json",
                      f"{n_params:,} parameters in {stored.dtype}")
    check_weight_dtypes(stored.headers, is_float, stored.files[0])
    check_special_ids(stored.config_data, stored.generation, vocab_rows, path)
    return n_params


def load_weights(cls: type, config, stored: Stored, path: Path, device: torch.device,
                 policy: PathPolicy | None = None):
    """The model with its weights, with this app's attention, in eval mode on ``device``; every key present and every
    value finite."""
    check_files_inside(stored.files, policy)  # transformers opens these itself, just below
    generation = stored.generation
    try:
        model, info = cls.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False,
            attn_implementation=ATTENTION_NAME, dtype=stored.dtype, output_loading_info=True, config=config,
            generation_config=(transformers.GenerationConfig.from_dict(generation) if generation is not None
                               else transformers.GenerationConfig.from_model_config(config)))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise CheckpointError(f"{stored.files[0]}: transformers could not load the weights ({type(e).__name__}: "
                              f"{str(e)[:400]})") from None
    problems = []
    for label in ("missing_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in (info.get(label) or []))
        if keys:
            problems.append(f"{label.replace('_', ' ')} {keys[:5]}{' ...' if len(keys) > 5 else ''}")
    if problems:
        raise CheckpointError(f"{stored.files[0]}: weights do not match config.json: " + "; ".join(problems))
    bad = [k for k, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{stored.files[0]}: non-finite values in {bad[:5]}")
    model.eval().requires_grad_(False)
    return model.to(device)


def load_tokenizer(path: Path, policy: PathPolicy | None, config) -> tuple[TextTokenizer, int]:
    """The checked tokenizer.json (and tokenizer_config.json's length) -> (tokenizer, the longest input)."""
    tok_config = None
    if is_file(path / "tokenizer_config.json"):
        tok_config = read_json_file(path / "tokenizer_config.json", policy=policy)
        tok_config = tok_config if isinstance(tok_config, dict) else None
    max_len = max_positions(config, tok_config)
    try:
        tokenizer = TextTokenizer(read_tokenizer_file(path / "tokenizer.json", policy), max_len)
        check_added_special_tokens(tokenizer, max_len, path / "tokenizer.json")
        tokenizer.tokenize("Hello, world! 123 😀")  # a tokenizer that fails on ordinary text fails here
    except CheckpointError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise CheckpointError(f"{path / 'tokenizer.json'}: not a usable tokenizer ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    return tokenizer, max_len


def load_model(path: Path, device: torch.device, policy: PathPolicy | None = None):
    """-> (model in eval mode, config, tokenizer, dtype, parameter count, max length).

    ``policy``: every file is opened only if its real path is inside the policy's allowed roots (None: any path).
    Every check runs before the next step allocates: the stored files, the config, an empty (meta) model, then the
    weights, then the tokenizer."""
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    stored = check_stored(path, policy)
    config = read_config(path, policy)
    cls = model_class(config)
    n_params = check_shell(cls, config, stored, path)
    model = load_weights(cls, config, stored, path, device, policy)
    tokenizer, max_len = load_tokenizer(path, policy, config)
    vocab = model.get_input_embeddings().weight.shape[0]
    if tokenizer.max_id >= vocab:
        raise CheckpointError(f"{path / 'tokenizer.json'}: maps a token to id {tokenizer.max_id}, outside the model's "
                              f"{vocab}-token vocabulary")
    return model, config, tokenizer, stored.dtype, n_params, max_len
