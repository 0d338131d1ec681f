"""funnels_monotone fails on a report whose funnel grows or ends empty, and on a missing or
unreadable report (the old check raised instead of failing)."""

from __future__ import annotations

import json

import dagster as dg

from realsyn_assets.assets import quality
from realsyn_assets.names import Asset
from realsyn_assets.resources import HomeResource, StorageResource


def _report(images: list[int], sentences: list[int]) -> dict:
    def rows(counts):
        return [{"step": f"step {i}", "count": n} for i, n in enumerate(counts)]

    return {"image_funnel": rows(images), "sentence_funnel": rows(sentences)}


def test_funnels_monotone_fails_on_a_growing_or_empty_funnel_or_no_report(tmp_path):
    storage = StorageResource(home=HomeResource(path=str(tmp_path)))
    path = storage.layout.asset_dir(Asset.QUALITY_REPORT) / quality.REPORT_JSON
    missing = quality.funnels_monotone(storage)
    assert not missing.passed and missing.severity == dg.AssetCheckSeverity.ERROR
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_report([10, 8, 5], [30, 20])))
    good = quality.funnels_monotone(storage)
    assert good.passed and good.metadata["image_funnel_final"].value == 5
    for images, sentences in (([10, 12, 5], [30, 20]), ([10, 8, 5], [30, 0])):
        path.write_text(json.dumps(_report(images, sentences)))
        result = quality.funnels_monotone(storage)
        assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
        assert result.metadata["problems"].value == 1
        assert result.metadata["threshold"].value == 0
    path.write_text("{not json")
    assert not quality.funnels_monotone(storage).passed
