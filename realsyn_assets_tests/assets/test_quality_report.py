"""The quality report's corpus-wide retrieval precision weights shards by their labelled images."""

from __future__ import annotations

import pytest

from realsyn_assets.assets.quality import retrieval_precision_overall
from realsyn_assets.resources import MetricsResource


def test_corpus_precision_is_weighted_by_labelled_images(tmp_path):
    metrics = MetricsResource(path=str(tmp_path / "metrics.duckdb"))
    assert retrieval_precision_overall(metrics) == {}
    metrics.record("retrieved_texts", "shard-000", {"images": 12, "mean_top1_score": 0.7})
    assert retrieval_precision_overall(metrics) == {}  # real data: no ground-truth scores
    metrics.record(
        "retrieved_texts",
        "shard-000",
        {"gt_precision_text1": 0.5, "gt_in_document_precision_text1": 0.4, "gt_images_scored": 10},
    )
    metrics.record(
        "retrieved_texts",
        "shard-001",
        {"gt_precision_text1": 1.0, "gt_in_document_precision_text1": 0.8, "gt_images_scored": 30},
    )
    metrics.record("image_dedup", "shard-001", {"gt_precision_text1": 0.0})  # other stages ignored
    overall = retrieval_precision_overall(metrics)
    assert overall["gt_images_scored"] == 40
    assert overall["gt_precision_text1"] == pytest.approx((0.5 * 10 + 1.0 * 30) / 40)
    assert overall["gt_in_document_precision_text1"] == pytest.approx((0.4 * 10 + 0.8 * 30) / 40)
    assert overall["gt_precision_text1_min_shard"] == 0.5
    # a rerun of one shard replaces its numbers instead of adding to them
    metrics.record(
        "retrieved_texts",
        "shard-000",
        {"gt_precision_text1": 1.0, "gt_in_document_precision_text1": 0.4, "gt_images_scored": 10},
    )
    assert retrieval_precision_overall(metrics)["gt_precision_text1"] == pytest.approx(1.0)
