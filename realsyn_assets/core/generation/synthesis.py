"""The `synthetic_texts` step for one shard: tags and fusion inputs per image, the generated
texts' image-text cosine (used by semantic balance sampling) and the output table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from realsyn_assets.core.balance.sampling import pair_cosine
from realsyn_assets.core.generation.prompts import FusionInput, TextGenerator
from realsyn_assets.core.generation.tags import TextEncoder, select_tags


def rows_for(ids: Sequence[str], row_ids: Sequence[str], matrix: np.ndarray) -> np.ndarray:
    """The rows of `matrix` (one per `row_ids`) that belong to `ids`, in the order of `ids`."""
    row_of = {iid: r for r, iid in enumerate(row_ids)}
    return matrix[np.array([row_of[i] for i in ids], dtype=np.int64)] if ids else matrix[:0]


def image_tags(
    image_vecs: np.ndarray, tag_vecs: np.ndarray, vocabulary: list[str], k: int
) -> list[list[str]]:
    """The `k` best tags per image (none without a vocabulary)."""
    if vocabulary and len(image_vecs):
        return select_tags(image_vecs, tag_vecs, vocabulary, k=k)
    return [[] for _ in range(len(image_vecs))]


def fuse(
    generator: TextGenerator, realistic_texts: Sequence[str | None], tags: list[list[str]]
) -> list[str]:
    """One synthetic text per image from its top realistic text and its tags (no caption)."""
    items = [
        FusionInput(realistic_text=t or "", caption=None, tags=tg)
        for t, tg in zip(realistic_texts, tags, strict=True)
    ]
    return generator.generate(items) if items else []


def synthetic_scores(encoder: TextEncoder, image_vecs: np.ndarray, texts: list[str]) -> np.ndarray:
    """Cosine between each image and its synthetic text, float32."""
    if not texts:
        return np.zeros(0, np.float32)
    return pair_cosine(image_vecs, encoder.encode_texts(texts))


def synthetic_table(
    image_ids: list[str],
    shard: str,
    tags: list[list[str]],
    texts: list[str],
    scores: np.ndarray,
    generator_name: str,
) -> pa.Table:
    n = len(image_ids)
    return pa.table(
        {
            "image_id": pa.array(image_ids, pa.string()),
            "shard": pa.array([shard] * n, pa.string()),
            "caption": pa.array([None] * n, pa.string()),
            "tags": pa.array(tags, pa.list_(pa.string())),
            "syn_text": pa.array(texts, pa.string()),
            "syn_score": pa.array(np.asarray(scores, dtype=np.float32)),
            "generator": pa.array([generator_name] * n, pa.string()),
        }
    )


def examples(
    realistic_texts: Sequence[str | None], tags: list[list[str]], texts: list[str], n: int = 3
) -> list[dict]:
    """The first `n` (text1, tags, syn_text) triples, for the asset's metadata."""
    rows = zip(realistic_texts, tags, texts, strict=True)
    return [{"text1": t, "tags": tg, "syn_text": s} for t, tg, s in list(rows)[:n]]
