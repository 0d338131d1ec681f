"""The semantic filter of one shard (core/semantic_filter/sentence_filter.py): entropy below the
threshold first, then the perplexity window, with scores reused from the fit when they match."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from realsyn_assets.core.io import write_table
from realsyn_assets.core.semantic_filter.entropy import REJECT_LOW_ENTROPY
from realsyn_assets.core.semantic_filter.perplexity import (
    REJECT_PERPLEXITY_HIGH,
    REJECT_PERPLEXITY_LOW,
)
from realsyn_assets.core.semantic_filter.sentence_filter import (
    filter_sentences,
    score_summary,
    semantic_reasons,
)
from realsyn_assets.core.semantic_filter.statistics import (
    NGRAM_FILE,
    WINDOW_FILE,
    WORDS_FILE,
    count_words,
    fit_language_model,
)

SUBJECTS = ["the dog", "a small boy", "the old man", "my sister", "a young girl", "the band"]
VERBS = ["runs across", "walks along", "plays near", "sits beside", "waits under"]
PLACES = ["the green field", "a wooden bridge", "the quiet river", "the busy street"]


def test_reasons_entropy_first_then_the_window():
    entropy = np.array([0.1, 0.5, 0.5, 0.5, 0.5, 0.29, 0.3], np.float32)
    ppl = np.array([50.0, 5.0, 500.0, 50.0, math.nan, 500.0, 10.0])
    reasons = semantic_reasons(entropy, ppl, low=10.0, high=200.0, entropy_threshold=0.3)
    assert reasons == [
        REJECT_LOW_ENTROPY,  # low entropy, fluent
        REJECT_PERPLEXITY_LOW,
        REJECT_PERPLEXITY_HIGH,
        None,
        REJECT_PERPLEXITY_HIGH,  # nothing to score
        REJECT_LOW_ENTROPY,  # entropy takes precedence over the window
        None,  # both bounds inclusive
    ]


def _fit(tmp_path, texts: list[str]) -> tuple:
    ids = [f"s{i:03d}" for i in range(len(texts))]
    table = pa.table({"sentence_id": ids, "text": texts})
    source = write_table(table, tmp_path / "shard-a.parquet")
    words = count_words([str(source)])
    folder = tmp_path / "stats"
    write_table(words, folder / WORDS_FILE)
    window = fit_language_model(folder, ["shard-a"], [table], words, keep_fraction=0.6)
    return folder, ids, window


def test_filter_reuses_fitted_scores_and_scores_new_sentences_alike(tmp_path):
    texts = [f"{s} {v} {p}." for s in SUBJECTS for v in VERBS for p in PLACES]
    texts += ["Zyx qwv plorth gnarf, 123 456!", "the the the the the."]
    folder, ids, (low, high) = _fit(tmp_path, texts)
    assert (folder / NGRAM_FILE).exists() and (folder / WINDOW_FILE).exists()

    fitted = filter_sentences(folder, "shard-a", ids, texts)
    assert fitted.reused and fitted.window == (low, high)
    assert fitted.entropy.dtype == np.float32 and fitted.perplexity.dtype == np.float64
    assert len(fitted.reasons) == len(texts)
    assert fitted.reasons == semantic_reasons(fitted.entropy, fitted.perplexity, low, high)
    kept = sum(r is None for r in fitted.reasons)
    assert 0 < kept < len(texts)
    assert {REJECT_PERPLEXITY_LOW, REJECT_PERPLEXITY_HIGH} <= set(fitted.reasons)

    # a threshold above some sentences' entropy: exactly those become low_entropy
    threshold = float(np.median(fitted.entropy))
    strict = filter_sentences(folder, "shard-a", ids, texts, entropy_threshold=threshold)
    for h, before, after in zip(fitted.entropy, fitted.reasons, strict.reasons, strict=True):
        assert after == (REJECT_LOW_ENTROPY if h < threshold else before)

    # another shard (not part of the fit): scored here, not leave-one-out, so finite
    new_texts = texts[:10]
    fresh = filter_sentences(folder, "shard-b", [f"n{i}" for i in range(10)], new_texts)
    assert not fresh.reused
    assert np.isfinite(fresh.perplexity).all()
    np.testing.assert_allclose(fresh.entropy, fitted.entropy[:10], rtol=1e-6)


def test_empty_shard_and_summary(tmp_path):
    folder, _, _ = _fit(
        tmp_path, [f"{s} {v} {p}." for s in SUBJECTS for v in VERBS for p in PLACES]
    )
    empty = filter_sentences(folder, "shard-c", [], [])
    assert empty.reasons == [] and len(empty.entropy) == 0 and len(empty.perplexity) == 0
    assert score_summary(empty.entropy, empty.perplexity) == (0.0, 0.0)
    mean, median = score_summary(np.array([0.2, 0.4], np.float32), np.array([1.0, 3.0, 10.0]))
    assert math.isclose(mean, 0.3, rel_tol=1e-6) and median == 3.0
