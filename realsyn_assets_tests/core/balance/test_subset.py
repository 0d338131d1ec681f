"""Tests for core/balance/subset.py: the held-out split and the lineage join of a subset."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.core.balance.subset import (
    EVAL_SPLIT,
    SOURCE_COLUMNS,
    SYNTHETIC_COLUMNS,
    TRAIN_SPLIT,
    MissingRowsError,
    eval_split,
    split_rows,
    split_size,
    subset_rows,
    with_split,
)


def test_eval_split_is_by_hash_and_holds_out_at_least_min_count():
    ids = [f"image-{i}" for i in range(200)]
    split = eval_split(ids, fraction=0.0, min_count=16)
    assert split.count(EVAL_SPLIT) == 16 and split.count(TRAIN_SPLIT) == 184
    # the same image gets the same split in any subset that contains it
    reordered = eval_split(ids[::-1], fraction=0.0, min_count=16)
    assert dict(zip(ids, split, strict=True)) == dict(zip(ids[::-1], reordered, strict=True))
    assert eval_split(ids, fraction=1.0) == [EVAL_SPLIT] * 200
    assert eval_split([], 0.05) == []


def _tables():
    ids, shards = ["b", "a", "c"], ["s1", "s0", "s0"]
    assignments = pa.table(
        {
            "image_id": ids,
            "shard": shards,
            "syn_score": [0.5, 0.6, 0.7],
            "in_window": [True, True, False],
            "cluster": [1, 0, -1],
        }
    )
    retrieved = pa.table(
        {
            "image_id": ["a", "b", "c"],
            "shard": ["s0", "s1", "s0"],
            "text1": ["ta", "tb", "tc"],
            "doc_id": ["da", "db", "dc"],
            "position": [1, 2, 3],
            "path": ["pa", "pb", "pc"],
        }
    )
    synthetic = pa.table(
        {"image_id": ids, "shard": shards, "syn_text": ["sb", "sa", "sc"], "tags": ["x", "y", "z"]}
    )
    sources = pa.table({"image_id": ids, "shard": shards, "source_ref": ["ub", "ua", "uc"]})
    return assignments, retrieved, synthetic, sources


def test_subset_rows_sorted_joined_and_renamed():
    assignments, retrieved, synthetic, sources = _tables()
    assert synthetic.column_names == SYNTHETIC_COLUMNS
    assert sources.column_names == SOURCE_COLUMNS
    table = subset_rows(assignments, np.array([0, 1]), retrieved, synthetic, sources)
    assert table.column_names == [
        "image_id",
        "shard",
        "cluster",
        "syn_score",
        "text1",
        "image_doc_id",
        "image_position",
        "image_path",
        "syn_text",
        "tags",
        "raw_image_url",
    ]
    assert table.column("image_id").to_pylist() == ["a", "b"]
    assert table.column("text1").to_pylist() == ["ta", "tb"]
    assert table.column("syn_text").to_pylist() == ["sa", "sb"]
    assert table.column("raw_image_url").to_pylist() == ["ua", "ub"]


def test_subset_rows_names_the_stale_upstream():
    assignments, retrieved, synthetic, sources = _tables()
    with pytest.raises(MissingRowsError, match="retrieved_texts"):
        subset_rows(assignments, np.array([0, 1]), retrieved.slice(0, 1), synthetic, sources)


def test_split_helpers():
    table = with_split(pa.table({"image_id": [f"i{k}" for k in range(40)]}), 0.0, 5)
    assert split_size(table, EVAL_SPLIT) == 5 and split_size(table, TRAIN_SPLIT) == 35
    assert split_rows(table, EVAL_SPLIT).num_rows == 5
