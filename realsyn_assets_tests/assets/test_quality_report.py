"""The quality report's corpus-wide retrieval precision weights shards by their labelled images."""

from __future__ import annotations

import pytest

from realsyn_assets.assets.quality import retrieval_precision_overall
from realsyn_assets.names import Asset
from realsyn_assets.names import QualityReportMetadata as QM
from realsyn_assets.names import RetrievedTextsMetrics as RT
from realsyn_assets.resources import MetricsResource


def test_corpus_precision_is_weighted_by_labelled_images(tmp_path):
    metrics = MetricsResource(path=str(tmp_path / "metrics.duckdb"))
    assert retrieval_precision_overall(metrics) == {}
    metrics.record(Asset.RETRIEVED_TEXTS, "shard-000", {RT.IMAGES: 12, RT.MEAN_TOP1_SCORE: 0.7})
    assert retrieval_precision_overall(metrics) == {}  # real data: no ground-truth scores
    metrics.record(
        Asset.RETRIEVED_TEXTS,
        "shard-000",
        {
            RT.GT_PRECISION_TEXT1: 0.5,
            RT.GT_IN_DOCUMENT_PRECISION_TEXT1: 0.4,
            RT.GT_IMAGES_SCORED: 10,
        },
    )
    metrics.record(
        Asset.RETRIEVED_TEXTS,
        "shard-001",
        {
            RT.GT_PRECISION_TEXT1: 1.0,
            RT.GT_IN_DOCUMENT_PRECISION_TEXT1: 0.8,
            RT.GT_IMAGES_SCORED: 30,
        },
    )
    # other stages ignored
    metrics.record(Asset.IMAGE_DEDUP, "shard-001", {RT.GT_PRECISION_TEXT1: 0.0})
    overall = retrieval_precision_overall(metrics)
    assert overall[RT.GT_IMAGES_SCORED] == 40
    assert overall[RT.GT_PRECISION_TEXT1] == pytest.approx((0.5 * 10 + 1.0 * 30) / 40)
    assert overall[RT.GT_IN_DOCUMENT_PRECISION_TEXT1] == pytest.approx((0.4 * 10 + 0.8 * 30) / 40)
    assert overall[QM.GT_PRECISION_TEXT1_MIN_SHARD] == 0.5
    # a rerun of one shard replaces its numbers instead of adding to them
    metrics.record(
        Asset.RETRIEVED_TEXTS,
        "shard-000",
        {
            RT.GT_PRECISION_TEXT1: 1.0,
            RT.GT_IN_DOCUMENT_PRECISION_TEXT1: 0.4,
            RT.GT_IMAGES_SCORED: 10,
        },
    )
    assert retrieval_precision_overall(metrics)[RT.GT_PRECISION_TEXT1] == pytest.approx(1.0)
