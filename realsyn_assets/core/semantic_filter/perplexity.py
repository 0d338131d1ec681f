"""Sentence perplexity (paper Eq. 2) and the perplexity window filter (paper §3.1, semantic stage).

RealSyn keeps sentences with ``30 <= PPL <= 200`` under GPT-2 large, where

    PPL(x) = exp( -(1/t) * sum_i log p(x_i | x_<i) ),   t = number of tokens.

Very low perplexity catches repetitive boilerplate (templated lines that occur again and
again); very high perplexity catches garbled text, lists of names and number soup. Two scorers
implement the ``PerplexityScorer`` protocol: ``gpt2.GPT2Scorer`` (the paper's model) and
``ngram.NGramScorer`` (offline, estimated on the corpus itself).

**Window for another scorer.** 30–200 is calibrated for GPT-2 large. The n-gram model's scale is
different (corpus size, vocabulary), so ``calibrate_window`` maps the window by *keeping the same
fraction* of sentences (quantiles of the scores). The paper does not report what fraction its
window keeps on its own; the only number it gives is for the whole semantic stage, entropy plus
perplexity: 1.82B -> 1.16B sentences, i.e. 63.7 % kept (``PAPER_SEMANTIC_KEEP_FRACTION``). That is
the default target. If the entropy filter runs first and keeps a fraction ``e``, target
``perplexity_keep_fraction(e)`` = 0.637 / e for the perplexity filter so the stage as a whole
matches the paper. The removed mass is split between the two tails (``low_tail_share``, default
one half, since the paper gives no split). The low end then holds templated lines, the high end
rare-word fragments and garbled text; on a small corpus the high end also catches fluent
sentences with rare vocabulary, which improves with corpus size (or use GPT-2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

PAPER_PPL_WINDOW = (30.0, 200.0)
PAPER_SEMANTIC_KEEP_FRACTION = 1.16 / 1.82  # entropy + perplexity stage [v3 §3.1]

REJECT_PERPLEXITY_LOW = "perplexity_low"
REJECT_PERPLEXITY_HIGH = "perplexity_high"
REJECT_REASONS = (REJECT_PERPLEXITY_LOW, REJECT_PERPLEXITY_HIGH)


@runtime_checkable
class PerplexityScorer(Protocol):
    """Anything that turns sentences into one perplexity each (float64, NaN = nothing to score)."""

    name: str

    def perplexity(self, sentences: Sequence[str]) -> np.ndarray: ...


def perplexity_keep_fraction(entropy_keep_fraction: float = 1.0) -> float:
    """Fraction the perplexity filter should keep so that entropy + perplexity together keep the
    paper's 1.16/1.82 of their input (capped at 1)."""
    if not 0.0 < entropy_keep_fraction <= 1.0:
        raise ValueError("entropy_keep_fraction must be in (0, 1]")
    return min(1.0, PAPER_SEMANTIC_KEEP_FRACTION / entropy_keep_fraction)


def calibrate_window(
    ppl: np.ndarray | Sequence[float],
    reference_keep_fraction: float = PAPER_SEMANTIC_KEEP_FRACTION,
    low_tail_share: float = 0.5,
) -> tuple[float, float]:
    """``(low, high)`` such that ``low <= ppl <= high`` keeps ``reference_keep_fraction`` of the
    finite scores; ``low_tail_share`` of the removed mass comes from the low (boilerplate) end."""
    if not 0.0 < reference_keep_fraction <= 1.0:
        raise ValueError("reference_keep_fraction must be in (0, 1]")
    if not 0.0 <= low_tail_share <= 1.0:
        raise ValueError("low_tail_share must be in [0, 1]")
    values = np.asarray(ppl, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite perplexities to calibrate on")
    drop = 1.0 - reference_keep_fraction
    low = float(np.quantile(values, drop * low_tail_share))
    high = float(np.quantile(values, 1.0 - drop * (1.0 - low_tail_share)))
    return low, high


def window_rejection(ppl: float, low: float, high: float) -> str | None:
    """``"perplexity_low"`` / ``"perplexity_high"`` / None (keep; bounds inclusive). NaN — a
    sentence with nothing to score — counts as ``"perplexity_high"`` (not fluent text)."""
    if ppl < low:
        return REJECT_PERPLEXITY_LOW
    if ppl > high or ppl != ppl:
        return REJECT_PERPLEXITY_HIGH
    return None


def window_rejections(
    ppl: np.ndarray | Sequence[float], low: float, high: float
) -> list[str | None]:
    """``window_rejection`` for an array of perplexities."""
    values = np.asarray(ppl, dtype=np.float64).ravel()
    out: list[str | None] = [None] * len(values)
    for i in np.flatnonzero(values < low).tolist():
        out[i] = REJECT_PERPLEXITY_LOW
    for i in np.flatnonzero(~(values <= high) & ~(values < low)).tolist():
        out[i] = REJECT_PERPLEXITY_HIGH
    return out


__all__ = [
    "PAPER_PPL_WINDOW",
    "PAPER_SEMANTIC_KEEP_FRACTION",
    "PerplexityScorer",
    "REJECT_PERPLEXITY_HIGH",
    "REJECT_PERPLEXITY_LOW",
    "REJECT_REASONS",
    "calibrate_window",
    "perplexity_keep_fraction",
    "window_rejection",
    "window_rejections",
]
