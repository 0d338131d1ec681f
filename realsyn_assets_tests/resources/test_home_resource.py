"""One home for every resource: set once (constructor, launchpad or $REALSYN_HOME), used by all."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from realsyn_assets.resources import (
    EncoderResource,
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)


def _roots(resources) -> dict[str, Path]:
    return {
        "storage": resources.storage.layout.root,
        "metrics": resources.metrics.db_path.parent,
        "vectors": Path(resources.vectors.location).parent,
        "encoder": resources.encoder.layout.root,
    }


def test_make_resources_share_one_home(tmp_path):
    from realsyn_assets.definitions import make_resources

    with dg.build_resources(make_resources(str(tmp_path / "a"))) as resources:
        assert set(_roots(resources).values()) == {tmp_path / "a"}
    # the launchpad sets the top-level `home` once; every nested use follows
    config = {"home": {"config": {"path": str(tmp_path / "b")}}}
    with dg.build_resources(make_resources(), resource_config=config) as resources:
        assert set(_roots(resources).values()) == {tmp_path / "b"}


def test_empty_home_is_realsyn_home_at_run_time(tmp_path, monkeypatch):
    from realsyn_assets.definitions import make_resources

    monkeypatch.setenv("REALSYN_HOME", str(tmp_path / "env"))
    with dg.build_resources(make_resources()) as resources:
        assert set(_roots(resources).values()) == {tmp_path / "env"}
    # constructed without a home (tests, benchmarks): the same default
    assert StorageResource().layout.root == tmp_path / "env"
    assert MetricsResource().db_path == tmp_path / "env" / "metrics.duckdb"
    assert VectorStoreResource(uri="memory://x").location == "memory://x"
    explicit = HomeResource(path=str(tmp_path / "x"))
    assert EncoderResource(home=explicit).layout.root == tmp_path / "x"
