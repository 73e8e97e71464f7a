"""Images a user hands us (model/safe/images.py): hostile files end in an ImageError naming the file and what is
wrong, or are converted with a note; nothing is decoded before its size is checked. Every file is made here."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from model.safe import images
from model.safe.images import ImageError, header, open_image, read_image, sniff


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none of them (a few dozen bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def encoded(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def picture(w: int = 48, h: int = 32) -> Image.Image:
    """A picture whose every pixel differs from its neighbours, so that a turn or a flip shows."""
    y, x = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([x * 5 % 256, y * 7 % 256, (x + y) * 3 % 256], -1).astype(np.uint8))


class Upload(io.BytesIO):
    """What st.file_uploader hands over: a binary file with a name and a size."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name, self.size = name, len(data)


# the hostile images ----------------------------------------------------------------------------------------

def test_a_one_by_100000_png_is_refused_as_a_strip():
    data = encoded(Image.new("RGB", (100_000, 1), "red"), "PNG")
    with pytest.raises(ImageError, match=r"^strip\.png: 100,000 x 1 pixels is a strip, not a picture"):
        read_image(Upload(data, "strip.png"))


def test_a_declared_20000_by_20000_png_is_refused_before_decoding(monkeypatch):
    data = png_header_only(20_000, 20_000)
    assert len(data) < 100
    opened = []
    monkeypatch.setattr(images.Image, "open", lambda *a, **k: opened.append(a) or pytest.fail("decoded"))
    with pytest.raises(ImageError, match=r"bomb\.png: its header declares 20,000 x 20,000 pixels \(400\.0 megapixels"
                                         r"\); at most 25\.0 megapixels are decoded here \(refused before decoding\)"):
        read_image(Upload(data, "bomb.png"))
    assert opened == []


