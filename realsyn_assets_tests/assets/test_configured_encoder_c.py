"""bootstrap_beats_random judges a configured encoder too (issue 17: it used to pass whenever
nothing was trained): configured with random weights, the encoder's same-document retrieval is
at chance and the blocking check fails the run with ERROR severity (so `realsyn run` stops
before embedding anything with it). Run on a tiny home (one shard of 8 demo documents)."""

from __future__ import annotations

import dagster as dg
import pytest

from realsyn_assets.assets import ALL_ASSETS, ALL_CHECKS
from realsyn_assets.names import Asset
from realsyn_assets_tests.assets.tiny_home_c import (
    home_resources,
    latest_check_evaluation,
    materialization_count,
    tiny_home,
)

pytestmark = pytest.mark.slow  # builds a small home through Dagster (~20 s)


@pytest.fixture
def home(tmp_path, monkeypatch):
    with tiny_home(tmp_path, monkeypatch) as made:
        yield made


def test_bootstrap_beats_random_fails_for_a_configured_encoder_with_random_weights(home):
    from realsyn_assets.core.embedding.encoder import ensure_local_weights

    layout, key, instance = home
    checkpoint = ensure_local_weights("realsyn-tiny", layout.root / "random.pt")
    resources = home_resources(layout.root, checkpoint=str(checkpoint))
    extract = [Asset.RAW_DOCUMENTS, Asset.EXTRACTED_IMAGES, Asset.EXTRACTED_SENTENCES]
    for assets in (extract[:2], extract[2:]):
        dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            selection=dg.AssetSelection.assets(*assets),
            resources=resources,
            instance=instance,
            partition_key=key,
        )
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=dg.AssetSelection.assets(Asset.BOOTSTRAP_ENCODER),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success  # the blocking check failed the run
    evaluation = latest_check_evaluation(
        instance, Asset.BOOTSTRAP_ENCODER, "bootstrap_beats_random"
    )
    assert evaluation.passed is False and evaluation.severity == dg.AssetCheckSeverity.ERROR
    value, threshold = (evaluation.metadata[k].value for k in ("value", "threshold"))
    assert 0 < threshold < 0.5 and value <= threshold, (value, threshold)
    assert "configured encoder" in evaluation.description
    assert materialization_count(instance, Asset.BOOTSTRAP_ENCODER) == 1
