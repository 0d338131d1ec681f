"""Per-stage quality metrics in a DuckDB file: counts in/out and rejections by reason.

DuckDB allows one writing process per file, and Dagster may run shards in parallel processes,
so every access takes an inter-process file lock and closes the connection at once. On a
cluster, point `path` at shared storage or switch to per-partition parquet that DuckDB reads.
"""

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from realsyn_assets.resources.home import file_lock
from realsyn_assets.resources.home_resource import HomeBasedResource

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stage_counts (
    stage VARCHAR, partition VARCHAR, metric VARCHAR, value DOUBLE,
    updated_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS rejections (
    stage VARCHAR, partition VARCHAR, reason VARCHAR, count BIGINT,
    updated_at TIMESTAMP DEFAULT current_timestamp
);
"""


class MetricsResource(HomeBasedResource):
    """DuckDB metrics store at <home>/metrics.duckdb unless `path` is given."""

    path: str = Field("", description="DuckDB file of the metrics; empty = <home>/metrics.duckdb.")

    @property
    def db_path(self) -> Path:
        return Path(self.path) if self.path else self.layout.metrics_db

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        import duckdb

        path = self.db_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(path.name + ".lock")):
            con = duckdb.connect(str(path))
            try:
                con.execute(_SCHEMA)
                yield con
            finally:
                con.close()

    def record(
        self,
        stage: str,
        partition: str,
        counts: Mapping[str, float],
        rejections: Mapping[str, int] | None = None,
    ) -> None:
        """Replace this stage+partition's rows (a rerun never appends twice)."""
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(
                "DELETE FROM stage_counts WHERE stage=? AND partition=?", [stage, partition]
            )
            con.execute("DELETE FROM rejections WHERE stage=? AND partition=?", [stage, partition])
            if counts:
                con.executemany(
                    "INSERT INTO stage_counts (stage, partition, metric, value) VALUES (?, ?, ?, ?)",
                    [[stage, partition, k, float(v)] for k, v in counts.items()],
                )
            if rejections:
                con.executemany(
                    "INSERT INTO rejections (stage, partition, reason, count) VALUES (?, ?, ?, ?)",
                    [[stage, partition, k, int(v)] for k, v in rejections.items()],
                )
            con.execute("COMMIT")

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()

    def counts(self, stage: str, partition: str) -> dict[str, float]:
        rows = self.query(
            "SELECT metric, value FROM stage_counts WHERE stage=? AND partition=?",
            [stage, partition],
        )
        return dict(rows)

    def rejection_counts(self, stage: str, partition: str | None = None) -> dict[str, int]:
        if partition is None:
            rows = self.query(
                "SELECT reason, sum(count) FROM rejections WHERE stage=? GROUP BY reason", [stage]
            )
        else:
            rows = self.query(
                "SELECT reason, count FROM rejections WHERE stage=? AND partition=?",
                [stage, partition],
            )
        return {reason: int(n) for reason, n in rows}

    def total(self, stage: str, metric: str, partitions: list[str] | None = None) -> float:
        sql = "SELECT coalesce(sum(value), 0) FROM stage_counts WHERE stage=? AND metric=?"
        params: list = [stage, metric]
        if partitions is not None:
            if not partitions:
                return 0.0
            sql += f" AND partition IN ({', '.join('?' * len(partitions))})"
            params += partitions
        return float(self.query(sql, params)[0][0])
