"""Shared storage: LanceDB may live outside the home (another folder, or an object store), set by
the vectors resource's `uri` or by $REALSYN_LANCEDB_URI for every process of a deployment."""

from __future__ import annotations

import dagster as dg
import lancedb
import numpy as np
import pyarrow as pa

from realsyn_assets.assets import ALL_ASSETS
from realsyn_assets.definitions import SHARD_INGEST_ASSETS
from realsyn_assets.names import Asset
from realsyn_assets.resources import HomeResource
from realsyn_assets.resources.vectors import LANCEDB_URI_ENV, VectorStoreResource, vectors_column
from realsyn_assets_tests.assets.tiny_home_c import home_resources, tiny_home


def _rows(shard: str, n: int = 3) -> pa.Table:
    vectors = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    return pa.table(
        {"shard": [shard] * n, "item": list(range(n)), "vector": vectors_column(vectors)}
    )


def test_uri_names_another_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(LANCEDB_URI_ENV, raising=False)
    home, elsewhere = tmp_path / "home", tmp_path / "shared" / "vectors"
    store = VectorStoreResource(home=HomeResource(path=str(home)), uri=str(elsewhere))
    store.replace_shard("images", "a", _rows("a"))
    assert store.location == str(elsewhere)
    assert lancedb.connect(str(elsewhere)).open_table("images").count_rows() == 3
    assert not (home / "lancedb").exists()
    assert store.read("images", shards=["a"]).num_rows == 3


def test_environment_names_the_location_and_uri_wins(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv(LANCEDB_URI_ENV, str(tmp_path / "from_env"))
    store = VectorStoreResource(home=HomeResource(path=str(home)))
    store.replace_shard("sentences", "b", _rows("b", 2))
    assert lancedb.connect(str(tmp_path / "from_env")).open_table("sentences").count_rows() == 2
    explicit = VectorStoreResource(home=HomeResource(path=str(home)), uri=str(tmp_path / "mine"))
    assert explicit.location == str(tmp_path / "mine")
    monkeypatch.delenv(LANCEDB_URI_ENV)
    assert VectorStoreResource(home=HomeResource(path=str(home))).location == str(home / "lancedb")


def test_storage_options_reach_lancedb(tmp_path, monkeypatch):
    seen = []
    real = lancedb.connect

    def spy(uri, **kwargs):
        seen.append((uri, kwargs.get("storage_options")))
        return real(uri, **kwargs)

    monkeypatch.setattr(lancedb, "connect", spy)
    options = {"timeout": "30s"}
    store = VectorStoreResource(uri=str(tmp_path / "v"), storage_options=options)
    store.replace_shard("images", "a", _rows("a"))
    assert seen and seen[0] == (str(tmp_path / "v"), options)


def test_assets_write_embeddings_where_the_uri_says(tmp_path, monkeypatch):
    monkeypatch.delenv(LANCEDB_URI_ENV, raising=False)
    with tiny_home(tmp_path, monkeypatch) as (layout, key, instance):
        elsewhere = tmp_path / "object-store-stand-in"
        resources = home_resources(layout.root)
        resources["vectors"] = VectorStoreResource(home=resources["home"], uri=str(elsewhere))
        wanted = {dg.AssetKey(a) for a in SHARD_INGEST_ASSETS}
        result = dg.materialize(
            [a for a in ALL_ASSETS if set(a.keys) & wanted],
            partition_key=key,
            resources=resources,
            instance=instance,
            selection=list(wanted),
        )
        assert result.success
        images = lancedb.connect(str(elsewhere)).open_table("images").to_arrow()
        assert set(images.column("shard").to_pylist()) == {key} and images.num_rows > 0
        assert Asset.IMAGE_EMBEDDINGS in SHARD_INGEST_ASSETS
        assert not (layout.root / "lancedb").exists()
