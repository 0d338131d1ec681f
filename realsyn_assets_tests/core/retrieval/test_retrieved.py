"""core/retrieval/retrieved.py: kept images, the three retrieval modes over a stored clustering,
the output table and the sampled recall against exact search."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.core.retrieval import clustering, retrieved
from realsyn_assets.core.retrieval.index import RetrievalResult
from realsyn_assets.core.retrieval.search import retrieve_exact


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_kept_rows_filters_rows_and_vectors():
    rows = pa.table({"image_id": ["a", "b", "c", "a"], "shard": ["s1", "s1", "s1", "s2"]})
    matrix = np.arange(8, dtype=np.float32).reshape(4, 2)
    dedup = pa.table(
        {
            "image_id": ["a", "b", "c", "a"],
            "shard": ["s1", "s1", "s1", "s2"],
            "kept": [True, False, True, False],
        }
    )
    kept, vecs = retrieved.kept_rows(rows, matrix, dedup, "image_id")
    assert kept.column("image_id").to_pylist() == ["a", "c"]
    np.testing.assert_array_equal(vecs, matrix[[0, 2]])
    none, empty = retrieved.kept_rows(rows.slice(0, 0), matrix[:0], dedup, "image_id")
    assert none.num_rows == 0 and empty.shape == (0, 2)


@pytest.fixture
def store(tmp_path, cluster_and_save) -> clustering.StoredClustering:
    rng = np.random.default_rng(0)
    n, d = 60, 6
    vecs = _unit(rng.normal(size=(n, d)))
    members = pa.table(
        {
            "sentence_id": [f"s{i}" for i in range(n)],
            "shard": ["x"] * n,
            "doc_id": [f"d{i % 4}" for i in range(n)],
            "position": pa.array([i % 3 for i in range(n)], pa.int32()),
            "text": [f"sentence {i}" for i in range(n)],
        }
    )
    cluster_and_save(members, vecs, tmp_path, n_clusters=3, niter=5)
    return clustering.StoredClustering.open(tmp_path)


def _images(n: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    images = pa.table(
        {
            "image_id": [f"i{i}" for i in range(n)],
            "shard": ["x"] * n,
            "doc_id": [f"d{i % 5}" for i in range(n)],  # d4 has no sentences
            "position": pa.array([0] * n, pa.int32()),
            "path": [f"i{i}.jpg" for i in range(n)],
        }
    )
    return images, _unit(np.random.default_rng(seed).normal(size=(n, 6)))


def test_modes_and_output_table(store):
    images, vecs = _images(10, 1)
    exact, probing = retrieved.retrieve_images(
        store, "exact", images, vecs, k=3, n_probe=1, adaptive_probing=True
    )
    assert probing == {}
    expected = retrieve_exact(vecs, np.asarray(store.vectors), k=3)
    np.testing.assert_array_equal(exact.indices, expected.indices)
    hier, _ = retrieved.retrieve_images(
        store, "hierarchical", images, vecs, k=3, n_probe=3, adaptive_probing=False
    )
    np.testing.assert_array_equal(hier.indices, expected.indices)  # every cluster probed
    assert retrieved.sampled_recall_against_exact(
        hier, images.column("image_id").to_pylist(), vecs, store.vectors, 3, 5
    ) == pytest.approx(1.0)
    in_doc, _ = retrieved.retrieve_images(
        store, "in_document", images, vecs, k=3, n_probe=1, adaptive_probing=True
    )
    table = retrieved.retrieved_table(images, store.members, in_doc, 3)
    assert table.column_names[:9] == [
        "image_id",
        "shard",
        "doc_id",
        "position",
        "path",
        "text1",
        "text1_id",
        "text1_doc_id",
        "text1_position",
    ]
    assert table.column_names[-1] == "n_texts" and table.num_rows == 10
    rows = table.to_pylist()
    for row in rows:
        if row["doc_id"] == "d4":  # no sentence of its own document: nulls, NaN and 0 texts
            assert row["text1"] is None and np.isnan(row["text1_score"]) and row["n_texts"] == 0
        else:
            assert row["text1_doc_id"] == row["doc_id"] and row["n_texts"] == 3
    with pytest.raises(ValueError, match="retrieval mode"):
        retrieved.retrieve_images(
            store, "nearest", images, vecs, k=3, n_probe=1, adaptive_probing=True
        )


def test_mean_top1_score():
    result = RetrievalResult(np.array([[0], [1]]), np.array([[0.5], [0.25]], np.float32))
    assert retrieved.mean_top1_score(result, 2) == pytest.approx(0.375)
    assert retrieved.mean_top1_score(result, 0) == 0.0
