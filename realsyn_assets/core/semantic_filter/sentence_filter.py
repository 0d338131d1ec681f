"""The semantic filter for one shard's sentences (paper §3.1): information entropy below 0.3 is
dropped, then sentences outside the perplexity window.

Scores come from the corpus statistics folder (`statistics.py`): stored per sentence when the
shard's sentences are exactly those the statistics were fit on, computed here otherwise (a shard
extracted after the fit, or GPT-2 perplexity, which is scored per shard). Re-fitting the
statistics folds new shards into the corpus statistics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realsyn_assets.core.io import read_table
from realsyn_assets.core.semantic_filter.entropy import ENTROPY_THRESHOLD, REJECT_LOW_ENTROPY
from realsyn_assets.core.semantic_filter.perplexity import window_rejections
from realsyn_assets.core.semantic_filter.scores import entropies, load_scores
from realsyn_assets.core.semantic_filter.statistics import NGRAM_FILE, WINDOW_FILE, WORDS_FILE


@dataclass(frozen=True)
class SemanticFilterResult:
    """Row-aligned with the input sentences."""

    entropy: np.ndarray  # float32, normalised entropy (Eq. 1)
    perplexity: np.ndarray  # float64 (Eq. 2); NaN = nothing to score
    reasons: list[str | None]  # None = kept, else the rejection reason
    window: tuple[float, float]  # perplexity window (low, high), bounds inclusive
    reused: bool  # perplexities read from the statistics folder, not computed here


def sentence_scores(
    folder: Path, shard: str, ids: Sequence[str], texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """(entropy, perplexity, window low, window high, reused) for one shard's sentences."""
    window = json.loads((folder / WINDOW_FILE).read_text())
    low, high = float(window["low"]), float(window["high"])
    cached = load_scores(folder, shard, ids, window.get("fit_id"))
    entropy, ppl = cached if cached is not None else (None, None)
    reused = ppl is not None
    if entropy is None:
        entropy = entropies(texts, read_table(folder / WORDS_FILE))
    if ppl is None and not texts:
        ppl = np.zeros(0, np.float64)
    elif ppl is None and window["scorer"] == "gpt2":
        from realsyn_assets.core.semantic_filter.gpt2 import GPT2Scorer

        ppl = np.asarray(GPT2Scorer(window["model"]).perplexity(texts), np.float64)
    elif ppl is None:
        from realsyn_assets.core.semantic_filter.ngram import NGramScorer

        # Sentences the model was fit on have stored leave-one-out scores; these were not part
        # of the fit, so they are scored as they are (leave-one-out on a sentence the model never
        # counted drives probabilities to zero and the perplexity to infinity).
        model = NGramScorer.load(folder / NGRAM_FILE)
        ppl = np.asarray(model.perplexity(texts), np.float64)
    return entropy, ppl, low, high, reused


def semantic_reasons(
    entropy: np.ndarray,
    perplexity: np.ndarray,
    low: float,
    high: float,
    entropy_threshold: float = ENTROPY_THRESHOLD,
) -> list[str | None]:
    """Per sentence: "low_entropy" below the threshold, else the perplexity window's reason."""
    return [
        REJECT_LOW_ENTROPY if h < entropy_threshold else r
        for h, r in zip(entropy, window_rejections(perplexity, low, high), strict=True)
    ]


def filter_sentences(
    folder: Path,
    shard: str,
    ids: Sequence[str],
    texts: Sequence[str],
    entropy_threshold: float = ENTROPY_THRESHOLD,
) -> SemanticFilterResult:
    """Score one shard's sentences against the statistics in `folder` and decide each one."""
    entropy, ppl, low, high, reused = sentence_scores(folder, shard, ids, texts)
    reasons = semantic_reasons(entropy, ppl, low, high, entropy_threshold)
    return SemanticFilterResult(entropy, ppl, reasons, (low, high), reused)


def score_summary(entropy: np.ndarray, perplexity: np.ndarray) -> tuple[float, float]:
    """(mean entropy, median perplexity) of a shard; 0.0 for an empty one."""
    return (
        float(entropy.mean()) if len(entropy) else 0.0,
        float(np.median(perplexity)) if len(perplexity) else 0.0,
    )
