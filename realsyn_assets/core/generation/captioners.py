"""The captioner of the paper's image semantic augmented generation (RealSyn §4, OFA-base there):
one concise sentence per image, from the pixels.

This module holds what every backend shares: the input record, the `Captioner` protocol, the
instruction text and its version (part of every cache key), image encoding for chat requests,
the output cleaner, and `make_captioner`, which builds a backend by name:

- "offline": the small captioner the project trains from its own corpus (CPU);
- "openai": any OpenAI-compatible server with vision chat (e.g. `vllm serve` of a VLM);
- "vllm": a vision-language model in-process through `vllm.LLM.chat` (GPU, extra `gpu`);
- "transformers": a local image-to-text model directory (BLIP / GIT / Florence-2 class).

The network and GPU backends live in `captioning_backends.py`.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from realsyn_assets.core.generation.cleaning import clean_generation

CAPTION_PROMPT_VERSION = "caption-v1"
"""Version of `CAPTION_INSTRUCTION`; bump it whenever the wording changes (it is in cache keys)."""

CAPTION_INSTRUCTION = (
    "Write one short sentence that describes what is visible in this image: the main objects, "
    "their colours and shapes, and the setting. Describe only what you can see. Answer with the "
    "sentence alone."
)
"""The instruction sent with every image to chat-style captioners (openai, vllm)."""

CAPTION_MAX_WORDS = 40
"""Captions longer than this are cut; the paper's captions are concise (OFA-base, ~10 words)."""

BACKENDS = ("offline", "openai", "vllm", "transformers")


@dataclass(frozen=True)
class CaptionInput:
    """One image to caption."""

    image_path: Path  # the image file (absolute)
    vector: np.ndarray | None = None  # its embedding from the home's encoder (unit norm), if known


@runtime_checkable
class Captioner(Protocol):
    """Anything that turns images into one-sentence captions, order preserved."""

    backend: str  # "offline" | "openai" | "vllm" | "transformers"
    model: str  # model identity used in cache keys (name, or dir + content hash)

    def caption(self, items: Sequence[CaptionInput]) -> list[str]: ...


class CaptionError(RuntimeError):
    """A backend could not caption one image (after its retries); names the image and cause."""

    def __init__(self, image_path: Path | str, cause: BaseException | str):
        detail = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else cause
        super().__init__(f"captioning {image_path} failed: {detail}")
        self.image_path = Path(image_path)
        self.cause = cause


def clean_caption(text: str | None, max_words: int = CAPTION_MAX_WORDS) -> str:
    """One line, one sentence, no preamble or quotes, at most `max_words` words ("" if none)."""
    return clean_generation(text or "", max_words)


def load_rgb(path: Path | str, max_side: int = 0):
    """The image at `path` as an RGB PIL image, downsized so its longer side is ≤ `max_side`
    (0 = keep the original size). Raises CaptionError when the file is not a readable image."""
    from PIL import Image  # noqa: PLC0415 - PIL is heavy-ish and only needed here

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CaptionError(path, exc) from exc
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return rgb


def jpeg_data_uri(path: Path | str, max_side: int = 768, quality: int = 90) -> str:
    """The image re-encoded as a baseline JPEG data URI, its longer side ≤ `max_side` pixels.

    Re-encoding gives servers one format to decode whatever the source (PNG, WebP, CMYK, alpha)
    and keeps request bodies small; the bytes are deterministic for a given file and settings.
    """
    buf = io.BytesIO()
    load_rgb(path, max_side).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def caption_messages(image_url: str, instruction: str = CAPTION_INSTRUCTION) -> list[dict]:
    """The OpenAI vision-chat conversation for one image: one user turn, image then instruction."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": instruction},
            ],
        }
    ]


def model_identity(model: str, sample_bytes: int = 1 << 20) -> str:
    """`model` itself for a hub/server name; for a local directory, its name plus a content hash.

    The hash covers every file's relative path and size plus its first and last `sample_bytes`
    bytes, so swapping weights in place changes the identity (and so the cache key) without
    reading gigabytes on every run.
    """
    root = Path(model).expanduser()
    if not root.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(root).as_posix()}\0{size}\0".encode())
        with file.open("rb") as fh:
            digest.update(fh.read(sample_bytes))
            if size > 2 * sample_bytes:
                fh.seek(-sample_bytes, io.SEEK_END)
                digest.update(fh.read(sample_bytes))
    return f"{root.name}@{digest.hexdigest()[:16]}"


def make_captioner(backend: str, **options: Any) -> Captioner:
    """Build a captioner by backend name; `options` go to that backend's constructor.

    "offline" takes `path` (the trained captioner's folder); "openai" takes `model`, `base_url`,
    `api_key`, ...; "vllm" takes `model` and engine options; "transformers" takes `model` (a
    local directory), `device`, `batch_size`, ... (see the classes in `captioning_backends`).
    """
    key = str(backend).strip().lower()
    if key == "offline":
        from realsyn_assets.core.generation.offline_captioner import (  # noqa: PLC0415
            load_offline_captioner,
        )

        if options.get("path") is None:
            raise ValueError("the offline captioner needs path= (its trained model folder)")
        return load_offline_captioner(Path(options["path"]))
    from realsyn_assets.core.generation import captioning_backends as backends  # noqa: PLC0415

    classes = {
        "openai": backends.OpenAICaptioner,
        "vllm": backends.VLLMCaptioner,
        "transformers": backends.TransformersCaptioner,
    }
    if key not in classes:
        raise ValueError(f"unknown captioner backend {backend!r}; use one of {', '.join(BACKENDS)}")
    return classes[key](**options)
