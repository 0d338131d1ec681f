"""The incremental dedup decision (core/dedup/incremental.py): stages in order, earlier shards win,
the first stage that removes an item names its reason."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from realsyn_assets.core.dedup.incremental import (
    EXACT_DUPLICATE,
    PERCEPTUAL_DUPLICATE,
    SEMANTIC_DUPLICATE,
    decide,
    duplicate_of,
    exact_pairs,
    exact_stage,
    merge_reasons,
    offset_query_pairs,
    perceptual_stage,
    phash_values,
    row_index,
    semantic_stage,
    shards_before,
    text_signatures,
)
from realsyn_assets.core.semantic_filter.entropy import REJECT_LOW_ENTROPY


def test_shards_before():
    assert shards_before(["a", "b", "c"], "c") == ["a", "b"]
    assert shards_before(["a", "b", "c"], "a") == []
    assert shards_before(["a", "b"], "z") == ["a", "b"]  # unregistered: compare with all


def test_exact_and_offset_pairs():
    assert exact_pairs(["x", "y"], ["y", "z", "x"]).tolist() == [[2, 1], [4, 0]]
    assert exact_pairs([], ["a"]).shape == (0, 2)
    # query row 0 is global row 2: its self pair (2, 2) is dropped
    pairs = offset_query_pairs(np.array([[0, 2], [0, 1], [1, 0]]), 2)
    assert pairs.tolist() == [[2, 1], [3, 0]]
    assert offset_query_pairs(np.zeros((0, 2)), 5).shape == (0, 2)


def test_decide_first_stage_names_the_reason_and_earlier_items_win():
    # earlier: e0, e1; current: c0 (same id as e1), c1 (near e0), c2 (near c1), c3 (alone)
    hashes = np.array([0b0000, 0b1111_0000, 0b1111_0000, 0b0001, 0b0011, 0xFF00], np.uint64)
    vectors = np.eye(6, dtype=np.float32)
    vectors[5] = vectors[0]  # c3 has e0's embedding
    stages = [
        exact_stage(["e0", "e1"], ["e1", "c1", "c2", "c3"]),
        perceptual_stage(hashes, 2, 1),
        semantic_stage(vectors, 2, 0.99),
    ]
    keep, reasons, rep = decide(2, 4, stages)
    assert keep.tolist() == [False, False, False, False]
    assert reasons == [
        EXACT_DUPLICATE,
        PERCEPTUAL_DUPLICATE,
        PERCEPTUAL_DUPLICATE,
        SEMANTIC_DUPLICATE,
    ]
    all_ids = ["e0", "e1", "e1", "c1", "c2", "c3"]
    assert duplicate_of(all_ids, keep, rep) == ["e1", "e0", "e0", "e0"]


def test_decide_without_pairs_keeps_everything():
    keep, reasons, rep = decide(1, 2, [exact_stage(["a"], ["b", "c"])])
    assert keep.tolist() == [True, True] and reasons == [None, None]
    assert duplicate_of(["a", "b", "c"], keep, rep) == [None, None]


def test_merge_reasons_first_filter_wins():
    keep, reasons = merge_reasons(
        [REJECT_LOW_ENTROPY, None, None], [EXACT_DUPLICATE, EXACT_DUPLICATE, None]
    )
    assert reasons == [REJECT_LOW_ENTROPY, EXACT_DUPLICATE, None]
    assert keep.dtype == bool and keep.tolist() == [False, False, True]


def test_phash_values_and_row_index():
    table = pa.table({"phash": pa.array([-1, 5], pa.int64())})
    assert phash_values(table).tolist() == [2**64 - 1, 5]
    assert phash_values(None).dtype == np.uint64 and len(phash_values(table.slice(0, 0))) == 0
    index = row_index([("s1", "a"), ("s1", "b"), ("s2", "a")], [("s2", "a"), ("s1", "x")])
    assert index.tolist() == [2, -1]


def test_text_signatures_stored_once_and_reused(tmp_path):
    path = tmp_path / "shard.minhash.npy"
    made = text_signatures(path, ["a dog runs in the park", "a cat sleeps"])
    assert path.exists() and made.shape == (2, 64)

    def never() -> list[str]:
        raise AssertionError("stored signatures must be reused")

    np.testing.assert_array_equal(text_signatures(path, read_texts=never), made)
    other = tmp_path / "other.minhash.npy"
    from_reader = text_signatures(other, read_texts=lambda: ["a dog runs in the park"])
    np.testing.assert_array_equal(from_reader, made[:1])
