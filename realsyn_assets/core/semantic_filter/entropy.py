"""Sentence information entropy with corpus word probabilities (paper Eq. 1).

The paper writes θ(x) = −Σ p(x_i)·log p(x_i) with p the probability of word x_i in the whole
corpus and drops θ < 0.3, without giving the log base or a normalisation. Taken literally,
corpus probabilities are tiny (a word with p = 1e-4 adds 9e-4), so every sentence would score far
below 0.3. We therefore use the normalised form: the mean self-information of the sentence's
words, divided by the largest possible self-information (a word seen once), i.e.

    θ(x) = (1/n) Σ_i −ln p(x_i) / ln N,      p(w) = count(w) / N,  N = corpus word count,

which lies in [0, 1], keeps the paper's intent (sentences made of very common, uninformative
words score low) and makes the 0.3 threshold meaningful on any corpus size.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping

# One pattern for Python and DuckDB (RE2-compatible) so both tokenise identically.
WORD_PATTERN = r"[a-z0-9]+(?:'[a-z]+)?"
_WORD = re.compile(WORD_PATTERN)

ENTROPY_THRESHOLD = 0.3  # paper
REJECT_LOW_ENTROPY = "low_entropy"  # rejection reason of a sentence below the threshold


def words(sentence: str) -> list[str]:
    return _WORD.findall(sentence.lower())


def word_counts(sentences: Iterable[str]) -> Counter:
    counts: Counter = Counter()
    for sentence in sentences:
        counts.update(words(sentence))
    return counts


def normalised_entropy(sentence: str, counts: Mapping[str, int], total: int) -> float:
    """θ(x) in [0, 1]; unseen words count as seen once. 0.0 for a sentence with no words."""
    tokens = words(sentence)
    if not tokens or total <= 1:
        return 0.0
    log_total = math.log(total)
    surprisal = sum(log_total - math.log(max(counts.get(t, 1), 1)) for t in tokens)
    return surprisal / (len(tokens) * log_total)