def test_a_truncated_jpeg_is_refused():
    data = encoded(picture(256, 256), "JPEG", quality=90)
    with pytest.raises(ImageError, match=r"^cut\.jpg: the JPEG data is truncated or damaged \(.*truncated"):
        read_image(Upload(data[: len(data) // 2], "cut.jpg"))


def test_a_cmyk_tiff_named_png_is_refused_as_a_tiff():
    data = encoded(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "TIFF")
    with pytest.raises(ImageError, match=r"^photo\.png: a TIFF file \(named \.png\); only PNG, JPEG and WebP images "
                                         r"are read$"):
        read_image(Upload(data, "photo.png"))


def test_an_animated_gif_is_refused_with_what_to_do():
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(ImageError, match=r"^spin\.gif: a GIF file; only PNG, JPEG and WebP images are read \(save "
                                         r"one frame of it as PNG\)$"):
        read_image(Upload(buf.getvalue(), "spin.gif"))


def test_a_16_bit_png_is_reduced_to_8_bits_with_a_note():
    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    opened = read_image(Upload(encoded(Image.fromarray(grey), "PNG"), "deep.png"))
    assert opened.notes == ("16-bit greyscale, reduced to 8 bits",)
    rgb = np.asarray(opened.image)
    assert opened.image.mode == "RGB" and rgb.shape == (64, 64, 3)
    assert np.array_equal(rgb[..., 0], (grey >> 8).astype(np.uint8))  # scaled, not clipped at 255


def test_a_16_bit_colour_png_says_it_was_reduced():
    w = h = 4
    raw = b"".join(b"\x00" + np.full((w, 3), 40_000, ">u2").tobytes() for _ in range(h))
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    opened = read_image(data)
    assert opened.notes == ("16 bits per channel, reduced to 8",)
    assert np.asarray(opened.image)[0, 0].tolist() == [40_000 >> 8] * 3


# the other checks ---------------------------------------------------------------------------------------------------

def test_the_format_comes_from_the_bytes_not_the_name():
    data = encoded(picture(), "JPEG")
    opened = read_image(Upload(data, "really-a-jpeg.png"))
    assert opened.format == "JPEG" and opened.image.size == (48, 32)
    assert sniff(encoded(picture(), "WEBP")) == "WEBP" and sniff(b"GIF89a...") == "GIF" and sniff(b"hello") is None
    with pytest.raises(ImageError, match=r"^notes\.png: not an image this app can identify; only PNG"):
        read_image(Upload(b"just some text, not an image", "notes.png"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_each_format_reads_back_as_rgb(fmt):
    im = picture()
    opened = read_image(encoded(im, fmt, **({"quality": 100} if fmt != "PNG" else {})))
    assert (opened.format, opened.image.mode, opened.image.size, opened.notes) == (fmt, "RGB", (48, 32), ())
    if fmt == "PNG":
        assert np.array_equal(np.asarray(opened.image), np.asarray(im))


def test_the_exif_orientation_is_honoured():
    im = picture(48, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    opened = read_image(encoded(im, "JPEG", quality=100, exif=exif.tobytes()))
    assert opened.stored_size == (48, 32) and opened.image.size == (32, 48)
    assert opened.notes == ("turned upright as its EXIF orientation (6) says",)
    turned = np.asarray(im.transpose(Image.Transpose.ROTATE_270), dtype=float)
    assert np.abs(np.asarray(opened.image, dtype=float) - turned).mean() < 4  # JPEG rounding, not another turn


def test_transparency_palette_cmyk_and_animation_are_converted_with_notes():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    opened = read_image(encoded(rgba, "PNG"))
    assert opened.notes == ("transparent pixels shown on white",)
    assert np.asarray(opened.image)[0, 0].tolist() == [255, 255, 255]
    pal = Image.new("P", (8, 8), 3)
    pal.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 756)
    assert np.asarray(open_image(encoded(pal, "PNG")))[0, 0].tolist() == [70, 80, 90]
    cmyk = read_image(encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.notes[0].startswith("CMYK converted to RGB") and cmyk.image.mode == "RGB"
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    apng = encoded(frames[0], "PNG", save_all=True, append_images=frames[1:])
    anim = read_image(apng)
    assert anim.notes == ("an animated PNG of 2 frames: its first frame is shown",)
    assert np.asarray(anim.image)[0, 0].tolist() == [255, 0, 0]


def test_headers_are_read_without_decoding():
    for fmt in ("PNG", "JPEG", "WEBP"):
        assert (header(encoded(picture(48, 32), fmt), fmt).width, header(encoded(picture(48, 32), fmt), fmt).height) \
            == (48, 32), fmt
    lossless = encoded(picture(48, 32), "WEBP", lossless=True)
    assert (header(lossless, "WEBP").width, header(lossless, "WEBP").height) == (48, 32)
    # a WebP whose extended header declares a 16,384 x 16,384 canvas (its decoder allocates the canvas on creation)
    vp8x = b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + \
        (16383).to_bytes(3, "little") * 2
    with pytest.raises(ImageError, match=r"declares 16,384 x 16,384 pixels"):
        read_image(vp8x)
    # a JPEG whose frame header declares 30,000 x 30,000
    data = bytearray(encoded(picture(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 30_000, 30_000)
    with pytest.raises(ImageError, match=r"declares 30,000 x 30,000 pixels"):
        read_image(bytes(data))


def test_byte_and_pixel_caps_and_the_settings(monkeypatch):
    data = encoded(picture(100, 100), "PNG")
    with pytest.raises(ImageError, match=r"^big\.png: .*larger than an image may be here"):
        read_image(Upload(data, "big.png"), max_bytes=len(data) - 1)
    with pytest.raises(ImageError, match=r"declares 100 x 100 pixels"):
        read_image(data, max_pixels=9_999)
    assert read_image(data, max_pixels=10_000).image.size == (100, 100)
    monkeypatch.setenv("INSPECTOR_MAX_IMAGE_PIXELS", "9999")
    with pytest.raises(ImageError, match=r"\(10,000 pixels\); at most 9,999 pixels are decoded here"):
        read_image(data)
    monkeypatch.delenv("INSPECTOR_MAX_IMAGE_PIXELS")
    noise = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 100, 3), np.uint8)), "PNG")
    assert len(noise) > 0.01 * 2**20
    monkeypatch.setenv("INSPECTOR_MAX_IMAGE_MB", "0.01")
    with pytest.raises(ImageError, match="larger than an image may be here"):
        read_image(noise)
    with pytest.raises(ImageError, match="the file is empty"):
        read_image(Upload(b"", "empty.png"))
    with pytest.raises(ImageError, match="its header declares 0 x 5 pixels"):
        read_image(png_header_only(0, 5))


def test_paths_go_through_the_file_gate(tmp_path):
    good = tmp_path / "ok.png"
    good.write_bytes(encoded(picture(), "PNG"))
    assert open_image(good).size == (48, 32) and open_image(str(good)).size == (48, 32)
    with pytest.raises(ImageError, match="missing"):
        open_image(tmp_path / "nope.png")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        open_image(fifo)  # never waits on the pipe
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        open_image(42)


def test_pixels_already_in_memory_are_checked_and_made_rgb():
    im = picture()
    assert open_image(im).tobytes() == im.tobytes()
    array = np.asarray(im)
    assert np.array_equal(np.asarray(open_image(array)), array)
    see_through = Image.new("RGBA", (24, 24), (255, 0, 0, 0))
    assert open_image(see_through).getpixel((3, 3)) == (255, 255, 255)  # on white, as a file's would be
    assert open_image(Image.new("L", (24, 24), 90)).getpixel((0, 0)) == (90, 90, 90)
    for bad, message in [(np.zeros((8, 8), np.uint8), r"must be \(H, W, 3\) uint8"),
                         (np.zeros((8, 8, 3), np.float32), "float32"),
                         (np.zeros((0, 8, 3), np.uint8), "0 pixels, an empty image"),
                         (np.zeros((2, 100, 3), np.uint8), "a strip"),
                         (Image.new("RGB", (100, 100)), r"\(10,000 pixels\); at most 9,999 pixels are read here")]:
        with pytest.raises(ImageError, match=message):
            open_image(bad, max_pixels=9_999)


def test_the_traced_call_reads_paths_and_pixels_through_this_module(tmp_path):
    from model import load

    pipe = load("checkpoints/shapes", "cpu")
    path = tmp_path / "scene.png"
    path.write_bytes(encoded(picture(64, 64), "PNG"))
    by_path, by_pixels = pipe.run(path), pipe.run(picture(64, 64))
    assert np.array_equal(by_path.logits.rows().numpy(), by_pixels.logits.rows().numpy())
    with pytest.raises(ImageError, match="cmyk.png: a TIFF file"):
        cmyk = tmp_path / "cmyk.png"
        cmyk.write_bytes(encoded(Image.new("CMYK", (8, 8)), "TIFF"))
        pipe.run(cmyk)
    with pytest.raises(ValueError, match=r"must be \(H, W, 3\) uint8"):  # ImageError is a ValueError
        pipe.run(np.zeros((8, 8), np.uint8))
