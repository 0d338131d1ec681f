"""Issue 18, failure 3: an empty shard must not break the LanceDB tables. Reading a shard of a
table that does not exist yet gives zero rows, and writing a shard's zero rows creates the table
with its schema (so a check or a later shard finds it)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from realsyn_assets.resources import HomeResource, VectorStoreResource
from realsyn_assets.resources.vectors import table_vectors, vectors_column


def _store(tmp_path) -> VectorStoreResource:
    return VectorStoreResource(home=HomeResource(path=str(tmp_path)))


def _rows(shard: str, n: int, dim: int = 4) -> pa.Table:
    vecs = np.eye(max(n, 1), dim, dtype=np.float32)[:n]
    return pa.table(
        {
            "image_id": pa.array([f"{shard}-{i}" for i in range(n)], pa.string()),
            "shard": pa.array([shard] * n, pa.string()),
            "vector": vectors_column(vecs.reshape(-1, dim)),
        }
    )


def test_fault_missing_vector_table_reads_as_zero_rows(tmp_path):
    store = _store(tmp_path)
    rows = store.read("images", shards=["empty"], columns=["image_id", "vector"])
    assert rows.num_rows == 0
    assert rows.column_names == ["image_id", "vector"]
    assert table_vectors(rows).shape[0] == 0
    meta, matrix = store.shard_matrix("images", ["empty"])
    assert meta.num_rows == 0 and matrix.shape[0] == 0
    assert store.version("images") == 0


def test_fault_zero_rows_create_the_table_with_its_schema(tmp_path):
    store = _store(tmp_path)
    empty = _rows("empty", 0)
    assert store.replace_shard("images", "empty", empty) > 0  # a table version: it exists now
    rows = store.read("images", shards=["empty"])
    assert rows.num_rows == 0
    assert rows.schema.equals(empty.schema)
    # a later shard with rows joins the same table; rewriting the empty shard removes nothing
    store.replace_shard("images", "full", _rows("full", 3))
    store.replace_shard("images", "empty", empty)
    assert store.read("images", shards=["full"]).num_rows == 3
    assert store.read("images", shards=["empty"]).num_rows == 0
    assert store.read("images").num_rows == 3
    # a shard that turned empty on a rerun loses its old rows
    store.replace_shard("images", "full", _rows("full", 0))
    assert store.read("images").num_rows == 0
