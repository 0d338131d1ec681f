"""A bootstrap encoder from in-document co-occurrence, for users without pretrained CLIP weights.

Interleaved documents carry a weak pairing signal: an image and the text blocks right before and
after it usually talk about the same thing (MMC4 and OBELICS rely on this). Mining those pairs
and training a small CLIP on them contrastively gives an encoder whose retrieval means something,
where random weights give noise. This module mines pairs and scores retrieval against ground truth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from realsyn_assets.core.train import TrainSample


def mine_pairs(
    items: pa.Table,
    images: pa.Table,
    sentences: pa.Table,
    window: int = 1,
    max_texts: int = 8,
) -> list[TrainSample]:
    """(image, nearby sentences) pairs from page order.

    items: the documents' items (doc_id, position, kind); images: kept images (doc_id, position,
    path); sentences: kept sentences (doc_id, position, text). For each image, the `window`
    nearest TEXT blocks before and after it (other images skipped) contribute their kept
    sentences, nearest block first; images with no kept sentence nearby are left out.
    """
    text_positions: dict[str, list[int]] = defaultdict(list)
    for doc, pos, kind in zip(
        items.column("doc_id").to_pylist(),
        items.column("position").to_pylist(),
        items.column("kind").to_pylist(),
        strict=True,
    ):
        if kind == "text":
            text_positions[doc].append(pos)
    by_block: dict[tuple[str, int], list[str]] = defaultdict(list)
    for doc, pos, text in zip(
        sentences.column("doc_id").to_pylist(),
        sentences.column("position").to_pylist(),
        sentences.column("text").to_pylist(),
        strict=True,
    ):
        by_block[(doc, pos)].append(text)
    samples = []
    for doc, pos, path in zip(
        images.column("doc_id").to_pylist(),
        images.column("position").to_pylist(),
        images.column("path").to_pylist(),
        strict=True,
    ):
        blocks = sorted(text_positions.get(doc, []))
        before = [p for p in blocks if p < pos][-window:][::-1]
        after = [p for p in blocks if p > pos][:window]
        order = sorted(before + after, key=lambda p: (abs(p - pos), p))
        texts: list[str] = []
        for p in order:
            texts.extend(by_block.get((doc, p), []))
        if texts:
            samples.append(TrainSample(image_path=path, texts=texts[:max_texts]))
    return samples


def retrieval_precision(
    image_ids: Sequence[str],
    retrieved: Sequence[Sequence[str | None]],
    describes: Callable[[str, str], bool],
    has_concept: Callable[[str], bool],
) -> dict[str, float]:
    """Fraction of retrieved texts that describe the image, per rank and over all ranks.

    Only images with a ground-truth concept count. Missing texts count as misses.
    """
    hits: list[list[bool]] = []
    for image_id, texts in zip(image_ids, retrieved, strict=True):
        if not has_concept(image_id):
            continue
        hits.append([bool(t) and describes(image_id, t) for t in texts])
    if not hits:
        return {"images_scored": 0}
    matrix = np.array(hits, dtype=float)
    result = {"images_scored": int(len(matrix)), "precision_all": float(matrix.mean())}
    for j in range(matrix.shape[1]):
        result[f"precision_text{j + 1}"] = float(matrix[:, j].mean())
    return result


def reselect_pairs(encoder, samples: Sequence[TrainSample], keep: int = 1) -> list[TrainSample]:
    """Keep each image's `keep` best-matching nearby sentences under a first-round encoder.

    The nearest text blocks hold the describing sentence most of the time but mixed with other
    sentences (on the demo corpus 94% of candidate lists contain it, yet only 45% of candidates
    describe the image), so first-round labels are noisy. Re-selecting among an image's own
    candidates with the first-round model cleans them, in the spirit of MMC4's in-document
    assignment; a second round trains on the cleaned pairs.
    """
    if not samples:
        return []
    image_vecs = encoder.encode_images([s.image_path for s in samples])
    flat = [t for s in samples for t in s.texts]
    text_vecs = encoder.encode_texts(flat)
    out, start = [], 0
    for i, sample in enumerate(samples):
        block = text_vecs[start : start + len(sample.texts)]
        start += len(sample.texts)
        order = np.argsort(-(block @ image_vecs[i]), kind="stable")[:keep]
        out.append(
            TrainSample(image_path=sample.image_path, texts=[sample.texts[j] for j in order])
        )
    return out


def label_precision(
    samples: Sequence[TrainSample],
    image_id_of: Callable[[str], str],
    describes: Callable[[str, str], bool],
    has_concept: Callable[[str], bool],
    sentence_id: Callable[[str], str],
) -> float:
    """Fraction of training texts that describe their image (ground truth), over labelled images."""
    flags = [
        describes(image_id_of(s.image_path), sentence_id(t))
        for s in samples
        if has_concept(image_id_of(s.image_path))
        for t in s.texts
    ]
    return float(np.mean(flags)) if flags else float("nan")
