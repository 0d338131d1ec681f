"""Image decoding, normalisation, quality filter and perceptual hash (spec §2, image stage 1).

Each input (raw bytes of one web image) ends in exactly one of two states:

* kept: decoded, EXIF-transposed, flattened to RGB (alpha composited on white), shrunk so that
  its longest side is at most ``output_max_side`` (never upscaled), written as a JPEG, and hashed;
* rejected: with one of the ``REJECT_*`` reasons and a human-readable detail.

Why this order: the paper's filter (shorter side >= 100 px, aspect ratio in [1/3, 3]) only needs
the image header, so sizes are checked right after ``Image.open`` (which reads the header only) —
that rejects ~15% of web images and all decompression bombs without decoding a single pixel.

Bad input never raises: every Pillow failure (truncated data, unknown format, odd modes, broken
EXIF) becomes a rejection. The one thing that does raise is a failure to *write* the output
(disk full, permission): that is an environment fault, and turning it into per-image
"rejections" would silently drop good data.

Decompression bombs: Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` is never modified. We check
the header size against ``config.max_pixels`` ourselves and additionally turn Pillow's own
``DecompressionBombWarning`` into a rejection (scoped ``warnings.catch_warnings``), so Pillow's
global limit stays a backstop: ``max_pixels`` can tighten that limit but not loosen it.

pHash: our numpy implementation reproduces ``imagehash.phash`` (same Lanczos 32x32 greyscale
resize, type-II DCT, top-left 8x8 block including the DC term, threshold ``> median``, same bit
order), so hashes are interchangeable with the de-facto standard library. The DC coefficient is
kept (rather than dropped) precisely for that compatibility; it is nearly always 1 and so costs
no discrimination between images. The DCT is two tiny matrix products with a precomputed 8x32
basis (the PIL greyscale + Lanczos resize dominates the cost), so neither scipy nor imagehash is
needed.

Large JPEGs are decoded in draft mode (DCT-domain downscaling) straight to about twice the output
size, which makes them several times cheaper to normalise than a full decode + resize.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from realsyn_assets.core.pools import worker_context

REJECT_UNDECODABLE = "undecodable"
REJECT_EMPTY = "empty"
REJECT_TOO_SMALL = "too_small"
REJECT_BAD_ASPECT = "bad_aspect"
REJECT_TOO_LARGE = "decompression_bomb"
REJECT_TOO_MANY_BYTES = "too_many_bytes"

REJECT_REASONS = (
    REJECT_UNDECODABLE,
    REJECT_EMPTY,
    REJECT_TOO_SMALL,
    REJECT_BAD_ASPECT,
    REJECT_TOO_LARGE,
    REJECT_TOO_MANY_BYTES,
)

_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # transpose/rotate-90 variants swap width and height
_DRAFT_REDUCING_GAP = 2.0  # decode JPEGs at >= 2x the output size, as Image.thumbnail does


@dataclass(frozen=True)
class ImageFilterConfig:
    """Quality-filter and normalisation settings; defaults are the paper's (spec §2)."""

    min_side: int = 100  # paper: shorter side >= 100 px
    max_aspect: float = 3.0  # paper: aspect ratio in [1/3, 3]
    max_pixels: int = 89_478_485  # decompression-bomb guard (= Pillow's default limit)
    max_bytes: int = 50 * 2**20
    output_max_side: int = 512  # normalised copy: longest side at most this (never upscale)
    jpeg_quality: int = 90


@dataclass(frozen=True)
class ImageResult:
    """Outcome for one image. ``width``/``height`` are the original size after EXIF transpose."""

    kept: bool
    reason: str | None
    detail: str
    width: int
    height: int
    phash: int | None
    output_path: str | None


def _reject(reason: str, detail: str, width: int = 0, height: int = 0) -> ImageResult:
    return ImageResult(False, reason, detail, width, height, None, None)


# --------------------------------------------------------------------------- perceptual hash


def _dct_basis(n: int, k: int) -> np.ndarray:
    """First ``k`` rows of the unnormalised type-II DCT matrix of size ``n`` (scipy's norm=None)."""
    rows = np.arange(k, dtype=np.float64)[:, None]
    cols = np.arange(n, dtype=np.float64)[None, :]
    return 2.0 * np.cos(np.pi * rows * (2.0 * cols + 1.0) / (2.0 * n))


