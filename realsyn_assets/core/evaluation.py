"""Zero-shot evaluation metrics for a CLIP checkpoint (paper §8: retrieval R@1/5/10, zero-shot
classification), on precomputed L2-normalised embeddings.

Ties are counted against the model: a candidate scoring exactly as high as the correct one ranks
ahead of it. Why: a collapsed encoder (all embeddings equal) must score 0, not a perfect recall.
Similarities are computed in row chunks so 5k images x 25k texts does not need a full matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from realsyn_assets.core.retrieval.index import RetrievalResult

_CHUNK = 1024


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    return x


def retrieval_recall(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    text_to_image: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Image->text and text->image recall@k (fractions in [0, 1]).

    ``text_to_image[j]`` is the index of the image text j describes (several texts per image
    allowed). i2t: an image is a hit at k if any of its texts is among its k most similar texts;
    images without any text are left out of the i2t average. t2i: text j is a hit if its image is
    among its k most similar images. Returns keys ``i2t_R@k`` and ``t2i_R@k``.
    """
    img = _as_2d(image_emb, "image_emb")
    txt = _as_2d(text_emb, "text_emb")
    owner = np.asarray(text_to_image, dtype=np.int64)
    n_img, n_txt = img.shape[0], txt.shape[0]
    if owner.shape != (n_txt,):
        raise ValueError(f"text_to_image must have shape ({n_txt},), got {owner.shape}")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"embedding dims differ: {img.shape[1]} vs {txt.shape[1]}")
    if n_txt and (owner.min() < 0 or owner.max() >= n_img):
        raise ValueError("text_to_image holds an index outside [0, n_images)")
    ks = [int(k) for k in ks]

    # i2t: rank of an image's best-scoring own text among the other images' texts.
    i2t_rank = np.full(n_img, np.iinfo(np.int64).max, dtype=np.int64)
    has_text = np.zeros(n_img, dtype=bool)
    has_text[owner] = True
    for s in range(0, n_img, _CHUNK):
        rows = np.arange(s, min(s + _CHUNK, n_img))
        sims = img[rows] @ txt.T  # (c, n_txt)
        own = owner[None, :] == rows[:, None]
        best_own = np.where(own, sims, -np.inf).max(axis=1, initial=-np.inf)
        i2t_rank[rows] = ((sims >= best_own[:, None]) & ~own).sum(axis=1)

    # t2i: rank of a text's own image among all other images.
    t2i_rank = np.empty(n_txt, dtype=np.int64)
    for s in range(0, n_txt, _CHUNK):
        cols = np.arange(s, min(s + _CHUNK, n_txt))
        sims = txt[cols] @ img.T  # (c, n_img)
        correct = sims[np.arange(len(cols)), owner[cols]]
        t2i_rank[cols] = (sims >= correct[:, None]).sum(axis=1) - 1  # minus the image itself

    out: dict[str, float] = {}
    ranked = i2t_rank[has_text]
    for k in ks:
        out[f"i2t_R@{k}"] = float((ranked < k).mean()) if ranked.size else float("nan")
    for k in ks:
        out[f"t2i_R@{k}"] = float((t2i_rank < k).mean()) if n_txt else float("nan")
    return out


def zero_shot_accuracy(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of nearest-class-embedding classification (class_emb: one row per class,
    e.g. the mean of prompt-template text embeddings, as in CLIP/SLIP zero-shot)."""
    img = _as_2d(image_emb, "image_emb")
    cls = _as_2d(class_emb, "class_emb")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (img.shape[0],):
        raise ValueError(f"labels must have shape ({img.shape[0]},), got {labels.shape}")
    if img.shape[0] == 0:
        return float("nan")
    pred = np.concatenate(
        [np.argmax(img[s : s + _CHUNK] @ cls.T, axis=1) for s in range(0, img.shape[0], _CHUNK)]
    )
    return float((pred == labels).mean())


def chance_recall(n_images: int, texts_per_image: float, k: int) -> float:
    """Expected i2t R@k for random embeddings: P(at least one of an image's m texts is among the
    k drawn from T = n_images * m) = 1 - prod_{i<k} (T - m - i) / (T - i)."""
    if n_images <= 0 or texts_per_image <= 0:
        raise ValueError("n_images and texts_per_image must be positive")
    m = float(texts_per_image)
    total = n_images * m
    if k >= total - m + 1e-9:
        return 1.0
    miss = 1.0
    for i in range(int(k)):
        miss *= max(0.0, (total - m - i) / (total - i))
    return float(min(1.0, max(0.0, 1.0 - miss)))


def chance_recall_t2i(n_images: int, k: int) -> float:
    """Expected t2i R@k for random embeddings: k of n_images candidates, one correct."""
    if n_images <= 0:
        raise ValueError("n_images must be positive")
    return float(min(1.0, k / n_images))


def recall_against_exact(approx: RetrievalResult, exact: RetrievalResult) -> float:
    """Share of the exact top-k that an approximate (e.g. cluster-first) search found.

    Mean over images of `|approx ∩ exact| / |valid exact|` (padding ignored). Images for which the
    exact result has no valid sentence are skipped; 1.0 if none remain.
    """
    a, e = approx.indices, exact.indices
    if a.shape[0] != e.shape[0]:
        raise ValueError("results cover different numbers of images")
    valid_e = e >= 0
    n_valid = valid_e.sum(axis=1)
    keep = n_valid > 0
    if not keep.any():
        return 1.0
    hit = (a[:, :, None] == e[:, None, :]) & (a[:, :, None] >= 0) & valid_e[:, None, :]
    hits = hit.any(axis=1).sum(axis=1)
    return float(np.mean(hits[keep] / n_valid[keep]))
