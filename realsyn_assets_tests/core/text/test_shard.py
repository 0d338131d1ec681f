"""Tests for realsyn_assets.core.text.shard: one shard's text blocks -> kept / rejected sentences."""

from __future__ import annotations

import pyarrow as pa

from realsyn_assets.core.ids import DUPLICATE_IN_SHARD, sentence_id
from realsyn_assets.core.text.cat import REJECT_NO_ACTION
from realsyn_assets.core.text.sentences import REJECT_TOO_SHORT, SentenceFilterConfig
from realsyn_assets.core.text.shard import (
    KEPT_SENTENCE_SCHEMA,
    REJECTED_SENTENCE_SCHEMA,
    CatFilter,
    extract_sentences,
)

DOG = "A brown dog runs across the green park."
BLOCKS = [f"{DOG} It is a list of songs.", f"Hello. {DOG}"]


def _docs() -> pa.Table:
    rows = [
        {"doc_id": "doc_1", "position": 0, "kind": "text", "text": BLOCKS[0]},
        {"doc_id": "doc_1", "position": 1, "kind": "image", "text": None},
        {"doc_id": "doc_2", "position": 0, "kind": "text", "text": BLOCKS[1]},
    ]
    schema = pa.schema(
        [
            ("doc_id", pa.string()),
            ("position", pa.int32()),
            ("kind", pa.string()),
            ("text", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def test_rules_cat_and_in_shard_duplicates():
    tables = extract_sentences(_docs(), "s0", SentenceFilterConfig())
    assert tables.text_blocks == 2
    assert tables.kept.schema == KEPT_SENTENCE_SCHEMA
    assert tables.rejected.schema == REJECTED_SENTENCE_SCHEMA
    kept = tables.kept.to_pylist()
    assert [(r["doc_id"], r["sent_index"], r["n_words"]) for r in kept] == [("doc_1", 0, 8)]
    assert kept[0]["sentence_id"] == sentence_id(DOG)
    rejected = [(r["doc_id"], r["sent_index"], r["reason"]) for r in tables.rejected.to_pylist()]
    assert rejected == [
        ("doc_1", 1, REJECT_NO_ACTION),
        ("doc_2", 0, REJECT_TOO_SHORT),
        ("doc_2", 1, DUPLICATE_IN_SHARD),
    ]


def test_without_the_cat_filter_only_rules_and_duplicates_reject():
    tables = extract_sentences(_docs(), "s0", SentenceFilterConfig(min_words=1), cat=None)
    assert tables.kept.column("text").to_pylist() == [DOG, "It is a list of songs.", "Hello."]
    assert tables.rejected.column("reason").to_pylist() == [DUPLICATE_IN_SHARD]


def test_cat_settings_are_passed_on():
    strict = extract_sentences(_docs(), "s0", SentenceFilterConfig(), CatFilter(min_complexity=4))
    assert strict.kept.num_rows == 0
