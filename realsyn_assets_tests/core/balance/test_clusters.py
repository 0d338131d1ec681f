"""Tests for core/balance/clusters.py: cosine window + image k-means."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.core.balance.clusters import (
    assignments,
    cluster_window,
    pair_rows,
    pair_similarities,
)


def test_pair_rows_finds_each_pair_in_the_matrix():
    rows = pa.table({"shard": ["s0", "s1", "s0"], "image_id": ["a", "a", "b"]})
    pairs = pa.table({"shard": ["s0", "s0", "s1"], "image_id": ["b", "a", "a"]})
    assert pair_rows(rows, pairs).tolist() == [2, 0, 1]
    with pytest.raises(KeyError):
        pair_rows(rows, pa.table({"shard": ["s9"], "image_id": ["a"]}))


def test_cluster_window_labels_only_pairs_inside_the_window():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = pa.table(
        {
            "image_id": [f"i{k}" for k in range(40)],
            "syn_score": np.linspace(0.0, 1.0, 40).astype(np.float32),
        }
    )
    sims = pair_similarities(pairs)
    assert sims.dtype == np.float32
    found = cluster_window(vectors, np.arange(40)[::-1], sims, (0.25, 0.75), 4, 10, seed=0)
    assert found.n_clusters == 4
    assert found.in_window.sum() == ((sims >= 0.25) & (sims <= 0.75)).sum()
    assert (found.labels[~found.in_window] == -1).all()
    assert set(found.labels[found.in_window]) <= set(range(4))
    table = assignments(pairs, found)
    assert table.column_names[-2:] == ["in_window", "cluster"]
    with pytest.raises(ValueError, match="cosine window"):
        cluster_window(vectors, np.arange(40), sims, (2.0, 3.0), 0, 10, seed=0)
