"""The sentences a configured encoder's same-document retrieval is scored against.

Scoring against every kept sentence costs one text forward pass per sentence: on a real corpus
(millions of sentences, a large pretrained model) that is the whole embedding stage again, only
to produce one number. The statistic needs far fewer: for each scored image, the sentences of its
own document (where a hit counts) plus enough sentences of other documents to make a miss
likely for an encoder that knows nothing. So the pool is every sentence of the sampled images'
documents plus a seeded uniform sample of the rest, up to a cap; `same_document_chance` computed
on the same pool stays the matching bar.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def scoring_pool(image_rows: Sequence[dict], sentences: pa.Table, cap: int, seed: int) -> pa.Table:
    """`sentences` (with `doc_id`) when at most `cap` rows (or `cap` <= 0), else every sentence
    of the documents of `image_rows` plus a seeded sample of the other sentences filling the
    pool up to `cap` rows, in their original order. The own-document sentences are always kept,
    even past the cap: dropping any would change what a hit means."""
    if cap <= 0 or sentences.num_rows <= cap:
        return sentences
    documents = pa.array(sorted({str(r["doc_id"]) for r in image_rows}), pa.string())
    own_mask = pc.is_in(sentences.column("doc_id").cast(pa.string()), value_set=documents)
    own = np.flatnonzero(own_mask.to_numpy(zero_copy_only=False))
    others = np.setdiff1d(np.arange(sentences.num_rows), own)
    room = min(max(cap - own.size, 0), others.size)
    picked = np.random.default_rng(seed).choice(others, room, replace=False)
    return sentences.take(np.sort(np.concatenate([own, picked])))
