"""A huge text block is rejected whole (`too_long`, with a detail) before sentence splitting,
so one block cannot keep `extracted_sentences` busy for minutes (issue 18, failure 4)."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from realsyn_assets.core.text.sentences import (
    REJECT_TOO_LONG,
    REJECT_TOO_SHORT,
    SentenceFilterConfig,
)
from realsyn_assets.core.text.shard import REJECTED_SENTENCE_SCHEMA, extract_sentences

PROSE = "A brown dog runs across the green park near the old river. "
SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("kind", pa.string()),
        ("text", pa.string()),
    ]
)


def _docs(blocks: list[str]) -> pa.Table:
    rows = [
        {"doc_id": f"d{i}", "position": 0, "kind": "text", "text": text}
        for i, text in enumerate(blocks)
    ]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


@pytest.mark.timeout(120)
def test_bomb_huge_text_block_is_rejected_too_long_before_splitting():
    huge = PROSE * (900_000 // len(PROSE))  # under the document limit, over the block limit
    docs = _docs(["The old man walks along a quiet river in the morning.", huge])
    start = time.perf_counter()
    tables = extract_sentences(docs, "s0", SentenceFilterConfig())
    elapsed = time.perf_counter() - start
    assert tables.text_blocks == 2 and tables.blocks_too_long == 1
    assert tables.rejected.schema == REJECTED_SENTENCE_SCHEMA
    (row,) = [r for r in tables.rejected.to_pylist() if r["doc_id"] == "d1"]
    assert row["reason"] == REJECT_TOO_LONG and row["sent_index"] == -1
    assert f"{len(huge)} characters" in row["detail"] and "100000" in row["detail"]
    assert len(row["text"]) <= 200  # a preview, not the whole block again
    assert tables.kept.column("doc_id").to_pylist() == ["d0"]
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_bomb_block_limit_is_configurable_rows_stay_in_page_order_and_zero_turns_it_off():
    docs = _docs(["Hello there.", PROSE * 40, PROSE])  # 12, 2,400 and 60 characters
    tables = extract_sentences(docs, "s0", SentenceFilterConfig(), max_block_chars=1000)
    reasons = [(r["doc_id"], r["sent_index"], r["reason"]) for r in tables.rejected.to_pylist()]
    assert reasons == [("d0", 0, REJECT_TOO_SHORT), ("d1", -1, REJECT_TOO_LONG)]
    assert tables.blocks_too_long == 1 and tables.text_blocks == 3
    assert tables.kept.column("doc_id").to_pylist() == ["d2"]
    off = extract_sentences(docs, "s0", SentenceFilterConfig(), max_block_chars=0)
    assert off.blocks_too_long == 0
    assert all(r["sent_index"] >= 0 and r["detail"] is None for r in off.rejected.to_pylist())
