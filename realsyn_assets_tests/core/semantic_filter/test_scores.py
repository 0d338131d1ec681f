"""Sentence entropy / perplexity are scored once by word_statistics and reused by the semantic
filter (through Dagster), with the same values a fresh computation gives; a shard extracted after
the fit, or one whose sentences changed, is scored afresh."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from realsyn_assets.core.semantic_filter.scores import score_path
from realsyn_assets.core.semantic_filter.statistics import NGRAM_FILE, WINDOW_FILE, WORDS_FILE
from realsyn_assets.names import Asset, Job, SentenceDedupMetrics

REUSED = SentenceDedupMetrics.SCORES_FROM_WORD_STATISTICS


def _fresh_scores(layout, key: str) -> tuple[np.ndarray, np.ndarray]:
    from realsyn_assets.core.semantic_filter.entropy import normalised_entropy
    from realsyn_assets.core.semantic_filter.ngram import NGramScorer

    folder = layout.asset_dir(Asset.WORD_STATISTICS)
    texts = (
        pq.read_table(layout.partition_file(Asset.EXTRACTED_SENTENCES, key), columns=["text"])
        .column("text")
        .to_pylist()
    )
    words = pq.read_table(folder / WORDS_FILE)
    counts = dict(
        zip(words.column("word").to_pylist(), words.column("count").to_pylist(), strict=True)
    )
    total = sum(counts.values())
    entropy = np.array([normalised_entropy(t, counts, total) for t in texts], np.float32)
    in_fit = key in json.loads((folder / WINDOW_FILE).read_text())["shards"]
    ppl = NGramScorer.load(folder / NGRAM_FILE).perplexity(texts, exclude_self=in_fit)
    return entropy, np.asarray(ppl)


def _dedup_scores(layout, key: str) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(layout.partition_file(Asset.SENTENCE_DEDUP, key))
    return table.column("entropy").to_numpy(), table.column("perplexity").to_numpy()


def test_scores_reused_from_word_statistics_and_recomputed_when_stale(fresh_home):
    from realsyn_assets.pipeline import register, run_stage

    layout, make_corpus = fresh_home
    corpus = make_corpus(18, 3, 5)
    first, second = register(layout, corpus.shard_paths[:2])
    for key in (first, second):
        run_stage(Job.SHARD_EXTRACT, key)
    run_stage(Job.WORD_STATISTICS, None)
    for key in (first, second):
        report = run_stage(Job.SHARD_SENTENCE_DEDUP, key)
        assert report.metadata[Asset.SENTENCE_DEDUP][REUSED] == 1
        entropy, ppl = _dedup_scores(layout, key)
        want_entropy, want_ppl = _fresh_scores(layout, key)
        assert len(entropy) > 20
        np.testing.assert_allclose(entropy, want_entropy, rtol=1e-6)
        np.testing.assert_allclose(ppl, want_ppl, rtol=1e-9)

    # a shard extracted after the fit: no stored scores, computed here, same formula
    (third,) = register(layout, corpus.shard_paths[2:])
    run_stage(Job.SHARD_EXTRACT, third)
    assert not score_path(layout.asset_dir(Asset.WORD_STATISTICS), third).exists()
    report = run_stage(Job.SHARD_SENTENCE_DEDUP, third)
    assert report.metadata[Asset.SENTENCE_DEDUP][REUSED] == 0
    entropy, ppl = _dedup_scores(layout, third)
    want_entropy, want_ppl = _fresh_scores(layout, third)
    np.testing.assert_allclose(entropy, want_entropy, rtol=1e-6)
    np.testing.assert_allclose(ppl, want_ppl, rtol=1e-9)
    # new to the model: scored as is, not leave-one-out (which gives infinite perplexity)
    assert np.isfinite(ppl).all()
    kept = pq.read_table(layout.partition_file(Asset.SENTENCE_DEDUP, third)).column("kept")
    assert 0 < sum(kept.to_pylist()) < len(ppl)

    # stored scores of a shard whose rows changed since the fit are not used
    path = layout.partition_file(Asset.EXTRACTED_SENTENCES, first)
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    report = run_stage(Job.SHARD_SENTENCE_DEDUP, first)
    assert report.metadata[Asset.SENTENCE_DEDUP][REUSED] == 0
    assert len(_dedup_scores(layout, first)[0]) == table.num_rows - 1
