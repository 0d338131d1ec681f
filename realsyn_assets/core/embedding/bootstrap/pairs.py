"""(image, candidate sentences) pairs for the bootstrap encoder.

Mined from page order (the nearest text blocks), re-selected among an image's own candidates or
retrieved from the whole corpus with a model of an earlier round, and subsampled to fit memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from realsyn_assets.core.ids import sentence_id
from realsyn_assets.core.retrieval.search import retrieve_exact
from realsyn_assets.core.training.clip import TrainSample


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


def subsample_pairs(samples: Sequence[TrainSample], max_pairs: int, seed: int) -> list[TrainSample]:
    """At most ``max_pairs`` pairs (0 = all): a random subset, kept in mining order.

    Why: the trainer holds every decoded image in memory.
    """
    if max_pairs and len(samples) > max_pairs:
        keep = np.random.default_rng(seed).choice(len(samples), max_pairs, False)
        return [samples[i] for i in sorted(keep)]
    return list(samples)


def reselect_pairs(encoder, samples: Sequence[TrainSample], keep: int = 1) -> list[TrainSample]:
    """Keep each image's `keep` best-matching nearby sentences under a first-round encoder.

    The nearest text blocks usually hold the describing sentence, but mixed with other
    sentences, so first-round labels are noisy. Re-selecting among an image's own candidates
    with the first-round model cleans them, in the spirit of MMC4's in-document assignment; a
    second round trains on the cleaned pairs.
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


def retrieved_pairs(
    encoder, samples: Sequence[TrainSample], corpus_texts: Sequence[str], keep: int = 1
) -> list[TrainSample]:
    """Each image's ``keep`` most similar sentences of the whole corpus under ``encoder``."""
    if not samples or not corpus_texts:
        return []
    image_vecs = encoder.encode_images([s.image_path for s in samples])
    text_vecs = encoder.encode_texts(list(corpus_texts))
    top = retrieve_exact(image_vecs, text_vecs, k=keep).indices
    return [
        TrainSample(s.image_path, [corpus_texts[j] for j in row])
        for s, row in zip(samples, top, strict=True)
    ]


def nearest_sentence_ids(
    samples: Sequence[TrainSample], image_paths: Sequence[str]
) -> list[list[str | None]]:
    """Per image, the id of its nearest mined sentence ([None] without a pair): the in-document
    baseline (MMC4-style assignment without a model) that the bootstrap is compared with."""
    nearest = {s.image_path: s.texts[0] for s in samples}
    return [[sentence_id(nearest[p])] if p in nearest else [None] for p in image_paths]
