"""Tests for realsyn_assets.core.images.extract: every bad-input class, filter boundaries, output, pHash."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from realsyn_assets.core.images.extract import (
    REJECT_BAD_ASPECT,
    REJECT_EMPTY,
    REJECT_TOO_LARGE,
    REJECT_TOO_MANY_BYTES,
    REJECT_TOO_SMALL,
    REJECT_UNDECODABLE,
    ImageFilterConfig,
    hamming,
    phash64,
    process_image,
    process_images,
)

# --------------------------------------------------------------------------- helpers


def smooth_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like image: low-frequency random colour field plus a gradient."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    arr = np.asarray(img).astype(np.int16)
    ramp = np.linspace(-30, 30, size[0], dtype=np.float32)[None, :, None]
    return Image.fromarray(np.clip(arr + ramp, 0, 255).astype(np.uint8))


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def solid(mode: str, size: tuple[int, int], color) -> Image.Image:
    return Image.new(mode, size, color)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` but carries almost no pixel data (bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_rgb16(width: int, height: int, rgb16: tuple[int, int, int]) -> bytes:
    """A real 48-bit (16 bits per channel) RGB PNG; Pillow can read but not write these."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    row = b"\x00" + struct.pack(">HHH", *rgb16) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(row * height))
        + png_chunk(b"IEND", b"")
    )


def load_output(result) -> Image.Image:
    assert result.kept, result
    img = Image.open(result.output_path)
    img.load()
    return img


def centre_pixel(img: Image.Image) -> tuple[int, ...]:
    return img.getpixel((img.width // 2, img.height // 2))


def assert_close(color, expected, tol=12):
    assert all(abs(int(c) - e) <= tol for c, e in zip(color, expected, strict=True)), (
        color,
        expected,
    )


# --------------------------------------------------------------------------- bad input classes


def test_zero_bytes_is_empty(tmp_path: Path):
    r = process_image(b"", tmp_path / "x.jpg")
    assert (r.kept, r.reason, r.width, r.height, r.phash, r.output_path) == (
        False,
        REJECT_EMPTY,
        0,
        0,
        None,
        None,
    )
    assert not (tmp_path / "x.jpg").exists()


def test_random_bytes_undecodable(tmp_path: Path):
    data = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    r = process_image(data, tmp_path / "x.jpg")
    assert not r.kept and r.reason == REJECT_UNDECODABLE
    assert r.detail  # carries the exception text
    assert not any(tmp_path.iterdir())


def test_truncated_jpeg_undecodable(tmp_path: Path):
    data = encode(smooth_image(2, (400, 300)), "JPEG", quality=95)
    r = process_image(data[: len(data) // 2], tmp_path / "x.jpg")
    assert not r.kept and r.reason == REJECT_UNDECODABLE
    assert (r.width, r.height) == (400, 300)  # the header was readable
    assert not any(tmp_path.iterdir())  # no output, no temp file left


def test_too_many_bytes():
    data = encode(smooth_image(3), "PNG")
    r = process_image(data, None, ImageFilterConfig(max_bytes=len(data) - 1))
    assert not r.kept and r.reason == REJECT_TOO_MANY_BYTES
    assert process_image(data, None, ImageFilterConfig(max_bytes=len(data))).kept


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path):
    data = encode(solid("CMYK", (200, 150), (0, 255, 255, 0)), "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    r = process_image(data, tmp_path / "c.jpg")
    out = load_output(r)
    assert out.mode == "RGB" and out.format == "JPEG"
    assert_close(centre_pixel(out), (255, 0, 0))


def test_palette_png_with_transparency_composited_on_white(tmp_path: Path):
    img = Image.new("P", (200, 200), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, 100, 200))  # left half opaque red, right half index 0 = transparent
    data = encode(img, "PNG", transparency=0)
    out = load_output(process_image(data, tmp_path / "p.jpg"))
    assert out.mode == "RGB"
    assert_close(out.getpixel((50, 100)), (255, 0, 0))
    assert_close(out.getpixel((150, 100)), (255, 255, 255))  # transparent black -> white


def test_rgba_png_composited_on_white(tmp_path: Path):
    img = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (0, 0, 100, 200))
    img.paste((0, 0, 0, 128), (100, 0, 200, 100))
    out = load_output(process_image(encode(img, "PNG"), tmp_path / "a.jpg"))
    assert_close(out.getpixel((50, 50)), (0, 0, 0))
    assert_close(out.getpixel((150, 50)), (127, 127, 127))
    assert_close(out.getpixel((150, 150)), (255, 255, 255))


def test_la_png(tmp_path: Path):
    img = Image.new("LA", (150, 150), (0, 0))
    img.paste((60, 255), (0, 0, 75, 150))
    out = load_output(process_image(encode(img, "PNG"), tmp_path / "la.jpg"))
    assert out.mode == "RGB"
    assert_close(out.getpixel((30, 75)), (60, 60, 60))
    assert_close(out.getpixel((120, 75)), (255, 255, 255))


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path: Path):
    arr = np.full((150, 200), 30000, np.uint16)  # 30000/65535 ~ 46% grey
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = load_output(process_image(encode(img, "PNG"), tmp_path / "g.jpg"))
    assert_close(centre_pixel(out), (117, 117, 117), tol=3)  # Pillow's convert would give 255


def test_16bit_rgb_png(tmp_path: Path):
    data = png_rgb16(160, 120, (65535, 32768, 0))
    out = load_output(process_image(data, tmp_path / "rgb16.jpg"))
    assert_close(centre_pixel(out), (255, 128, 0), tol=6)


def test_exif_orientation_6_swaps_size_and_rotates(tmp_path: Path):
    stored = Image.new("RGB", (300, 150), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 150, 150))  # stored left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    data = encode(stored, "JPEG", exif=exif, quality=95)
    r = process_image(data, tmp_path / "o.jpg")
    assert (r.width, r.height) == (150, 300)
    out = load_output(r)
    assert out.size == (150, 300)
    assert_close(out.getpixel((75, 40)), (255, 0, 0), tol=20)  # left went to the top
    assert_close(out.getpixel((75, 260)), (0, 0, 255), tol=20)
    assert out.getexif().get(0x0112) is None  # no orientation left to apply twice


