"""Reading an image a user hands us (an upload, a file's path, bytes, or pixels already in memory), which may be
hostile: ``open_image``.

The format is the one the bytes say (PNG, JPEG or WebP; a TIFF named .png is a TIFF), the file is read with a byte
cap, and its width and height are read from its header by this module before any decoder runs, so a file that
declares 20,000 x 20,000 pixels is refused before a byte of it is decoded (WebP's decoder allocates its canvas when
it is created). Then Pillow decodes it once, fully (a truncated file is refused, never padded with grey), the EXIF
orientation is applied, and the pixels become 8-bit RGB: what changed on the way is said in ``OpenedImage.notes``.
Every refusal is an ``ImageError`` naming the file and what is wrong.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .. import settings
from .errors import CheckpointError, ImageError
from .files import read_bytes

FORMATS = ("PNG", "JPEG", "WEBP")  # what is read; the upload box's extensions follow from it
EXTENSIONS = ("png", "jpg", "jpeg", "webp")
# A model squeezes every picture into its square input: a strip 20 times longer than wide is no picture any more
# (each patch would hold a sliver of it), and a 1 x 100,000 "image" is a way to make every later step absurd.
MAX_ASPECT = 20
# Files named by what their first bytes say, so that a refusal says what the file really is.
SIGNATURES = (
    ("PNG", b"\x89PNG\r\n\x1a\n", 0), ("JPEG", b"\xff\xd8\xff", 0), ("WEBP", b"WEBP", 8), ("GIF", b"GIF8", 0),
    ("TIFF", b"II*\x00", 0), ("TIFF", b"MM\x00*", 0), ("BMP", b"BM", 0), ("ICO", b"\x00\x00\x01\x00", 0),
    ("HEIC or AVIF", b"ftyp", 4), ("PDF", b"%PDF", 0), ("PSD", b"8BPS", 0), ("JPEG 2000", b"\x00\x00\x00\x0cjP", 0),
)
SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I")  # the modes Pillow gives a 16-bit greyscale PNG
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error,
                 Image.DecompressionBombError)


@dataclass(frozen=True)
class Header:
    """What a file's header declares, read without decoding it."""

    width: int
    height: int
    bits: int = 8  # bits per channel (PNG may say 16)


@dataclass(frozen=True)
class OpenedImage:
    """An image read from a user's file: 8-bit RGB, upright, decoded in full; what was changed on the way."""

    image: Image.Image  # mode "RGB", the EXIF orientation applied
    name: str  # how messages name the file
    format: str  # "PNG", "JPEG" or "WEBP", from the bytes
    stored_size: tuple[int, int]  # (width, height) as stored, before the orientation was applied
    notes: tuple[str, ...]  # what was converted, in words ("16 bits per channel, reduced to 8", ...)


def limits() -> tuple[int, int]:
    """(bytes, pixels) an image may have here: INSPECTOR_MAX_IMAGE_MB, INSPECTOR_MAX_IMAGE_PIXELS."""
    return settings.megabytes("INSPECTOR_MAX_IMAGE_MB", 0.01), settings.count("INSPECTOR_MAX_IMAGE_PIXELS")


def sniff(data: bytes) -> str | None:
    """The format the first bytes say ("PNG", "GIF", "TIFF"...), or None when they say nothing known."""
    for name, magic, at in SIGNATURES:
        if data[at:at + len(magic)] == magic:
            if name == "WEBP" and data[:4] != b"RIFF":
                continue
            return name
    return None


