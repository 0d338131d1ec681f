"""The chance level of same-document retrieval: what an encoder that knows nothing scores.

`evaluate_retrieval` counts how often an image's top sentence comes from the image's own
document. Picking a sentence uniformly at random does that with probability (sentences of the
image's document) / (all sentences); the mean over the scored images is the bar an encoder in
use has to clear, with no random-weight model to build (a large pretrained model's random twin
would cost as much as the model).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pyarrow as pa


def same_document_chance(image_rows: Sequence[dict], sentences: pa.Table) -> float:
    """Mean over `image_rows` (each with `doc_id`) of the share of `sentences` (with `doc_id`)
    from that image's document; 0.0 when either is empty."""
    if not image_rows or sentences.num_rows == 0:
        return 0.0
    per_document = Counter(sentences.column("doc_id").to_pylist())
    total = sentences.num_rows
    return float(
        sum(per_document.get(r["doc_id"], 0) for r in image_rows) / total / len(image_rows)
    )
