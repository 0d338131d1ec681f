"""The storage root as a Dagster resource."""

import os
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from realsyn_assets.resources.home import Home


class StorageResource(dg.ConfigurableResource):
    """REALSYN_HOME: every output path is derived from it (empty = $REALSYN_HOME or ./realsyn_home)."""

    home: str = ""
    allow_download: bool = False  # fetch http(s) image URLs (bounded by timeout and size)
    download_timeout_s: float = 10.0
    max_image_bytes: int = 50 * 2**20
    workers: int = 0  # processes for image decoding; 0 = number of CPU cores

    @property
    def layout(self) -> Home:
        return Home(self.home or None)

    def cpu_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    def shard_files(
        self, asset: str, keys: list[str] | None = None, suffix: str = ".parquet"
    ) -> list[Path]:
        """Existing per-shard outputs of an asset, in shard registration order."""
        home = self.layout
        order = keys if keys is not None else home.shard_order()
        paths = [home.partition_file(asset, key, suffix) for key in order]
        return [path for path in paths if path.exists()]

    def read_shards(
        self, asset: str, keys: list[str] | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        """Concatenate an asset's per-shard tables (registered shards only, registration order)."""
        tables = [pq.read_table(path, columns=columns) for path in self.shard_files(asset, keys)]
        if not tables:
            raise FileNotFoundError(f"no materialized shards of {asset} under {self.layout.root}")
        return pa.concat_tables(tables, promote_options="default")
