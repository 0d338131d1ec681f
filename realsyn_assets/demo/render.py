"""Demo corpus images: procedural drawing of concepts on scenes, and the noise variants."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFile

from realsyn_assets.core import ids
from realsyn_assets.demo.planner import ImageSpec
from realsyn_assets.demo.vocabulary import COLOURS

# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


_LOW_RES = 4  # backgrounds are smooth: compute them at 1/4 size and upsample (4x faster)


def _gradient(w: int, h: int, top: tuple, bottom: tuple, tilt: float) -> np.ndarray:
    """Vertical colour gradient with a horizontal tilt, float32 HxWx3."""
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    t = np.clip(y + tilt * x, 0.0, 1.0)[..., None]
    return np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, ...]:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)


def _background(scene: str, w: int, h: int, rng: random.Random) -> Image.Image:
    lw, lh = -(-w // _LOW_RES) + 1, -(-h // _LOW_RES) + 1
    tilt = rng.uniform(-0.6, 0.6)
    horizon = int(h * rng.uniform(0.25, 0.6))
    ground = None
    if scene in ("sky", "grass", "sea", "sand"):
        top, bottom = _jitter((40, 110, 210), rng, 25), _jitter((175, 215, 245), rng, 15)
        base = _gradient(lw, lh, top, bottom, tilt)
        if scene != "sky":
            ground_top, ground_bottom = {
                "grass": ((110, 185, 70), (40, 110, 35)),
                "sea": ((60, 140, 190), (15, 55, 120)),
                "sand": ((235, 210, 160), (200, 165, 110)),
            }[scene]
            ground = _gradient(
                lw, lh, _jitter(ground_top, rng, 20), _jitter(ground_bottom, rng, 20), -tilt
            )
    elif scene == "night":
        base = _gradient(lw, lh, _jitter((8, 10, 35), rng, 8), _jitter((30, 35, 80), rng, 12), tilt)
    else:  # plain studio backdrop
        g1, g2 = rng.randint(150, 215), rng.randint(190, 240)
        base = _gradient(lw, lh, (g1, g1, g1 + 5), (g2, g2, g2), tilt * 2)
    # a soft light/shadow patch at a random place: varies the low frequencies that perceptual
    # hashes look at, so unrelated images of one scene type do not hash alike
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    cx, cy = rng.uniform(0, lw), rng.uniform(0, lh)
    radius = rng.uniform(0.3, 0.7) * max(lw, lh)
    patch = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))[..., None]
    light = rng.choice([-1, 1]) * rng.uniform(45, 80) * patch

    def upsample(arr: np.ndarray) -> Image.Image:
        small = Image.fromarray(np.clip(arr + light, 0, 255).astype(np.uint8))
        return small.resize((w, h), Image.Resampling.BILINEAR)

    img = upsample(base)
    if ground is not None:
        img.paste(upsample(ground).crop((0, horizon, w, h)), (0, horizon))
    draw = ImageDraw.Draw(img)
    if scene == "sky":
        for _ in range(rng.randint(1, 4)):
            cx, cy, r = (
                rng.uniform(0, w),
                rng.uniform(0, h * 0.8),
                rng.uniform(0.12, 0.3) * min(w, h),
            )
            for k in range(3):
                dx = (k - 1) * r * 0.7
                draw.ellipse(
                    (cx + dx - r, cy - r * 0.55, cx + dx + r, cy + r * 0.55),
                    fill=_jitter((245, 245, 250), rng, 5),
                )
    elif scene == "grass":
        for _ in range(rng.randint(20, 60)):
            x, y = rng.uniform(0, w), rng.uniform(horizon, h)
            draw.line(
                (x, y, x + rng.uniform(-3, 3), y - rng.uniform(4, 10)),
                fill=_jitter((30, 95, 30), rng, 15),
            )
    elif scene == "sea":
        for _ in range(rng.randint(5, 14)):
            x, y = rng.uniform(-20, w), rng.uniform(horizon + 3, h)
            draw.arc(
                (x, y, x + rng.uniform(20, 60), y + 8), 200, 340, fill=(200, 230, 245), width=2
            )
    elif scene == "night":
        for _ in range(rng.randint(20, 70)):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            draw.point((x, y), fill=_jitter((240, 240, 210), rng, 15))
        mx, my, mr = rng.uniform(0, w), rng.uniform(0, h * 0.4), rng.uniform(0.05, 0.1) * min(w, h)
        draw.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=(235, 235, 210))
    elif scene == "sand":
        amp, phase = rng.uniform(3, 12), rng.uniform(0, 6.28)
        pts = [(x, horizon + 10 + amp * np.sin(x / w * 6.28 + phase)) for x in range(0, w + 8, 8)]
        draw.line(pts, fill=(180, 145, 95), width=3)
    else:
        draw.rectangle(
            (0, int(h * rng.uniform(0.6, 0.85)), w, h), fill=_jitter((120, 120, 125), rng, 30)
        )
    return img


def _shape_points(
    shape: str, cx: float, cy: float, r: float, angle: float
) -> list[tuple[float, float]]:
    if shape == "square":
        local = [(np.cos(a), np.sin(a)) for a in np.arange(4) * np.pi / 2 + np.pi / 4]
    elif shape == "triangle":
        local = [(np.cos(a), np.sin(a)) for a in np.arange(3) * 2 * np.pi / 3 - np.pi / 2]
    elif shape == "star":
        local = [
            ((1.0 if k % 2 == 0 else 0.45) * np.cos(a), (1.0 if k % 2 == 0 else 0.45) * np.sin(a))
            for k, a in enumerate(np.arange(10) * np.pi / 5 - np.pi / 2)
        ]
    else:  # cross / plus
        a = 0.32
        local = [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ]
    ca, sa = np.cos(angle), np.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in local]


def _draw_objects(img: Image.Image, concept: str, count: int, rng: random.Random) -> None:
    colour, shape = concept.split(" ")
    rgb = COLOURS[colour]
    edge = (235, 235, 235) if colour in ("black", "blue", "purple") else (25, 25, 25)
    w, h = img.size
    draw = ImageDraw.Draw(img)
    base = min(w, h) * (0.24 if count == 1 else 0.19 if count <= 3 else 0.15)
    placed: list[tuple[float, float, float]] = []
    for _ in range(count):
        r = base * rng.uniform(0.7, 1.15)
        for _try in range(25):  # keep objects apart so the count stays visible
            cx, cy = rng.uniform(r, max(r + 1, w - r)), rng.uniform(r, max(r + 1, h - r))
            if all((cx - x) ** 2 + (cy - y) ** 2 > (1.05 * (r + q)) ** 2 for x, y, q in placed):
                break
        placed.append((cx, cy, r))
        fill = _jitter(rgb, rng, 8)
        width = max(1, int(r / 12))
        if shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=edge, width=width)
        elif shape == "ring":
            draw.ellipse(
                (cx - r, cy - r, cx + r, cy + r), outline=edge, width=max(2, int(r * 0.42))
            )
            draw.ellipse(
                (cx - r + width, cy - r + width, cx + r - width, cy + r - width),
                outline=fill,
                width=max(2, int(r * 0.42) - 2 * width),
            )
        else:
            draw.polygon(
                _shape_points(shape, cx, cy, r, rng.uniform(0, 2 * np.pi)),
                fill=fill,
                outline=edge,
                width=width,
            )


def _render(spec: ImageSpec) -> Image.Image:
    rng = random.Random(spec.seed)
    img = _background(spec.scene or "plain", spec.width, spec.height, rng)
    if spec.concept:
        _draw_objects(img, spec.concept, spec.count or 1, rng)
    return img


def _encode(img: Image.Image, fmt: str, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def _decodes(data: bytes) -> bool:
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # judge strictly, whatever a caller set globally
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:
        return False
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


# DCT-II basis (unnormalised, like scipy.fftpack.dct) for the 8 lowest frequencies of 32 samples.
_DCT8 = np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64)
NEAR_DUPLICATE_MAX_DISTANCE = 8  # near-duplicate images: phash distance to their source <= this
DISTINCT_MIN_DISTANCE = 13  # normal images: phash distance to every other normal image >= this


def _phash(img: Image.Image) -> np.ndarray:
    """64-bit perceptual hash as 64 bools, bit-identical to ``imagehash.phash`` (default size).

    Own numpy version so the generator needs no scipy import (~1 s) for 700 hashes.
    """
    pixels = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    low = _DCT8 @ pixels @ _DCT8.T  # == dct(dct(pixels, axis=0), axis=1)[:8, :8] up to scale
    return (low > np.median(low)).ravel()


def _phash_distance(a: Image.Image, b: Image.Image) -> int:
    return int(np.count_nonzero(_phash(a) != _phash(b)))


def _distinct(
    spec: ImageSpec, img: Image.Image, hashes: list[np.ndarray], rng: random.Random
) -> Image.Image:
    """Redraw (new object layout) until the image is perceptually far from every earlier normal
    image, so a perceptual-dedup stage meets only the near-duplicates we planted."""
    bits = _phash(img)
    for _ in range(12):
        if not hashes or int(np.min(np.count_nonzero(np.asarray(hashes) != bits, axis=1))) >= (
            DISTINCT_MIN_DISTANCE
        ):
            break
        spec.seed = rng.getrandbits(48)
        img = _render(spec)
        bits = _phash(img)
    hashes.append(bits)
    return img


def _materialise(spec: ImageSpec, hashes: list[np.ndarray]) -> None:
    """Fill spec.data (and the real width/height) from the spec; sources are materialised first."""
    rng = random.Random(spec.seed ^ 0x5EED)
    if spec.kind == "copy":
        spec.data = spec.source.data
    elif spec.kind == "near_duplicate":
        src = Image.open(io.BytesIO(spec.source.data)).convert("RGB")
        for attempt in range(4):
            kind = spec.near_kind if attempt < 3 else "requality"
            if kind == "resize":
                f = rng.uniform(0.7, 0.9)
                out = src.resize(
                    (round(src.width * f), round(src.height * f)), Image.Resampling.LANCZOS
                )
            elif kind == "crop":
                fx, fy = rng.uniform(0.02, 0.05), rng.uniform(0.02, 0.05)
                dx, dy = round(src.width * fx), round(src.height * fy)
                ox, oy = rng.randint(0, dx), rng.randint(0, dy)
                out = src.crop((ox, oy, src.width - (dx - ox), src.height - (dy - oy)))
            else:
                out = src
            quality = rng.choice(
                [q for q in range(55, 96, 5) if abs(q - spec.source.quality) >= 12]
            )
            data = _encode(out, "JPEG", quality)
            if (
                data != spec.source.data
                and _phash_distance(src, Image.open(io.BytesIO(data)))
                <= NEAR_DUPLICATE_MAX_DISTANCE
            ):
                break
        spec.near_kind, spec.quality, spec.data = kind, quality, data
        spec.width, spec.height = out.size
    elif spec.kind == "corrupt" and spec.corrupt_kind == "empty":
        spec.data = b""
    elif spec.kind == "corrupt" and spec.corrupt_kind == "random_bytes":
        while True:
            data = bytes([0x00]) + rng.randbytes(rng.randint(400, 4000))
            if not _decodes(data):
                break
        spec.data = data
    else:
        img = _render(spec)
        if spec.kind in ("clean", "png"):
            img = _distinct(spec, img, hashes, rng)
        if spec.kind == "png":
            if spec.png_mode == "P":
                img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=48)
            else:
                alpha = Image.new("L", img.size, 255)
                border = max(3, min(img.size) // 20)
                ImageDraw.Draw(alpha).rectangle(
                    (0, 0, img.width - 1, img.height - 1), outline=0, width=border
                )
                img.putalpha(alpha)
            spec.data = _encode(img, "PNG")
        else:
            data = _encode(img, "JPEG", spec.quality)
            if spec.kind == "corrupt":  # truncated mid-scan: header intact, pixels missing
                cut = rng.uniform(0.35, 0.7)
                while _decodes(data[: int(len(data) * cut)]):
                    cut *= 0.8
                data = data[: int(len(data) * cut)]
            spec.data = data
    spec.image_id = ids.image_id(spec.data)
