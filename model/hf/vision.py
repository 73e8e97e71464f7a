"""Image models in the Hugging Face layout, run by transformers, every attention traced by ``attention()``: ViT
(ViTModel, ViTForImageClassification), DeiT, the vision towers of CLIP and SigLIP (saved alone, or read out of a
CLIPModel / SiglipModel directory), DINOv2 and DINOv2 with registers (model.hf.families declares where each one's
patches are).

config.json + model.safetensors + preprocessor_config.json. The image is prepared by the model's own image processor,
as transformers prepares it: ``AutoImageProcessor`` on the checked preprocessor_config.json, offline, no remote code,
the PIL backend (transformers' torchvision-backed "fast" processors need torchvision, which does not install beside
this torch; the PIL ones are the reference implementation). The loading checks are the text models' (model.hf.loader)
plus the processor's: sizes bounded, no ``auto_map``, and one probe image through processor and model at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers
from torch import nn

from ..api import ForwardOutput, ImageEncoding, ImagePipeline, ModelInfo, Pipeline
from ..call import CallMethods
from ..capture.recorder import Recorder
from ..core.attention import RecordShape
from ..safe.errors import CheckpointError
from ..safe.files import checked_path, read_json_file
from .families import Family, family, name_modules, ordered
from .interface import ModuleSpec, call_context, input_hook
from .loader import check_shell, check_stored, load_weights, model_class, read_config

if TYPE_CHECKING:
    from ..safe.paths import PathPolicy

PREPROCESSOR_FILE = "preprocessor_config.json"
MAX_IMAGE_SIDE = 4_096  # pixels: a processor asking for larger images is refused (it makes them at every call)
MAX_PATCHES = 65_536  # patches per image
PROBE_SIZE = (64, 48)  # (width, height) of the image run through processor and model at load
SIZE_KEYS = ("size", "crop_size", "pad_size")


def vision_family(path: str | Path, policy: PathPolicy | None = None) -> Family | None:
    """The declared family of a directory's config.json, if it is an image model (None otherwise)."""
    try:
        data = read_json_file(Path(path) / "config.json", policy=policy)
    except CheckpointError:
        return None
    fam = family(str(data.get("model_type"))) if isinstance(data, dict) else None
    return fam if fam is not None and fam.vision is not None else None


def check_processor_file(file: Path, policy: PathPolicy | None) -> dict:
    """preprocessor_config.json, bounded: a JSON object, no remote code, every size within MAX_IMAGE_SIDE."""
    data = read_json_file(file, policy=policy)
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: must be a JSON object")
    if "auto_map" in data:
        raise CheckpointError(f"{file}: names its own code (auto_map); this app runs no code from a model directory")
    for key in SIZE_KEYS:
        value = data.get(key)
        sizes = value.values() if isinstance(value, dict) else ([] if value is None else [value])
        for v in sizes:
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_IMAGE_SIDE):
                raise CheckpointError(f"{file}: {key} = {value!r}; this app reads images of 1 to {MAX_IMAGE_SIDE:,} "
                                      "pixels a side")
    return data


def read_processor(path: Path, policy: PathPolicy | None, config):
    """transformers' image processor of the model, from the checked file, with the PIL backend."""
    file = path / PREPROCESSOR_FILE
    check_processor_file(file, policy)
    try:  # the checked real file, not the directory: transformers opens what was checked
        return transformers.AutoImageProcessor.from_pretrained(
            str(checked_path(file, policy)), config=config, backend="pil", local_files_only=True,
            trust_remote_code=False)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise CheckpointError(f"{file}: transformers cannot read it ({type(e).__name__}: {str(e)[:300]})") from None


def _floats(values, default: float) -> tuple[float, ...]:
    if values is None:
        return (default,) * 3
    values = [values] * 3 if isinstance(values, (int, float)) else list(values)
    return tuple(float(v) for v in values)


