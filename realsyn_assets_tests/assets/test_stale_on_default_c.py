"""Staleness as the UI shows it (issue 17's acceptance), asserted through Dagster's own stale
status resolver over the instance: a changed result-changing config default
(`ImageDedupConfig.phash_max_distance`, the encoder's `model_name`) changes the asset's code
version and marks it STALE; a new encoder (bootstrap_encoder rematerialized with other weights,
so a new data version) marks the embeddings STALE, while rematerializing it with the same weights
does not; re-embedding then gives a new data version and marks image_dedup STALE (Dagster marks a
downstream asset stale once an input's data version has changed). Run on a tiny home (one shard
of 8 demo documents; the encoder is a configured local checkpoint, so nothing trains)."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from realsyn_assets.assets import ALL_ASSETS, ALL_CHECKS
from realsyn_assets.assets._common import code_version
from realsyn_assets.names import Asset
from realsyn_assets_tests.assets.tiny_home_c import home_resources, tiny_home

pytestmark = pytest.mark.slow  # builds a small home through Dagster (~30 s)

EMBEDDINGS = dg.AssetKey(Asset.IMAGE_EMBEDDINGS)
DEDUP = dg.AssetKey(Asset.IMAGE_DEDUP)
BOOTSTRAP = dg.AssetKey(Asset.BOOTSTRAP_ENCODER)


@pytest.fixture
def home(tmp_path, monkeypatch):
    with tiny_home(tmp_path, monkeypatch) as made:
        yield made


def _materialize(instance, resources, assets: list[str], partition: str | None = None):
    """Materialize assets (their checks are not the subject here)."""
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=dg.AssetSelection.assets(*assets).without_checks(),
        resources=resources,
        instance=instance,
        partition_key=partition,
    )
    assert result.success


def _with_code_version(asset: dg.AssetKey, version: str) -> list:
    """The asset graph as definitions built with the new default would have it."""
    return [
        a.map_asset_specs(
            lambda spec: (
                spec.replace_attributes(code_version=version) if spec.key == asset else spec
            )
        )
        for a in ALL_ASSETS
    ]


def _status(instance, assets, key: dg.AssetKey, partition: str):
    resolver = get_stale_status_resolver(instance, assets)
    return resolver.get_status(key, partition), resolver.get_stale_causes(key, partition)


def _perturbed_copy(source, target) -> None:
    """Other weights for the same model: a different encoder identity."""
    from realsyn_assets.core.embedding.runtime import atomic_torch_save, load_checkpoint

    state = load_checkpoint(source)
    name = next(iter(state["state_dict"]))
    state["state_dict"][name] = state["state_dict"][name] + 0.5
    atomic_torch_save(state, target)


def test_changed_default_or_encoder_marks_assets_stale(home, monkeypatch):
    from realsyn_assets.assets.dedup import ImageDedupConfig
    from realsyn_assets.core.embedding.encoder import ensure_local_weights
    from realsyn_assets.resources import EncoderResource

    layout, key, instance = home
    checkpoint = layout.root / "encoder.pt"
    ensure_local_weights("realsyn-tiny", checkpoint)
    resources = home_resources(layout.root, checkpoint=str(checkpoint))
    _materialize(instance, resources, [Asset.RAW_DOCUMENTS, Asset.EXTRACTED_IMAGES], key)
    _materialize(instance, resources, [Asset.EXTRACTED_SENTENCES], key)
    _materialize(instance, resources, [Asset.BOOTSTRAP_ENCODER])
    _materialize(instance, resources, [Asset.IMAGE_EMBEDDINGS, Asset.IMAGE_DEDUP], key)
    for asset in (EMBEDDINGS, DEDUP):
        assert _status(instance, ALL_ASSETS, asset, key) == (StaleStatus.FRESH, [])

    # a new phash_max_distance default: image_dedup's code version changes, it is STALE
    before = next(a for a in ALL_ASSETS if DEDUP in a.keys).code_versions_by_key[DEDUP]
    monkeypatch.setattr(ImageDedupConfig.model_fields["phash_max_distance"], "default", 13)
    after = code_version("1", ImageDedupConfig)
    assert after != before
    status, causes = _status(instance, _with_code_version(DEDUP, after), DEDUP, key)
    assert status == StaleStatus.STALE
    assert [(c.category, c.reason) for c in causes] == [
        (StaleCauseCategory.CODE, "has a new code version")
    ]

    # a new encoder default (model_name): the embeddings' code version changes, they are STALE
    from realsyn_assets.assets.embed import ENCODER_CODE_VERSION

    monkeypatch.setattr(EncoderResource.model_fields["model_name"], "default", "ViT-B-32")
    encoder_version = code_version(
        "1", EncoderResource, exclude=("home", "device", "precision", "batch_size", "num_workers")
    )
    assert encoder_version != ENCODER_CODE_VERSION
    status, causes = _status(
        instance, _with_code_version(EMBEDDINGS, encoder_version), EMBEDDINGS, key
    )
    assert status == StaleStatus.STALE and causes[0].category == StaleCauseCategory.CODE

    # bootstrap_encoder rematerialized with the same weights: same data version, still FRESH
    _materialize(instance, resources, [Asset.BOOTSTRAP_ENCODER])
    assert _status(instance, ALL_ASSETS, EMBEDDINGS, key) == (StaleStatus.FRESH, [])

    # ... and with other weights: a new data version, so the embeddings are STALE
    _perturbed_copy(checkpoint, checkpoint)
    _materialize(instance, resources, [Asset.BOOTSTRAP_ENCODER])
    status, causes = _status(instance, ALL_ASSETS, EMBEDDINGS, key)
    assert status == StaleStatus.STALE
    assert [(c.category, c.dependency.asset_key) for c in causes] == [
        (StaleCauseCategory.DATA, BOOTSTRAP)
    ], causes

    # re-embedding with the new encoder gives new vectors (a new data version: encoder identity
    # + ids), and image_dedup, which read the old ones, is STALE in turn (Dagster marks a
    # downstream asset stale when an input's data version changed, not before)
    assert _status(instance, ALL_ASSETS, DEDUP, key)[0] == StaleStatus.FRESH
    _materialize(instance, resources, [Asset.IMAGE_EMBEDDINGS], key)
    assert _status(instance, ALL_ASSETS, EMBEDDINGS, key) == (StaleStatus.FRESH, [])
    status, causes = _status(instance, ALL_ASSETS, DEDUP, key)
    assert status == StaleStatus.STALE
    assert [(c.category, c.dependency.asset_key) for c in causes] == [
        (StaleCauseCategory.DATA, EMBEDDINGS)
    ], causes