_HASH_SIDE = 8
_HASH_INPUT = 32
_DCT8 = _dct_basis(_HASH_INPUT, _HASH_SIDE)
_BIT_WEIGHTS = np.array([1 << (63 - i) for i in range(64)], dtype=np.uint64)


def phash64(img: Image.Image) -> int:
    """64-bit DCT perceptual hash, bit-compatible with ``imagehash.phash``.

    Returned as a signed int64-compatible Python int (so it fits an int64 column); bit 63 is the
    first (DC) coefficient, matching ``int(str(imagehash.phash(img)), 16)`` modulo sign.
    """
    grey = img.convert("L").resize((_HASH_INPUT, _HASH_INPUT), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    low = _DCT8 @ pixels @ _DCT8.T  # == scipy dct(dct(x, axis=0), axis=1)[:8, :8]
    bits = (low > np.median(low)).ravel()
    value = int(np.bitwise_or.reduce(_BIT_WEIGHTS[bits])) if bits.any() else 0
    return value - (1 << 64) if value >= (1 << 63) else value


def hamming(a: int, b: int) -> int:
    """Hamming distance of two 64-bit hashes given as signed or unsigned ints."""
    return ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()


# --------------------------------------------------------------------------- normalisation


def _orientation(img: Image.Image) -> int:
    """EXIF orientation from the already-parsed header. The base-class ``getexif`` is called on
    purpose: ``PngImageFile.getexif`` decodes the whole image first, which would defeat the
    header-only size checks (and EXIF after the pixel data is non-standard anyway)."""
    try:
        value = Image.Image.getexif(img).get(_EXIF_ORIENTATION, 1)
        return int(value) if isinstance(value, int) else 1
    except Exception:  # broken EXIF is not a reason to drop a decodable image
        return 1


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit greyscale to 8-bit. Pillow's own convert clips at 255 (a white image)."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        out = arr.astype(np.uint32) >> 8
    elif img.mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        out = np.clip(arr * scale, 0, 255)
    else:  # "I": 32-bit signed; values above 255 almost always mean 16-bit data
        arr = arr.astype(np.int64)
        out = np.clip(arr >> 8 if arr.max(initial=0) > 255 else arr, 0, 255)
    return Image.fromarray(out.astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency is composited on white (web images assume a light page)."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _high_bit_depth_to_l(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    return img.convert("RGB")


def _output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _save_jpeg(img: Image.Image, path: Path, quality: int) -> None:
    """Write `img` as a JPEG through the one atomic writer.

    `core.io` (and pyarrow with it) is imported here, not at the top: this module is preloaded
    into the fork server of the worker pools (`core.pools`), which should stay free of pyarrow's
    background threads."""
    from realsyn_assets.core.io import atomic_path

    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=quality)


# `<_io.BytesIO object at 0x7f…>` and the like: per-run text that must not reach a rejection
_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def _stable_detail(exc: BaseException) -> str:
    """`ExceptionClass: message` without object reprs (memory addresses), so that two runs over
    the same bytes write the same rejection detail."""
    message = _OBJECT_REPR.sub("", str(exc)).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _open_checked(
    data: bytes, config: ImageFilterConfig
) -> tuple[Image.Image | None, ImageResult | None, int]:
    """Header-only open + size/aspect/bomb checks. Returns (image, rejection, orientation)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, _reject(REJECT_TOO_LARGE, _OBJECT_REPR.sub("", str(exc))), 1
    except Exception as exc:
        return None, _reject(REJECT_UNDECODABLE, _stable_detail(exc)), 1

    w, h = img.size
    orientation = _orientation(img)
    if orientation in _SWAPPING_ORIENTATIONS:
        w, h = h, w
    if w * h > config.max_pixels:
        detail = f"{w}x{h} = {w * h} px > max_pixels {config.max_pixels}"
        return None, _reject(REJECT_TOO_LARGE, detail, w, h), orientation
    short, long = min(w, h), max(w, h)
    if short < config.min_side:
        detail = f"{w}x{h}: shorter side {short} < {config.min_side}"
        return None, _reject(REJECT_TOO_SMALL, detail, w, h), orientation
    if long > config.max_aspect * short:
        detail = f"{w}x{h}: aspect {long / short:.3f} > {config.max_aspect}"
        return None, _reject(REJECT_BAD_ASPECT, detail, w, h), orientation
    return img, None, orientation


def process_image(
    data: bytes,
    output_path: Path | str | None,
    config: ImageFilterConfig = ImageFilterConfig(),  # noqa: B008 - frozen, immutable
) -> ImageResult:
    """Filter and normalise one image; see the module docstring. Never raises on bad input.

    With ``output_path=None`` nothing is written (``output_path`` of the result is None) but the
    image is still fully decoded and hashed — useful for dry runs and tests.
    """
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        return _reject(REJECT_EMPTY, "no bytes")
    if len(data) > config.max_bytes:
        return _reject(REJECT_TOO_MANY_BYTES, f"{len(data)} bytes > max_bytes {config.max_bytes}")

    img, rejection, orientation = _open_checked(bytes(data), config)
    if rejection is not None:
        return rejection
    assert img is not None
    stored_w, stored_h = img.size
    width, height = (
        (stored_h, stored_w) if orientation in _SWAPPING_ORIENTATIONS else (stored_w, stored_h)
    )

    try:
        img.seek(0)  # animated GIF/PNG/WebP: the first frame is the image
        target_w, target_h = _output_size(stored_w, stored_h, config.output_max_side)
        if img.format == "JPEG" and (target_w, target_h) != (stored_w, stored_h):
            # DCT-domain downscaling (1/2, 1/4, 1/8) while decoding. We ask for >= 2x the output
            # size, so the Lanczos resize below still does a >= 2x reduction; the result differs
            # from a full decode + resize by about one grey level (tested), less than the JPEG
            # encode itself adds.
            gap = _DRAFT_REDUCING_GAP
            img.draft("RGB", (int(target_w * gap), int(target_h * gap)))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
        if orientation != 1:
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # malformed EXIF: keep the stored orientation, sizes follow it
                width, height = stored_w, stored_h
        rgb = _to_rgb(img)
        out_w, out_h = _output_size(rgb.width, rgb.height, config.output_max_side)
        if (out_w, out_h) != rgb.size:
            rgb = rgb.resize((out_w, out_h), Image.Resampling.LANCZOS)
        phash = phash64(rgb)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _reject(REJECT_TOO_LARGE, _OBJECT_REPR.sub("", str(exc)), width, height)
    except Exception as exc:  # truncated data, unsupported mode, decoder errors, ...
        return _reject(REJECT_UNDECODABLE, _stable_detail(exc), width, height)

    written: str | None = None
    if output_path is not None:
        path = Path(output_path)
        _save_jpeg(rgb, path, config.jpeg_quality)
        written = str(path)
    detail = f"{width}x{height} -> {rgb.width}x{rgb.height}"
    return ImageResult(True, None, detail, width, height, phash, written)


def _process_one(item: tuple[bytes, Path | str | None], config: ImageFilterConfig) -> ImageResult:
    data, path = item
    return process_image(data, path, config)


def process_images(
    items: Sequence[tuple[bytes, Path | str | None]],
    config: ImageFilterConfig = ImageFilterConfig(),  # noqa: B008 - frozen, immutable
    workers: int = 1,
    chunksize: int = 16,
    start_method: str | None = None,
) -> list[ImageResult]:
    """Process many images, results in input order. ``workers > 1`` uses a process pool.

    The pool comes from ``core.pools.worker_context``: a preloaded fork server where available
    (forking a parent that already runs torch/faiss/Dagster threads can deadlock). Like
    ``spawn``, it needs the usual ``if __name__ == "__main__":`` guard in scripts; pass
    ``start_method="fork"`` to trade that safety for convenience.
    """
    if workers <= 1 or len(items) <= 1:
        return [process_image(data, path, config) for data, path in items]
    context = worker_context(start_method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(partial(_process_one, config=config), items, chunksize=chunksize))