def header(data: bytes, fmt: str) -> Header:
    """Width, height (and PNG's bit depth) from the header of a PNG, JPEG or WebP file; ValueError if it is
    damaged."""
    if fmt == "PNG":
        if len(data) < 29 or data[12:16] != b"IHDR":
            raise ValueError("no PNG header (IHDR)")
        width, height, bits = struct.unpack(">IIB", data[16:25])
        return Header(width, height, bits)
    if fmt == "WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return Header(w & 0x3FFF, h & 0x3FFF)
        if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
            bits = struct.unpack("<I", data[21:25])[0]
            return Header((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        if chunk == b"VP8X" and len(data) >= 30:
            return Header(int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
        raise ValueError("no WebP header")
    if fmt == "JPEG":  # walk the segments up to the first start-of-frame marker
        i = 2
        while i + 4 <= len(data):
            if data[i] != 0xFF:
                raise ValueError("a JPEG segment does not start with 0xFF")
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
                i += 2
                continue
            (length,) = struct.unpack(">H", data[i + 2:i + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if i + 9 > len(data):
                    break
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return Header(w, h, data[i + 4])
            if marker == 0xDA or length < 2:  # image data before any frame header
                raise ValueError("no JPEG frame header before the image data")
            i += 2 + length
        raise ValueError("the JPEG ends before its frame header")
    raise ValueError(f"no header reader for {fmt}")


def _read_source(source, max_bytes: int) -> tuple[bytes, str]:
    """(at most ``max_bytes`` bytes, the name messages use) of bytes, a path or a binary file object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the image"
    elif isinstance(source, (str, os.PathLike)):
        name = str(source)
        try:
            data = read_bytes(Path(source), max_bytes)
        except CheckpointError as e:  # the file gate's message, as an image's
            raise ImageError(str(e)) from None
    elif hasattr(source, "read"):
        name = str(getattr(source, "name", "") or "the image")
        size = getattr(source, "size", None)
        if isinstance(size, int) and size > max_bytes:
            raise ImageError(f"{name}: {size / 2**20:.1f} MiB is larger than an image may be here "
                             f"(at most {max_bytes / 2**20:.0f} MiB)")
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read(max_bytes + 1)
        if not isinstance(data, bytes):
            raise ImageError(f"{name}: not opened in binary mode")
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}")
    if len(data) > max_bytes:
        raise ImageError(f"{name}: larger than an image may be here (at most {max_bytes / 2**20:.0f} MiB)")
    if not data:
        raise ImageError(f"{name}: the file is empty")
    return data, name


def pixels(n: int) -> str:
    """A pixel count in words: "400.0 megapixels", "9,999 pixels"."""
    return f"{n / 1e6:,.1f} megapixels" if n >= 1_000_000 else f"{n:,} pixels"


def check_header(data: bytes, name: str, max_pixels: int) -> tuple[str, Header]:
    """The file's real format and its declared size, checked: PNG, JPEG or WebP, at most ``max_pixels`` pixels, no
    side 0, sides within MAX_ASPECT of each other. ImageError otherwise."""
    fmt = sniff(data)
    if fmt not in FORMATS:
        what = f"a {fmt} file" if fmt else "not an image this app can identify"
        suffix = Path(name).suffix.lower()
        named = f" (named {suffix})" if fmt and suffix and suffix.lstrip(".") in EXTENSIONS else ""
        raise ImageError(f"{name}: {what}{named}; only PNG, JPEG and WebP images are read"
                         + (" (save one frame of it as PNG)" if fmt == "GIF" else ""))
    try:
        head = header(data, fmt)
    except (ValueError, struct.error) as e:
        raise ImageError(f"{name}: a damaged {fmt} file ({e})") from None
    check_size(head.width, head.height, name, max_pixels, declared=True)
    return fmt, head


def check_size(w: int, h: int, name: str, max_pixels: int, *, declared: bool = False) -> None:
    """ImageError unless ``w`` x ``h`` is a picture read here: no side 0, at most ``max_pixels`` pixels, sides within
    MAX_ASPECT of each other (``declared``: the sizes come from a file's header, not yet decoded)."""
    says = "its header declares" if declared else "it has"
    if w < 1 or h < 1:
        raise ImageError(f"{name}: {says} {w} x {h} pixels, an empty image")
    if w * h > max_pixels:
        done = "decoded here (refused before decoding)" if declared else "read here"
        raise ImageError(f"{name}: {says} {w:,} x {h:,} pixels ({pixels(w * h)}); at most {pixels(max_pixels)} are "
                         f"{done}")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(f"{name}: {w:,} x {h:,} pixels is a strip, not a picture (one side more than {MAX_ASPECT} "
                         "times the other); a model squeezes it into its square input")


def to_rgb(im: Image.Image, name: str) -> tuple[Image.Image, list[str]]:
    """Any mode Pillow decodes from PNG, JPEG or WebP -> 8-bit RGB, and what that changed, in words."""
    notes = []
    mode = im.mode
    if mode in SIXTEEN_BIT_GREY:  # keep the top 8 bits, as Pillow does for 16-bit colour
        a = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        im = Image.fromarray((a >> 8).astype(np.uint8), "L")
        notes.append("16-bit greyscale, reduced to 8 bits")
        mode = "L"
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent pixels shown on white")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
        mode = "RGBA"
    if mode == "CMYK":
        notes.append("CMYK converted to RGB (no colour profile applied: colours are approximate)")
    elif mode not in ("RGB", "RGBA", "L", "1", "YCbCr"):
        raise ImageError(f"{name}: pixels of mode {mode} are not read here")
    return (im if im.mode == "RGB" else im.convert("RGB")), notes


def upright_image(im: Image.Image) -> tuple[Image.Image, str]:
    """``im`` turned as its EXIF orientation says, and a note saying so ("" when it was upright). Damaged EXIF data
    leaves the image as stored, with a note."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        upright = ImageOps.exif_transpose(im)
    except DECODE_ERRORS:
        return im, "its EXIF data could not be read: shown as stored"
    turned = orientation in range(2, 9)
    return upright, (f"turned upright as its EXIF orientation ({orientation}) says" if turned else "")


def read_image(source, *, max_bytes: int | None = None, max_pixels: int | None = None) -> OpenedImage:
    """A user's image (bytes, a path, or a binary file object such as an upload) -> OpenedImage, or ImageError.

    Caps default to the deployment's (``limits()``). Checked in this order, each before anything costlier: the file's
    size, its real format (from the bytes), the size its header declares, then one full decode."""
    default_bytes, default_pixels = limits()
    max_bytes = default_bytes if max_bytes is None else max_bytes
    max_pixels = default_pixels if max_pixels is None else max_pixels
    data, name = _read_source(source, max_bytes)
    fmt, head = check_header(data, name, max_pixels)
    notes = []
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])
        if im.size != (head.width, head.height):
            raise ImageError(f"{name}: its header says {head.width} x {head.height} pixels, the {fmt} reader "
                             f"{im.size[0]} x {im.size[1]}")
        frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > 1:
            notes.append(f"an animated {fmt} of {frames} frames: its first frame is shown")
        im.load()  # decodes everything now: a truncated file fails here, not later in the model
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable {fmt} file") from None
    except DECODE_ERRORS as e:
        raise ImageError(f"{name}: the {fmt} data is truncated or damaged ({str(e)[:160] or type(e).__name__})"
                         ) from None
    upright, turned = upright_image(im)
    if turned:
        notes.append(turned)
    if head.bits > 8 and fmt == "PNG" and im.mode not in SIXTEEN_BIT_GREY:
        notes.append(f"{head.bits} bits per channel, reduced to 8")
    rgb, converted = to_rgb(upright, name)
    return OpenedImage(image=rgb, name=name, format=fmt, stored_size=(head.width, head.height),
                       notes=tuple(notes + converted))


def decoded_image(source, *, max_pixels: int | None = None) -> Image.Image:
    """An image already in memory (a PIL image, an (H, W, 3) uint8 array) -> 8-bit RGB, its size checked as a file's
    header is (``check_size``); ImageError otherwise. Pixels are taken as given (no EXIF orientation: the caller
    decoded them)."""
    max_pixels = limits()[1] if max_pixels is None else max_pixels
    if isinstance(source, Image.Image):
        name = "the image"
        check_size(source.width, source.height, name, max_pixels)
        return to_rgb(source, name)[0]
    array = np.asarray(source)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"an image array must be (H, W, 3) uint8, got {array.dtype} of shape {array.shape}")
    check_size(array.shape[1], array.shape[0], "the image array", max_pixels)
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def open_image(source, *, max_bytes: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """A user's image as 8-bit RGB: a file (bytes, a path, a binary file object) upright, checked and decoded once
    (see ``read_image``), or an image already in memory (see ``decoded_image``); ImageError otherwise."""
    if isinstance(source, Image.Image) or hasattr(source, "__array_interface__"):
        return decoded_image(source, max_pixels=max_pixels)
    return read_image(source, max_bytes=max_bytes, max_pixels=max_pixels).image


__all__ = ["EXTENSIONS", "FORMATS", "MAX_ASPECT", "Header", "ImageError", "OpenedImage", "check_header", "check_size",
           "decoded_image", "header", "limits", "open_image", "read_image", "sniff", "to_rgb"]
