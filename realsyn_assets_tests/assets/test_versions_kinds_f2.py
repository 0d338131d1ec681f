"""Code versions and kinds of the balance, export, training and evaluation assets: each code
version hashes its config's defaults, so a default that changes results (a seed, a cap rule, a
learning rate) changes it and Dagster marks the asset and its downstream stale, while a field
that only changes speed (loader workers, processes) does not."""

from __future__ import annotations

import pytest

from realsyn_assets.assets import balance, evaluate, export, train
from realsyn_assets.assets._common import code_version
from realsyn_assets.names import Kind

ASSETS = {
    balance.image_clusters: (balance.ImageClusterConfig, {Kind.PARQUET}),
    balance.balanced_subset: (balance.BalanceConfig, {Kind.PARQUET}),
    export.subset_export: (export.ExportConfig, {Kind.PARQUET}),
    train.clip_checkpoint: (train.TrainAssetConfig, {Kind.PYTORCH}),
    evaluate.clip_ablations: (evaluate.AblationConfig, {Kind.PYTORCH}),
    evaluate.clip_evaluation: (evaluate.EvaluationConfig, {Kind.PYTORCH}),
}
TRAIN_SPEED_ONLY = ("num_workers", "nproc_per_node", "checkpoint_every_steps")


@pytest.mark.parametrize("asset", list(ASSETS), ids=lambda a: a.key.to_user_string())
def test_assets_carry_a_config_code_version_kinds_and_a_description(asset):
    config, kinds = ASSETS[asset]
    (spec,) = asset.specs
    exclude = TRAIN_SPEED_ONLY if asset is train.clip_checkpoint else ()
    assert spec.code_version == code_version("1", config, exclude=exclude)
    assert spec.kinds == kinds
    assert "data/" in spec.description and "rerun" in spec.description.lower()


@pytest.mark.parametrize(
    ("config", "field", "value"),
    [
        (balance.ImageClusterConfig, "seed", 7),
        (balance.BalanceConfig, "cap_rule", "paper_cap"),
        (export.ExportConfig, "samples_per_tar", 10),
        (train.TrainAssetConfig, "lr", 5e-4),
        (evaluate.AblationConfig, "random_sampling", False),
    ],
)
def test_code_version_changes_with_a_default_that_changes_results(
    monkeypatch, config, field, value
):
    before = code_version("1", config, exclude=TRAIN_SPEED_ONLY)
    monkeypatch.setattr(config.model_fields[field], "default", value)
    assert code_version("1", config, exclude=TRAIN_SPEED_ONLY) != before


@pytest.mark.parametrize("field", TRAIN_SPEED_ONLY)
def test_clip_checkpoint_version_ignores_speed_only_fields(monkeypatch, field):
    before = code_version("1", train.TrainAssetConfig, exclude=TRAIN_SPEED_ONLY)
    monkeypatch.setattr(train.TrainAssetConfig.model_fields[field], "default", 3)
    assert code_version("1", train.TrainAssetConfig, exclude=TRAIN_SPEED_ONLY) == before
