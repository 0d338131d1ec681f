"""One shard's text blocks -> the kept and rejected sentence tables of `extracted_sentences`.

Each text block is split into sentences (Punkt) and every sentence passes, in order: the rule
filters (`core.text.sentences`: empty, URL, emoji, word-count window), the CAT caption filter
(`core.text.cat`: complexity and an action) and an in-shard exact-duplicate check (same sentence
id = same normalised text; only the first copy is kept). Every sentence ends in exactly one of the
two tables, a rejected one with the first rule it failed.

A text block longer than `max_block_chars` is not split at all: it becomes one rejected row
(`too_long`, `sent_index` -1, a preview of its text and a detail), so one huge block cannot keep
the shard busy for minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.ids import DUPLICATE_IN_SHARD, sentence_id
from realsyn_assets.core.text.cat import cat_rejection
from realsyn_assets.core.text.sentences import (
    REJECT_TOO_LONG,
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
        ("text", pa.string()),  # a block rejected whole: its first PREVIEW_CHARS characters
        ("reason", pa.string()),
        ("detail", pa.string()),  # null for a sentence; a block rejected whole says why
    ]
)

# The columns of a `raw_documents` table that sentence extraction reads.
DOCUMENT_COLUMNS = ["doc_id", "position", "kind", "text"]

# A text block longer than this (characters) is rejected whole, before splitting: ~3,000
# sentences, a few seconds of work; a normal web paragraph is far below it.
MAX_BLOCK_CHARS = 100_000
BLOCK_SENT_INDEX = -1  # `sent_index` of a row that rejects a whole block
PREVIEW_CHARS = 200


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
    blocks_too_long: int = 0  # text blocks rejected whole (one rejected row each)


def _block_rejection(row: dict, shard: str, max_chars: int) -> dict:
    text = row["text"]
    return {
        "shard": shard,
        "doc_id": row["doc_id"],
        "position": row["position"],
        "sent_index": BLOCK_SENT_INDEX,
        "text": text[:PREVIEW_CHARS],
        "reason": REJECT_TOO_LONG,
        "detail": f"text block of {len(text)} characters, limit {max_chars}",
    }


def extract_sentences(
    docs: pa.Table,
    shard: str,
    rules: SentenceFilterConfig,
    cat: CatFilter | None = CatFilter(),  # noqa: B008 - frozen, immutable
    workers: int = 1,
    max_block_chars: int = MAX_BLOCK_CHARS,
) -> SentenceTables:
    """Kept and rejected sentences of the text blocks of `docs` (`DOCUMENT_COLUMNS` of a
    `raw_documents` table), in page order. `cat=None` skips the CAT filter; a block longer than
    `max_block_chars` (0 = no limit) is rejected whole, before splitting."""
    blocks = docs.filter(pc.equal(docs.column("kind"), "text")).to_pylist()
    too_long = [
        bool(max_block_chars) and len(row["text"] or "") > max_block_chars for row in blocks
    ]
    texts = [row["text"] for row, long in zip(blocks, too_long, strict=True) if not long]
    split = split_and_filter_blocks(texts, rules, workers=workers)
    kept_rows, rejected_rows, seen = [], [], set()
    b = 0  # index into `split`: the blocks that were split
    for row, long in zip(blocks, too_long, strict=True):
        if long:
            rejected_rows.append(_block_rejection(row, shard, max_block_chars))
            continue
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
        b += 1
    return SentenceTables(
        kept=pa.Table.from_pylist(kept_rows, schema=KEPT_SENTENCE_SCHEMA),
        rejected=pa.Table.from_pylist(rejected_rows, schema=REJECTED_SENTENCE_SCHEMA),
        text_blocks=len(blocks),
        blocks_too_long=sum(too_long),
    )