class HFVisionPipeline(CallMethods, ImagePipeline):
    """An image model in the Hugging Face layout: its image processor, its model with every attention computed by
    ``attention()``, the labels of its sequence ([CLS], [DIST], registers, patches)."""

    def __init__(self, path: str | Path, device: torch.device, policy: PathPolicy | None = None):
        path = Path(path)
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        stored = check_stored(path, policy, input_file=PREPROCESSOR_FILE)
        config = read_config(path, policy)
        self.family = family(str(config.model_type))
        if self.family is None or self.family.vision is None:
            raise CheckpointError(f"{path / 'config.json'}: model_type {config.model_type!r} is not an image model "
                                  "this app knows")
        tower = self.family.vision.tower
        if tower:  # a two-tower model (CLIPModel, SiglipModel): its vision tower alone, the text tower is not read
            cls, config = getattr(transformers, tower), config.vision_config
        else:
            cls = model_class(config)
        n_params = check_shell(cls, config, stored, path)
        self.model = load_weights(cls, config, stored, path, device, policy)
        self.processor = read_processor(path, policy, config)
        self._config, self.path, self.dtype = config, str(path), stored.dtype
        self.prefix = self.family.vision.labels(config)
        self.patch_size = int(config.patch_size)
        labels = getattr(config, "id2label", None) or {}
        try:
            probe = self.image_input(_probe_image())
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:
            raise CheckpointError(f"{path / PREPROCESSOR_FILE}: the image processor fails on an ordinary image "
                                  f"({type(e).__name__}: {str(e)[:300]})") from None
        try:
            names, classes = self._probe(probe, labels)
        except NotImplementedError as e:
            raise CheckpointError(f"{path}: {e}") from None
        n_heads, d_model = int(config.num_attention_heads), int(config.hidden_size)
        self.info = ModelInfo(
            arch="encoder-only", family=str(config.model_type), n_encoder_layers=len(names), n_decoder_layers=0,
            n_heads=n_heads, n_kv_heads=n_heads, d_model=d_model,
            d_k=int(getattr(config, "head_dim", None) or d_model // n_heads), max_len=len(probe.encoding.ids),
            dtype=str(stored.dtype).removeprefix("torch."), parameters=n_params, record_names=tuple(names),
            notes=dict(self.family.notes), has_head=bool(classes), vocab_size=len(classes), modality="image",
            classes=classes)
        self.meta: dict[str, Any] = {"task": f"{config.model_type} (images)", "family": str(config.model_type),
                                     "name_or_path": str(getattr(config, "_name_or_path", "") or "")}
        self._check_coverage(probe)

    # ---- the contract -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def image_input(self, image) -> ImageEncoding:
        """The model's image processor on an RGB PIL image (transformers' own code) -> pixels and labels."""
        p = self.processor
        pixels = p(images=image, return_tensors="pt")["pixel_values"][0]  # (C, H, W)
        normalised = getattr(p, "do_normalize", False)
        return ImageEncoding.of(
            pixels, self.prefix, self.patch_size, (image.height, image.width),
            mean=_floats(p.image_mean if normalised else None, 0.0),
            std=_floats(p.image_std if normalised else None, 1.0),
            scale=float(p.rescale_factor) if getattr(p, "do_rescale", False) else 1.0)

    def token_label(self, token_id: int) -> str:
        classes = self.info.classes
        return classes[token_id] if 0 <= token_id < len(classes) else str(token_id)

    def record_shape(self, name: str, src_len: int, tgt_len: int, batch: int = 1) -> RecordShape:
        info = self.info
        size = 2 if info.dtype in ("float16", "bfloat16") else 4
        return RecordShape(batch=batch, n_heads=info.n_heads, n_kv_heads=info.n_kv_heads, tq=src_len, tk=src_len,
                           d_k=info.d_k, d_v=info.d_k, d_query_in=info.d_model, d_key_in=info.d_model,
                           d_out=info.d_model, adjusted=False, element_size=size)

    def forward(self, src, tgt, recorder: Recorder | None, *, src_valid=None, tgt_valid=None, logits_at=None,
                pixels=None) -> ForwardOutput:
        if pixels is None:
            raise ValueError("an image model's forward needs pixels")
        pixels = pixels.to(self.device, dtype=self.dtype)
        want_hidden = recorder is not None and recorder.keep_hidden
        valid = {} if src is None else {"encoder": torch.ones(src.shape, dtype=torch.bool, device=self.device)
                                        if src_valid is None else src_valid}
        with call_context(recorder if recorder is not None else Recorder(capture=False), self.specs, valid):
            out = self.model(pixel_values=pixels, return_dict=True, output_hidden_states=want_hidden)
        if want_hidden:
            for h in out.hidden_states:
                recorder.record_hidden("encoder", h)
        logits = getattr(out, "logits", None)
        if logits is not None:
            return ForwardOutput(logits=logits[:, None, :])  # one output for the whole image: (B, 1, n_classes)
        return ForwardOutput(logits=None, last_hidden=out.last_hidden_state)

    def unembed(self, stack: str, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.info.family}: the logit lens reads a text model's output head")

    def same_vocabulary(self, other: Pipeline) -> bool:
        return False

    # ---- loading ------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _probe(self, probe: ImageEncoding, labels: dict) -> tuple[list[str], tuple[str, ...]]:
        """One forward of the probe image with no recorder: which modules call the attention function (named, and
        hooked once), and the class names when the model has a classifier."""
        _, H, W = probe.pixels.shape
        rows, cols = probe.patch_grid
        if max(H, W) > MAX_IMAGE_SIDE or rows * cols > MAX_PATCHES:
            raise CheckpointError(f"{self.path}: the image processor makes {W} x {H} images ({rows * cols:,} patches); "
                                  f"this app reads at most {MAX_IMAGE_SIDE:,} pixels a side and {MAX_PATCHES:,} "
                                  "patches")
        pixels = probe.pixels[None].to(self.device, dtype=self.dtype)
        try:
            with call_context(None, {}, {}) as call:
                out = self.model(pixel_values=pixels, return_dict=True)
        except (KeyboardInterrupt, SystemExit):
            raise
        except NotImplementedError:
            raise
        except BaseException as e:  # a processor whose images the model does not take, ...
            raise CheckpointError(f"{self.path}: the model does not run on its processor's {W} x {H} images "
                                  f"({type(e).__name__}: {str(e)[:300]})") from None
        self.specs: dict[nn.Module, ModuleSpec] = name_modules(self.model, list(call.seen), "encoder-only",
                                                               str(self._config.model_type))
        for module, spec in self.specs.items():  # once, at load: hand each call the projections' inputs
            module.register_forward_pre_hook(input_hook(spec.key_input), with_kwargs=True)
        classes: tuple[str, ...] = ()
        logits = getattr(out, "logits", None)
        if logits is not None:
            n = int(logits.shape[-1])
            classes = tuple(str(labels.get(i, labels.get(str(i), f"class {i}"))) for i in range(n))
        return ordered(self.specs), classes

    def _check_coverage(self, probe: ImageEncoding) -> None:
        """A traced call on the probe image: every named attention runs exactly once through the function, on a
        sequence as long as the declared layout says ([prefix] + rows x cols patches)."""
        recorder = Recorder(capture=True)
        T = len(probe.encoding.ids)
        with torch.inference_mode():
            self.forward(torch.arange(T)[None], None, recorder, pixels=probe.pixels[None])
        if sorted(recorder.calls) != sorted(self.info.record_names):
            raise CheckpointError(
                f"{self.path}: {self.info.family} computes attention outside transformers' attention interface "
                f"(ran {sorted(set(recorder.calls))}, expected {list(self.info.record_names)}); it cannot be traced")
        lengths = {rec.weights.shape[-1] for rec in recorder.records.values()}
        if lengths != {T}:
            raise CheckpointError(
                f"{self.path}: its attention reads {sorted(lengths)} positions, but {len(self.prefix)} before the "
                f"patches and {probe.patch_grid[0]} x {probe.patch_grid[1]} patches of {self.patch_size} pixels make "
                f"{T}: this app cannot say which position is which patch")


def _probe_image():
    from PIL import Image

    return Image.new("RGB", PROBE_SIZE, (128, 96, 64))


def load_hf_vision(path: str | Path, device: torch.device, policy: PathPolicy | None = None) -> HFVisionPipeline:
    """Open an image model in the Hugging Face layout (offline, safetensors only, no remote code)."""
    return HFVisionPipeline(path, device, policy)


__all__ = ["HFVisionPipeline", "MAX_IMAGE_SIDE", "PREPROCESSOR_FILE", "check_processor_file", "load_hf_vision",
           "read_processor", "vision_family"]
