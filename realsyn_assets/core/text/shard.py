"""One shard's text blocks -> the kept and rejected sentence tables of `extracted_sentences`.

Each text block is split into sentences (Punkt) and every sentence passes, in order: the rule
filters (`core.text.sentences`: empty, URL, emoji, word-count window), the CAT caption filter
(`core.text.cat`: complexity and an action) and an in-shard exact-duplicate check (same sentence
id = same normalised text; only the first copy is kept). Every sentence ends in exactly one of the
two tables, a rejected one with the first rule it failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.ids import DUPLICATE_IN_SHARD, sentence_id
from realsyn_assets.core.text.cat import cat_rejection
from realsyn_assets.core.text.sentences import (
    SentenceFilterConfig,
    count_words,
    split_and_filter_blocks,
)

KEPT_SENTENCE_SCHEMA = pa.schema(
    [
        ("sentence_id", pa.string()),
        ("shard", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("sent_index", pa.int32()),
        ("text", pa.string()),
        ("n_words", pa.int32()),
    ]
)
REJECTED_SENTENCE_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("sent_index", pa.int32()),
        ("text", pa.string()),
        ("reason", pa.string()),
    ]
)

# The columns of a `raw_documents` table that sentence extraction reads.
DOCUMENT_COLUMNS = ["doc_id", "position", "kind", "text"]


@dataclass(frozen=True)
class CatFilter:
    """The CAT caption filter's settings; the paper keeps complexity >= C1 with an action."""

    min_complexity: int = 1
    require_action: bool = True


@dataclass
class SentenceTables:
    kept: pa.Table  # KEPT_SENTENCE_SCHEMA
    rejected: pa.Table  # REJECTED_SENTENCE_SCHEMA
    text_blocks: int  # text blocks read


def extract_sentences(
    docs: pa.Table,
    shard: str,
    rules: SentenceFilterConfig,
    cat: CatFilter | None = CatFilter(),  # noqa: B008 - frozen, immutable
    workers: int = 1,
) -> SentenceTables:
    """Kept and rejected sentences of the text blocks of `docs` (`DOCUMENT_COLUMNS` of a
    `raw_documents` table), in page order. `cat=None` skips the CAT filter."""
    rows = docs.filter(pc.equal(docs.column("kind"), "text")).to_pylist()
    split = split_and_filter_blocks([row["text"] for row in rows], rules, workers=workers)
    kept_rows, rejected_rows, seen = [], [], set()
    for b, row in enumerate(rows):
        for index, (sentence, reason) in enumerate(split.block(b)):
            base = {
                "shard": shard,
                "doc_id": row["doc_id"],
                "position": row["position"],
                "sent_index": index,
                "text": sentence,
            }
            if reason is None and cat is not None:
                reason = cat_rejection(sentence, cat.min_complexity, cat.require_action)
            sid = sentence_id(sentence)
            if reason is None and sid in seen:
                reason = DUPLICATE_IN_SHARD
            if reason is not None:
                rejected_rows.append({**base, "reason": reason})
                continue
            seen.add(sid)
            kept_rows.append({**base, "sentence_id": sid, "n_words": count_words(sentence)})
    return SentenceTables(
        kept=pa.Table.from_pylist(kept_rows, schema=KEPT_SENTENCE_SCHEMA),
        rejected=pa.Table.from_pylist(rejected_rows, schema=REJECTED_SENTENCE_SCHEMA),
        text_blocks=len(rows),
    )