def test_exif_orientation_in_png(tmp_path: Path):
    stored = Image.new("RGB", (240, 120), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 120, 120))
    exif = Image.Exif()
    exif[0x0112] = 6
    r = process_image(encode(stored, "PNG", exif=exif), tmp_path / "o.jpg")
    assert (r.width, r.height) == (120, 240)
    out = load_output(r)
    assert_close(out.getpixel((60, 30)), (255, 0, 0))
    assert_close(out.getpixel((60, 210)), (0, 0, 255))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_size_rejection_never_decodes_pixels(fmt, monkeypatch):
    from PIL import ImageFile

    loads = []
    original = ImageFile.ImageFile.load

    def spy(self):
        loads.append(self.format)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    small = encode(smooth_image(8, (99, 400)), fmt)
    wide = encode(smooth_image(8, (700, 200)), fmt)
    assert process_image(small, None).reason == REJECT_TOO_SMALL
    assert process_image(wide, None).reason == REJECT_BAD_ASPECT
    assert loads == []
    assert process_image(encode(smooth_image(8, (300, 200)), fmt), None).kept
    assert loads  # the spy does see real decodes


def test_exif_orientation_6_header_check_uses_display_size():
    stored = Image.new("RGB", (300, 120), (10, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    r = process_image(encode(stored, "JPEG", exif=exif), None)
    assert r.kept and (r.width, r.height) == (120, 300)
    tall = Image.new("RGB", (100, 99), (10, 10, 10))  # rotated 99x100 is still too small
    assert process_image(encode(tall, "JPEG", exif=exif), None).reason == REJECT_TOO_SMALL


def test_animated_gif_uses_first_frame(tmp_path: Path):
    frames = [Image.new("RGB", (120, 120), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    out = load_output(process_image(data, tmp_path / "anim.jpg"))
    assert_close(centre_pixel(out), (255, 0, 0))


def test_decompression_bomb_header_rejected_without_decoding(tmp_path: Path):
    before = Image.MAX_IMAGE_PIXELS
    data = png_header_only(20000, 20000)  # 400 Mpx declared in ~100 bytes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        r = process_image(data, tmp_path / "bomb.jpg")
        r_mid = process_image(png_header_only(10000, 10000), None)  # Pillow only *warns* here
    assert not r.kept and r.reason == REJECT_TOO_LARGE
    assert not r_mid.kept and r_mid.reason == REJECT_TOO_LARGE
    assert Image.MAX_IMAGE_PIXELS == before  # process-wide limit untouched
    assert not any(tmp_path.iterdir())


def test_max_pixels_config_checked_from_header():
    r = process_image(png_header_only(2000, 2000), None, ImageFilterConfig(max_pixels=1_000_000))
    assert not r.kept and r.reason == REJECT_TOO_LARGE
    assert "max_pixels" in r.detail and (r.width, r.height) == (2000, 2000)


def test_size_checked_before_decode():
    # a header-only PNG with too-small / bad-aspect sizes is rejected for size, not as corrupt
    assert process_image(png_header_only(99, 400), None).reason == REJECT_TOO_SMALL
    assert process_image(png_header_only(1000, 200), None).reason == REJECT_BAD_ASPECT
    # while a plausible size gets decoded and then fails as undecodable
    assert process_image(png_header_only(300, 200), None).reason == REJECT_UNDECODABLE


# --------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((99, 200), REJECT_TOO_SMALL),
        ((200, 99), REJECT_TOO_SMALL),
        ((100, 100), None),
        ((100, 200), None),
        ((300, 100), None),  # aspect exactly 3 is kept
        ((100, 300), None),  # and exactly 1/3
        ((301, 100), REJECT_BAD_ASPECT),  # 3.01
        ((100, 301), REJECT_BAD_ASPECT),
    ],
)
def test_size_and_aspect_boundaries(size, reason):
    r = process_image(encode(smooth_image(4, size), "PNG"), None)
    assert r.reason == reason
    assert r.kept == (reason is None)
    assert (r.width, r.height) == size


def test_output_is_rgb_jpeg_longest_side_512_no_upscale(tmp_path: Path):
    big = process_image(encode(smooth_image(5, (1000, 600)), "PNG"), tmp_path / "big.jpg")
    out = load_output(big)
    assert out.format == "JPEG" and out.mode == "RGB"
    assert out.size == (512, 307)
    assert (big.width, big.height) == (1000, 600)
    small = load_output(process_image(encode(smooth_image(5, (200, 150)), "PNG"), tmp_path / "s"))
    assert small.size == (200, 150)  # never upscaled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jpg", "s"]  # no temp files


def test_kept_without_output_path_still_hashed():
    r = process_image(encode(smooth_image(6), "PNG"), None)
    assert r.kept and r.output_path is None and isinstance(r.phash, int)
    assert -(2**63) <= r.phash < 2**63


def test_jpeg_draft_matches_full_decode(tmp_path: Path, monkeypatch):
    from PIL import JpegImagePlugin

    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append(size)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    src = smooth_image(7, (2400, 1600))
    data = encode(src, "JPEG", quality=92)
    out = np.asarray(load_output(process_image(data, tmp_path / "d.jpg")), dtype=np.float64)
    full = Image.open(io.BytesIO(data)).convert("RGB").resize((512, 341), Image.Resampling.LANCZOS)
    ref = np.asarray(Image.open(io.BytesIO(encode(full, "JPEG", quality=90))), dtype=np.float64)
    assert calls == [(1024, 682)]  # draft asked for >= 2x the 512x341 output
    assert out.shape == ref.shape
    assert np.abs(out - ref).mean() < 1.5


def test_process_images_keeps_order_and_matches_serial(tmp_path: Path):
    items = [
        (encode(smooth_image(10), "JPEG"), tmp_path / "a.jpg"),
        (b"", tmp_path / "b.jpg"),
        (encode(smooth_image(11, (50, 50)), "PNG"), tmp_path / "c.jpg"),
        (encode(smooth_image(12), "PNG"), tmp_path / "d.jpg"),
    ]
    serial = process_images(items, ImageFilterConfig(), workers=1)
    parallel = process_images(
        [(d, tmp_path / ("p_" + Path(p).name)) for d, p in items], ImageFilterConfig(), workers=2
    )
    assert [r.reason for r in serial] == [None, REJECT_EMPTY, REJECT_TOO_SMALL, None]
    assert [(r.kept, r.reason, r.phash) for r in serial] == [
        (r.kept, r.reason, r.phash) for r in parallel
    ]
    assert parallel[3].output_path == str(tmp_path / "p_d.jpg")


# --------------------------------------------------------------------------- perceptual hash


@pytest.mark.parametrize("seed", range(8))
def test_phash_agrees_with_imagehash(seed: int):
    img = smooth_image(100 + seed, (300 + 17 * seed, 200 + 5 * seed))
    reference = int(str(imagehash.phash(img)), 16)
    assert hamming(phash64(img), reference) <= 2
    assert hamming(phash64(img.convert("L")), int(str(imagehash.phash(img.convert("L"))), 16)) <= 2


def test_hamming_signed_and_unsigned():
    assert hamming(0, -1) == 64
    assert hamming(-1, 2**64 - 1) == 0
    assert hamming(0b1011, 0b0001) == 2


def _hash_of(data: bytes) -> int:
    r = process_image(data, None)
    assert r.kept
    return r.phash


def test_phash_near_duplicates_close_unrelated_far():
    base = smooth_image(200, (480, 360))
    h = _hash_of(encode(base, "PNG"))
    variants = {
        "jpeg_q40": encode(base, "JPEG", quality=40),
        "resize": encode(base.resize((300, 225), Image.Resampling.BILINEAR), "PNG"),
        "crop": encode(base.crop((6, 5, 474, 355)), "PNG"),
        "grey": encode(base.convert("L"), "PNG"),
    }
    for name, data in variants.items():
        assert hamming(h, _hash_of(data)) <= 6, name
    unrelated = [_hash_of(encode(smooth_image(300 + i, (480, 360)), "PNG")) for i in range(6)]
    assert min(hamming(h, u) for u in unrelated) >= 14
