"""Entropy filter: normalised mean self-information with corpus word probabilities."""

from __future__ import annotations

import math

from realsyn_assets.core.semantic_filter.entropy import normalised_entropy, word_counts, words


def test_words_tokenisation():
    assert words("The cat's toy, 3 times!") == ["the", "cat's", "toy", "3", "times"]


def test_common_words_score_lower_than_rare_ones():
    corpus = ["the cat sat on the mat"] * 50 + ["a crimson star glows above the quiet harbour"]
    counts = word_counts(corpus)
    total = sum(counts.values())
    common = normalised_entropy("the cat sat on the mat", counts, total)
    rare = normalised_entropy("a crimson star glows above the quiet harbour", counts, total)
    assert 0.0 <= common < rare <= 1.0
    # a word seen once scores exactly 1; empty sentence scores 0
    assert math.isclose(normalised_entropy("harbour", counts, total), 1.0)
    assert normalised_entropy("", counts, total) == 0.0
    assert normalised_entropy("unseen words", counts, total) == 1.0
