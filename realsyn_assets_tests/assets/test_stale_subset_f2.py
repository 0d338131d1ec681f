"""Staleness of the scale assets as the UI shows it, through Dagster's stale status resolver:
balanced_subset's data version is its parquet file's sha256, so redrawing the same rows leaves
clip_checkpoint FRESH (no needless retraining), drawing other rows marks it STALE, and a new
BalanceConfig default marks balanced_subset itself STALE (a new code version). Runs on a copy of
the demo home (or of the materialized home named by $REALSYN_BALANCE_TEST_HOME)."""

from __future__ import annotations

import os
import shutil

import dagster as dg
import pytest
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from realsyn_assets.assets import ALL_ASSETS, ALL_CHECKS, balance
from realsyn_assets.assets._common import code_version
from realsyn_assets.names import Asset
from realsyn_assets.resources import (
    CaptionerResource,
    EncoderResource,
    EngineResource,
    GeneratorResource,
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)

pytestmark = pytest.mark.slow

SCALE = "15M"
SUBSET = dg.AssetKey(Asset.BALANCED_SUBSET)
CHECKPOINT = dg.AssetKey(Asset.CLIP_CHECKPOINT)
TRAIN = {"model_name": "realsyn-tiny", "epochs": 1, "batch_size": 16}


@pytest.fixture
def home(request, tmp_path):
    source = os.environ.get("REALSYN_BALANCE_TEST_HOME") or request.getfixturevalue("demo_home")
    copy = tmp_path / "home"
    ignore = shutil.ignore_patterns(
        "dagster", "*.lock", Asset.CLIP_CHECKPOINT, Asset.CLIP_ABLATIONS, Asset.SUBSET_EXPORT
    )
    shutil.copytree(source, copy, ignore=ignore)
    for other in ("30M", "100M"):  # 15M alone: another seed must not break nesting here
        shutil.rmtree(copy / "data" / Asset.BALANCED_SUBSET / other, ignore_errors=True)
    return copy


def _materialize(instance, root, key: dg.AssetKey, config: dict | None = None) -> None:
    home = HomeResource(path=str(root))
    resources = {
        "home": home,
        "storage": StorageResource(home=home),
        "metrics": MetricsResource(home=home),
        "vectors": VectorStoreResource(home=home),
        "encoder": EncoderResource(home=home, device="cpu"),
        "engine": EngineResource(home=home),
        "generator": GeneratorResource(),
        "captioner": CaptionerResource(),
    }
    name = key.to_user_string()
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=dg.AssetSelection.assets(key),
        resources=resources,
        instance=instance,
        partition_key=SCALE,
        run_config={"ops": {name: {"config": config}}} if config else None,
    )
    assert result.success


def _status(instance, assets, key: dg.AssetKey):
    resolver = get_stale_status_resolver(instance, assets)
    return resolver.get_status(key, SCALE), resolver.get_stale_causes(key, SCALE)


def test_subset_data_version_drives_training_staleness(home, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    _materialize(instance, home, SUBSET)
    _materialize(instance, home, CHECKPOINT, TRAIN)
    assert _status(instance, ALL_ASSETS, CHECKPOINT) == (StaleStatus.FRESH, [])

    # the same rows drawn again: same data version, training stays FRESH
    _materialize(instance, home, SUBSET)
    assert _status(instance, ALL_ASSETS, CHECKPOINT) == (StaleStatus.FRESH, [])

    # other rows (another seed): a new data version, the checkpoint is STALE because of it
    _materialize(instance, home, SUBSET, {"seed": 3})
    status, causes = _status(instance, ALL_ASSETS, CHECKPOINT)
    assert status == StaleStatus.STALE
    assert [(c.category, c.dependency.asset_key) for c in causes] == [
        (StaleCauseCategory.DATA, SUBSET)
    ], causes

    # a new default in BalanceConfig: balanced_subset has a new code version, it is STALE
    monkeypatch.setattr(balance.BalanceConfig.model_fields["eval_fraction"], "default", 0.1)
    version = code_version("1", balance.BalanceConfig)
    assert version != balance.balanced_subset.specs_by_key[SUBSET].code_version
    assets = [
        a.map_asset_specs(
            lambda spec: (
                spec.replace_attributes(code_version=version) if spec.key == SUBSET else spec
            )
        )
        for a in ALL_ASSETS
    ]
    status, causes = _status(instance, assets, SUBSET)
    assert status == StaleStatus.STALE and causes[0].category == StaleCauseCategory.CODE
