"""Through Dagster on a copy of the demo home: caps solved to the paper's shares, nested scales,
subsets pinned to the image_clusters version, and the two blocking checks failing when they
should."""

from __future__ import annotations

import json
import os
import shutil

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest

from realsyn_assets.assets import balance
from realsyn_assets.core.balance.sampling import SCALE_SHARES
from realsyn_assets.names import Asset
from realsyn_assets.names import BalancedSubsetMetadata as BD
from realsyn_assets.names import BalancedSubsetMetrics as BM
from realsyn_assets.names import ImageClustersMetadata as CD
from realsyn_assets.partitions import SCALES
from realsyn_assets.resources import (
    EncoderResource,
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)

SUBSET_CHECKS = [
    balance.subset_size_within_target,
    balance.subset_matches_clusters,
    balance.subsets_nested,
]

pytestmark = pytest.mark.slow


@pytest.fixture
def home(request, tmp_path):
    """A private copy of the session's demo home (the original is shared by other tests), or of
    the materialized home named by $REALSYN_BALANCE_TEST_HOME when set (no demo build)."""
    source = os.environ.get("REALSYN_BALANCE_TEST_HOME") or request.getfixturevalue("demo_home")
    copy = tmp_path / "home"
    ignore = shutil.ignore_patterns("dagster", "*.lock", "images", "clip_checkpoint")
    shutil.copytree(source, copy, ignore=ignore)
    return copy


def _resources(home) -> dict:
    h = HomeResource(path=str(home))
    return {
        "storage": StorageResource(home=h),
        "metrics": MetricsResource(home=h),
        "vectors": VectorStoreResource(home=h),
        "encoder": EncoderResource(home=h),
    }


def _clusters(home, instance, **config) -> str:
    result = dg.materialize(
        [balance.image_clusters, balance.cosine_window_sane],
        resources=_resources(home),
        instance=instance,
        run_config={"ops": {Asset.IMAGE_CLUSTERS: {"config": config}}} if config else None,
    )
    (event,) = result.asset_materializations_for_node(Asset.IMAGE_CLUSTERS)
    version = event.tags["dagster/data_version"]
    assert event.metadata[CD.VERSION].value == version
    return version


def _subset(home, instance, scale: str, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [balance.balanced_subset, *SUBSET_CHECKS],
        resources=_resources(home),
        instance=instance,
        partition_key=scale,
        run_config={"ops": {Asset.BALANCED_SUBSET: {"config": config}}} if config else None,
        raise_on_error=False,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _only_checks(home, scale: str) -> dict[str, dg.AssetCheckResult]:
    """The subset checks of `scale` alone, invoked directly (Dagster cannot yet run partitioned
    checks without their asset in one run)."""
    context = dg.build_op_context(partition_key=scale)
    storage = _resources(home)["storage"]
    return {
        "subset_matches_clusters": balance.subset_matches_clusters(context, storage=storage),
        "subsets_nested": balance.subsets_nested(context, storage=storage),
    }


def _ids(home, scale: str) -> set[tuple[str, str]]:
    path = home / "data" / Asset.BALANCED_SUBSET / scale / balance.SUBSET_FILE
    table = pq.read_table(path, columns=["shard", "image_id"])
    return set(zip(*(table.column(c).to_pylist() for c in ("shard", "image_id")), strict=True))


def test_scales_hit_paper_shares_nest_and_are_pinned(home):
    instance = dg.DagsterInstance.ephemeral()
    version = _clusters(home, instance)
    assert _clusters(home, instance) == version  # a rerun on the same inputs: same version
    previous: set = set()
    for scale in SCALES:
        result = _subset(home, instance, scale)
        assert result.success
        assert all(e.passed for e in _checks(result).values()), _checks(result)
        folder = home / "data" / Asset.BALANCED_SUBSET / scale
        record = json.loads((folder / balance.SELECTION_FILE).read_text())
        pool, samples = record[BM.CANDIDATE_PAIRS], record[BM.SAMPLES]
        # within 1 percentage point of the paper's share, or 1 sample on a tiny pool
        assert abs(samples - SCALE_SHARES[scale] * pool) <= max(0.01 * pool, 1.0)
        assert record[BD.CLUSTERS_VERSION] == version
        assert record[BD.CAP_RULE] == "paper_fraction"
        sizes = np.load(folder / balance.CLUSTER_SIZES_FILE)
        assert sizes["before"].sum() == pool and sizes["after"].sum() == samples
        assert sizes["after"].max() <= record[BM.CAP_PER_CLUSTER]
        (event,) = result.asset_materializations_for_node(Asset.BALANCED_SUBSET)
        assert event.metadata[BD.CLUSTERS_VERSION].value == version
        subset_version = balance.clusters_core.content_version(folder / balance.SUBSET_FILE)
        assert event.tags["dagster/data_version"] == subset_version
        assert event.metadata[BM.TARGET_SHARE].value == pytest.approx(SCALE_SHARES[scale])
        rows = _ids(home, scale)
        assert len(rows) == samples and previous <= rows  # 15M ⊂ 30M ⊂ 100M
        previous = rows

    # image_clusters changes (another k-means seed and cluster count): every subset is stale
    assert _clusters(home, instance, seed=7, n_clusters=2) != version
    for scale in SCALES:
        check = _only_checks(home, scale)["subset_matches_clusters"]
        assert not check.passed
        assert balance.STALE_SUBSET in check.description
    # re-drawn, they are pinned to the new version again
    for scale in SCALES:
        assert _checks(_subset(home, instance, scale))["subset_matches_clusters"].passed


def test_subsets_nested_fails_when_one_scale_uses_another_seed(home):
    instance = dg.DagsterInstance.ephemeral()
    _clusters(home, instance)
    for scale in SCALES:
        assert _subset(home, instance, scale).success
    result = _subset(home, instance, "30M", seed=5)
    check = _checks(result)["subsets_nested"]
    assert not check.passed and "not nested" in check.description
    assert check.metadata["missing_rows"].value > 0
    assert check.metadata["threshold"].value == 0
    # a blocking failure: the run reports it
    assert not result.success
    # the smaller neighbour sees the break too
    assert not _only_checks(home, "15M")["subsets_nested"].passed
