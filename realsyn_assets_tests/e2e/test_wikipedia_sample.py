"""Real interleaved data (../shared/data/wikipedia_raycharles_interleaved), when present."""

from __future__ import annotations

import duckdb
import pytest

from realsyn_assets.core.ids import DUPLICATE_IN_SHARD
from realsyn_assets.core.text.cat import REJECT_NO_ACTION
from realsyn_assets.core.text.sentences import REJECT_TOO_SHORT
from realsyn_assets.names import (
    Asset,
    ExtractedImagesMetrics,
    ExtractedSentencesMetrics,
    RawDocumentsMetrics,
)
from realsyn_assets_tests.conftest import SHARED_DATA

WIKI = SHARED_DATA / "wikipedia_raycharles_interleaved" / "docs.jsonl"
pytestmark = pytest.mark.skipif(not WIKI.exists(), reason="shared Wikipedia sample not available")


def test_wikipedia_shard_counts_are_plausible(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    from realsyn_assets import pipeline

    layout = pipeline.prepare_environment(tmp_path / "home")
    monkeypatch.setenv("REALSYN_HOME", str(layout.root))
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    (key,) = pipeline.register(layout, [WIKI])
    for job, partition in (
        ("shard_ingest_job", key),
        ("word_statistics_job", None),
        ("shard_sentence_dedup_job", key),
    ):
        report = pipeline.run_stage(job, partition)
        assert report.success and not report.checks_failed, report.checks_failed

    con = duckdb.connect(str(layout.metrics_db), read_only=True)
    counts = {
        (s, m): v
        for s, m, v in con.execute("SELECT stage, metric, value FROM stage_counts").fetchall()
    }
    reasons = {
        (s, r): n
        for s, r, n in con.execute("SELECT stage, reason, count FROM rejections").fetchall()
    }
    con.close()
    # README of the sample: 124 documents, 123 image slots, 108 unique files (15 slots reuse one)
    docs, images, sentences = RawDocumentsMetrics, ExtractedImagesMetrics, ExtractedSentencesMetrics
    assert counts[(Asset.RAW_DOCUMENTS, docs.DOCUMENTS_KEPT)] == 124
    assert counts[(Asset.RAW_DOCUMENTS, docs.IMAGE_SLOTS)] == 123
    assert reasons[(Asset.EXTRACTED_IMAGES, DUPLICATE_IN_SHARD)] == 15
    # median shorter side is 220 px, so most unique images pass the size/aspect filter
    assert 80 <= counts[(Asset.EXTRACTED_IMAGES, images.IMAGES_KEPT)] <= 108
    # 3,936 text blocks, 77.6k words: thousands of sentences, many kept
    assert counts[(Asset.EXTRACTED_SENTENCES, sentences.TEXT_BLOCKS)] == 3936
    assert 3000 <= counts[(Asset.EXTRACTED_SENTENCES, sentences.SENTENCES_IN)] <= 8000
    kept = counts[(Asset.EXTRACTED_SENTENCES, sentences.SENTENCES_KEPT)]
    assert 0.35 * counts[(Asset.EXTRACTED_SENTENCES, sentences.SENTENCES_IN)] <= kept
    # headings, credits and "References" lines are the noise this sample is known for: the
    # length rule and the CAT filter (no action) remove them
    assert reasons[(Asset.EXTRACTED_SENTENCES, REJECT_TOO_SHORT)] > 100
    assert reasons[(Asset.EXTRACTED_SENTENCES, REJECT_NO_ACTION)] > 100
    # the semantic stage keeps about the paper's share (1.16 / 1.82 = 64%), calibrated
    semantic = counts[("sentence_dedup", "after_semantic_filter")]
    assert 0.55 * kept <= semantic <= 0.72 * kept
    assert counts[("sentence_dedup", "sentences_kept")] <= semantic
