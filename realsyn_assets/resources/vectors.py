"""LanceDB tables of embeddings (`images`, `sentences`), one row per item, replaced per shard."""

import contextlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import Field

from realsyn_assets.resources.home import file_lock
from realsyn_assets.resources.home_resource import HomeBasedResource


def vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def table_vectors(table: pa.Table, column: str = "vector") -> np.ndarray:
    """The vector column of an Arrow table as a float32 (n, d) matrix without a Python loop."""
    col = table.column(column).combine_chunks()
    if len(col) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    width = col.type.list_size
    return col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)


def _empty_table(columns: list[str] | None) -> pa.Table:
    """Zero rows of a table that does not exist yet: the asked-for columns (else shard and
    vector), typed null since no schema is known."""
    names = columns if columns is not None else ["shard", "vector"]
    return pa.table({name: pa.array([], pa.null()) for name in names})


# Where every process of a deployment finds LanceDB when the resource's `uri` is empty.
LANCEDB_URI_ENV = "REALSYN_LANCEDB_URI"


class VectorStoreResource(HomeBasedResource):
    """LanceDB at <home>/lancedb unless `uri` (or $REALSYN_LANCEDB_URI) names another folder or
    an object store (`s3://bucket/prefix`, `gs://...`, `az://...`) that workers on several
    machines share (docs/distributed.md)."""

    uri: str = Field(
        "",
        description="LanceDB location: a folder or an object-store URI such as "
        "s3://bucket/prefix; empty = $REALSYN_LANCEDB_URI if set, else <home>/lancedb.",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Passed to lancedb.connect for object stores (e.g. region, endpoint, "
        "allow_http); credentials are better left to the environment (AWS_ACCESS_KEY_ID...).",
    )

    @property
    def location(self) -> str:
        return self.uri or os.environ.get(LANCEDB_URI_ENV) or str(self.layout.lancedb_uri)

    def connect(self):
        import lancedb

        if "://" not in self.location:
            Path(self.location).mkdir(parents=True, exist_ok=True)
        return lancedb.connect(self.location, storage_options=self.storage_options or None)

    def _open(self, db, table_name: str):
        try:
            return db.open_table(table_name)
        except (ValueError, FileNotFoundError):
            return None

    def replace_shard(self, table_name: str, shard: str, data: pa.Table) -> int:
        """Delete the shard's rows, then add the new ones: reruns never duplicate rows.

        A shard with zero rows is valid: the first write creates the table with `data`'s schema
        even when it is empty, so readers and checks find it. Returns the table version after
        the write (recorded as metadata).
        """
        db = self.connect()
        with self._write_lock(table_name):
            table = self._open(db, table_name)
            if table is None:
                return int(db.create_table(table_name, data=data).version)
            table.delete(f"shard = '{shard.replace(chr(39), chr(39) * 2)}'")
            if data.num_rows:
                table.add(data)
            return int(table.version)

    def _write_lock(self, table_name: str):
        """One writer per table at a time on this machine. Two processes that both find no
        table and both create it would each commit a version 1, and the later one silently
        replaces the other's rows (seen with concurrent `realsyn ingest`). Object stores get no
        lock: run one writer per table there (the orchestrator's shard runs on one node)."""
        if "://" in self.location:
            return contextlib.nullcontext()
        return file_lock(Path(self.location) / f".{table_name}.write.lock")

    def read(
        self, table_name: str, shards: list[str] | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        table = self._open(self.connect(), table_name)
        if table is None:  # nothing written to it yet: zero rows, not an error
            return _empty_table(columns)
        lance_ds = table.to_lance()
        flt = None
        if shards is not None:
            if not shards:
                return lance_ds.to_table(columns=columns, limit=0)
            quoted = ", ".join("'" + s.replace("'", "''") + "'" for s in shards)
            flt = f"shard IN ({quoted})"
        return lance_ds.to_table(columns=columns, filter=flt)

    def version(self, table_name: str) -> int:
        table = self._open(self.connect(), table_name)
        return 0 if table is None else int(table.version)

    def shard_matrix(self, table_name: str, shards: list[str]) -> tuple[pa.Table, np.ndarray]:
        """(rows without the vector column, float32 matrix) of some shards of a table."""
        table = self.read(table_name, shards=shards)
        matrix = table_vectors(table) if table.num_rows else np.zeros((0, 1), np.float32)
        return table.drop_columns(["vector"]), matrix
