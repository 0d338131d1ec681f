"""The storage root as a Dagster resource: per-shard files of every asset under REALSYN_HOME."""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from realsyn_assets.core.balance import subset as subset_core
from realsyn_assets.core.balance.files import SUBSET_FILE
from realsyn_assets.core.io import read_table, resolve_column
from realsyn_assets.names import Asset
from realsyn_assets.resources.home_resource import HomeBasedResource


class StorageResource(HomeBasedResource):
    """Every output path is derived from the home (`layout`); also where images may be read."""

    max_image_bytes: int = Field(
        50 * 2**20,
        description="Largest local image file read, in bytes (downloads: image_downloads' "
        "max_bytes).",
    )
    allowed_image_roots: list[str] = Field(
        [],
        description="Folders besides a shard file's own folder that its documents' local image "
        "paths may be read from (absolute, or relative to the home). Empty = only the shard's "
        "folder; any other path, a symlink leading elsewhere, or a device/FIFO/socket/folder is "
        "rejected (outside_corpus, symlink_outside_corpus, not_a_regular_file) without opening it.",
    )
    workers: int = Field(0, description="Processes for image decoding; 0 = number of CPU cores.")

    def cpu_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    def image_roots(self, key: str) -> tuple[Path, list[Path]]:
        """(the registered shard file's folder, the allowed image roots) for one shard: the only
        places its local image references are read from."""
        home = self.layout
        base = Path(home.shard(key).path).parent
        return base, [home.root / Path(root).expanduser() for root in self.allowed_image_roots]

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

    def subset_split(self, scale: str, split: str) -> pa.Table:
        """The rows of the scale's balanced subset in `split`, image paths resolved."""
        path = self.layout.asset_dir(Asset.BALANCED_SUBSET) / scale / SUBSET_FILE
        table = subset_core.split_rows(read_table(path), split)
        return resolve_column(table, "image_path", self.layout.root)
