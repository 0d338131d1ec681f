"""Open-set tags with a calibrated threshold (the RAM++ stand-in of paper §3.2).

The vocabulary is a user tag list (optional file, one tag per line) merged with words mined from
the real sentences (`tags.tag_vocabulary`; the paper's 8,000 tags are half RAM++'s list, half
mined). Tag scores are image / tag-prompt cosines. The threshold is calibrated without labels:
the images' own realistic texts (retrieved text1-3) say which tag words are plausibly in each
image, and the threshold that best predicts those mentions (maximum F1 over image-tag pairs) is
the one used. An image may get zero tags; at most `max_tags` are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def read_tag_list(path: Path | str | None) -> list[str]:
    """Tags of a user file, one per line (lowercased, blank lines and `#` comments skipped,
    duplicates removed, file order kept); [] when `path` is empty."""
    if not path:
        return []
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tag list {path} does not exist (config tag_list_path)")
    tags: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        tag = _SPACE.sub(" ", line.split("#", 1)[0]).strip().lower()
        if tag:
            tags.setdefault(tag, None)
    return list(tags)


def merge_vocabulary(user_tags: Sequence[str], mined: Sequence[str], size: int) -> list[str]:
    """User tags first (all of them), then mined words not already there, `size` in total."""
    out: dict[str, None] = dict.fromkeys(user_tags)
    for word in mined:
        if len(out) >= max(size, len(user_tags)):
            break
        out.setdefault(word, None)
    return list(out)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def tag_similarity(image_vecs: np.ndarray, tag_vecs: np.ndarray) -> np.ndarray:
    """(images, tags) cosine matrix."""
    if len(image_vecs) == 0 or len(tag_vecs) == 0:
        return np.zeros((len(image_vecs), len(tag_vecs)), np.float32)
    return _l2(image_vecs) @ _l2(tag_vecs).T


def mention_labels(vocabulary: Sequence[str], texts: Sequence[Sequence[str | None]]) -> np.ndarray:
    """(images, tags) bool: the tag (every word of it) occurs in one of the image's texts."""
    index = {t: j for j, t in enumerate(vocabulary)}
    labels = np.zeros((len(texts), len(vocabulary)), bool)
    for i, image_texts in enumerate(texts):
        words = set()
        for text in image_texts:
            words.update(_WORD.findall((text or "").lower()))
        for tag, j in index.items():
            if all(w in words for w in tag.split()):
                labels[i, j] = True
    return labels


@dataclass(frozen=True)
class Calibration:
    threshold: float
    f1: float
    positives: int  # image-tag pairs the texts mention (0: no signal, nothing calibrated)


def calibrate_threshold(sims: np.ndarray, labels: np.ndarray) -> Calibration:
    """The score threshold with the best F1 at predicting `labels` from `sims` (ties: higher
    threshold). Without any positive pair the threshold is above every score (no tags)."""
    scores, truth = sims.ravel(), labels.ravel()
    positives = int(truth.sum())
    if positives == 0 or scores.size == 0:
        top = float(scores.max()) if scores.size else 1.0
        return Calibration(
            threshold=float(np.nextafter(np.float32(top), np.float32(2))), f1=0.0, positives=0
        )
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(truth[order])
    predicted = np.arange(1, scores.size + 1)
    f1 = 2 * tp / (predicted + positives)
    # Only cut between distinct scores: a threshold keeps every pair at or above it.
    distinct = np.r_[scores[order][1:] < scores[order][:-1], True]
    f1 = np.where(distinct, f1, -1.0)
    best = int(np.argmax(f1))
    return Calibration(float(scores[order][best]), float(f1[best]), positives)


def select_calibrated(
    sims: np.ndarray, vocabulary: Sequence[str], threshold: float, max_tags: int
) -> tuple[list[list[str]], list[list[float]]]:
    """Per image: the tags scoring >= `threshold`, best first (ties by vocabulary order), at
    most `max_tags`, with their scores."""
    tags: list[list[str]] = []
    scores: list[list[float]] = []
    for row in sims:
        cand = np.flatnonzero(row >= threshold)
        order = cand[np.lexsort((cand, -row[cand]))][: max(0, max_tags)]
        tags.append([vocabulary[j] for j in order])
        scores.append([round(float(row[j]), 6) for j in order])
    return tags, scores
