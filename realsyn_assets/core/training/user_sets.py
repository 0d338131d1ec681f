"""Evaluation sets a user brings (paper §8 evaluates on Flickr30K / MSCOCO retrieval and
zero-shot classification): a captions set for image<->text retrieval recall and a folder-per-class
set for zero-shot accuracy with a prompt ensemble.

Formats (docs/evaluation.md):
* captions set: a folder with ``captions.jsonl``, one JSON object per line,
  ``{"image": "<path relative to the folder>", "captions": ["...", ...]}`` (other keys ignored);
* classification set: ``<folder>/<class name>/<image>``; the class name is the folder name with
  ``_`` and ``-`` read as spaces.

A malformed set raises `UserSetError` naming the file (and line) at fault, before any model runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realsyn_assets.core.evaluation import retrieval_recall, zero_shot_accuracy

CAPTIONS_FILE = "captions.jsonl"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
RECALL_KS = (1, 5, 10)
# Zero-shot prompt ensemble: each class embedding is the mean of these prompts' unit embeddings.
PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image showing a {}.",
    "a close-up photo of the {}.",
    "a blurry photo of a {}.",
    "a drawing of a {}.",
)


class UserSetError(ValueError):
    """A user evaluation set is missing, empty or malformed; the message names file and line."""


@dataclass(frozen=True)
class CaptionsSet:
    name: str
    image_paths: list[str]
    captions: list[str]
    caption_image: np.ndarray  # caption j describes image caption_image[j]


@dataclass(frozen=True)
class ClassificationSet:
    name: str
    image_paths: list[str]
    labels: np.ndarray  # index into class_names
    class_names: list[str]


def _parse_caption_line(line: str, where: str, folder: Path) -> tuple[Path, list[str]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserSetError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise UserSetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    image, captions = record.get("image"), record.get("captions")
    if not isinstance(image, str) or not image:
        raise UserSetError(f"{where}: 'image' must be a non-empty string path")
    if not isinstance(captions, list) or not captions:
        raise UserSetError(f"{where}: 'captions' must be a non-empty list of strings")
    if not all(isinstance(c, str) and c.strip() for c in captions):
        raise UserSetError(f"{where}: every caption must be a non-empty string")
    path = (folder / image).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise UserSetError(f"{where}: image {image!r} lies outside {folder}")
    if not path.is_file():
        raise UserSetError(f"{where}: image {image!r} not found under {folder}")
    return path, [c.strip() for c in captions]


def load_captions_set(folder: Path | str) -> CaptionsSet:
    """Read and validate a captions set: every image exists inside the folder, every line is an
    object with an image path and at least one caption, no image is listed twice."""
    folder = Path(folder)
    source = folder / CAPTIONS_FILE
    if not source.is_file():
        raise UserSetError(f"{source}: captions file not found")
    paths: list[str] = []
    captions: list[str] = []
    owners: list[int] = []
    seen: dict[str, int] = {}
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{source}:{number}"
            path, texts = _parse_caption_line(line, where, folder)
            if str(path) in seen:
                raise UserSetError(f"{where}: image already listed on line {seen[str(path)]}")
            seen[str(path)] = number
            owners.extend([len(paths)] * len(texts))
            captions.extend(texts)
            paths.append(str(path))
    if len(paths) < 2:
        raise UserSetError(f"{source}: needs at least 2 images, found {len(paths)}")
    return CaptionsSet(folder.name, paths, captions, np.asarray(owners, dtype=np.int64))


def class_label(folder_name: str) -> str:
    """The class name a folder stands for: `golden_retriever` -> "golden retriever"."""
    return " ".join(folder_name.replace("_", " ").replace("-", " ").split())


def load_classification_set(folder: Path | str) -> ClassificationSet:
    """Read a folder-per-class set (sorted class folders, sorted images): at least 2 classes,
    each with at least one image; files that are not images are refused by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserSetError(f"{folder}: classification set folder not found")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise UserSetError(f"{folder}: needs at least 2 class folders, found {len(class_dirs)}")
    paths: list[str] = []
    labels: list[int] = []
    for index, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
        for path in files:
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserSetError(
                    f"{path}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        if not files:
            raise UserSetError(f"{class_dir}: class folder holds no images")
        paths.extend(str(p) for p in files)
        labels.extend([index] * len(files))
    names = [class_label(d.name) for d in class_dirs]
    return ClassificationSet(folder.name, paths, np.asarray(labels, np.int64), names)


def class_embeddings(encoder, class_names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """One unit vector per class: the renormalised mean of its prompts' unit text embeddings."""
    prompts = [t.format(name) for name in class_names for t in templates]
    emb = encoder.encode_texts(prompts).reshape(len(class_names), len(templates), -1).mean(axis=1)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def captions_recall(encoder, captions_set: CaptionsSet) -> dict[str, float]:
    """Flickr/COCO protocol: i2t is a hit when any of the image's captions is in its top K;
    t2i is scored per caption."""
    image_emb = encoder.encode_images(captions_set.image_paths)
    text_emb = encoder.encode_texts(captions_set.captions)
    return retrieval_recall(image_emb, text_emb, captions_set.caption_image, ks=RECALL_KS)


def ensemble_zero_shot(
    encoder, classification_set: ClassificationSet, templates: Sequence[str] = PROMPT_TEMPLATES
) -> float:
    """Top-1 zero-shot accuracy with the prompt-ensemble class embeddings."""
    image_emb = encoder.encode_images(classification_set.image_paths)
    classes = class_embeddings(encoder, classification_set.class_names, templates)
    return zero_shot_accuracy(image_emb, classes, classification_set.labels)
