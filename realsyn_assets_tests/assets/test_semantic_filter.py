"""The semantic_filter asset through Dagster: one row per sentence with its scores and reason,
counts that add up, sentence_dedup carrying its rejections over, and a funnel check that fails
when the recorded counts do not add up."""

from __future__ import annotations

import pyarrow.parquet as pq

from realsyn_assets.names import Asset, Job, SemanticFilterMetrics, SentenceDedupMetrics

M = SemanticFilterMetrics
COLUMNS = ["sentence_id", "entropy", "perplexity", "kept", "reason"]
FUNNEL = "semantic_filter_funnel"


def test_semantic_filter_writes_scores_and_its_funnel_check_catches_bad_counts(
    fresh_home, monkeypatch
):
    from realsyn_assets.pipeline import register, run_stage
    from realsyn_assets.resources import HomeResource, MetricsResource

    layout, make_corpus = fresh_home
    (key,) = register(layout, make_corpus(16, 1, 7).shard_paths)
    run_stage(Job.SHARD_EXTRACT, key)
    run_stage(Job.WORD_STATISTICS, None)
    report = run_stage(Job.SHARD_SENTENCE_DEDUP, key)
    assert not report.checks_failed, report.checks_failed

    table = pq.read_table(layout.partition_file(Asset.SEMANTIC_FILTER, key))
    sentences = pq.read_table(layout.partition_file(Asset.EXTRACTED_SENTENCES, key))
    assert table.column_names == COLUMNS
    assert table.column("sentence_id").to_pylist() == sentences.column("sentence_id").to_pylist()
    rows = table.to_pylist()
    assert all(r["kept"] == (r["reason"] is None) for r in rows)

    metrics = MetricsResource(home=HomeResource(path=str(layout.root)))
    counts = metrics.counts(Asset.SEMANTIC_FILTER, key)
    kept = sum(r["kept"] for r in rows)
    assert counts[M.SENTENCES_IN] == len(rows) > 20
    assert counts[M.SENTENCES_KEPT] == kept and 0 < kept < len(rows)
    assert counts[M.SENTENCES_REJECTED] == len(rows) - kept
    assert counts[M.SCORES_FROM_WORD_STATISTICS] == 1
    rejections = metrics.rejection_counts(Asset.SEMANTIC_FILTER, key)
    assert sum(rejections.values()) == len(rows) - kept
    assert report.metadata[Asset.SEMANTIC_FILTER][M.SENTENCES_KEPT] == kept

    # sentence_dedup keeps the semantic scores and reasons; its count is the filter's
    dedup = pq.read_table(layout.partition_file(Asset.SENTENCE_DEDUP, key)).to_pylist()
    for semantic, row in zip(rows, dedup, strict=True):
        assert row["entropy"] == semantic["entropy"]
        assert row["perplexity"] == semantic["perplexity"]
        if semantic["reason"] is not None:
            assert row["reason"] == semantic["reason"] and not row["kept"]
    dedup_counts = metrics.counts(Asset.SENTENCE_DEDUP, key)
    assert dedup_counts[SentenceDedupMetrics.AFTER_SEMANTIC_FILTER] == kept

    # a forged count (one more kept than in - rejected): the blocking funnel check fails the
    # shard's run, and sentence_dedup (downstream in the same run) is not materialized again
    from realsyn_assets.assets import filter as filter_assets

    record = filter_assets.stage_metadata

    def forged(metrics, stage, partition, counts, *args):
        counts = {**counts, M.SENTENCES_KEPT: counts[M.SENTENCES_KEPT] + 1}
        return record(metrics, stage, partition, counts, *args)

    monkeypatch.setattr(filter_assets, "stage_metadata", forged)
    report = run_stage(Job.SHARD_SENTENCE_DEDUP, key, raise_on_failure=False)
    assert not report.success and FUNNEL in report.error
    (failed,) = [f for f in report.checks_failed if FUNNEL in f]
    assert f"{M.SENTENCES_IN} != {M.SENTENCES_KEPT} + {M.SENTENCES_REJECTED}" in failed
    assert Asset.SENTENCE_DEDUP not in report.metadata
