"""Semantic balance sampling (paper §3.3).

Two steps turn the 198M image-text samples into RealSyn15M / 30M / 100M:
1. drop pairs whose image / synthetic-text cosine falls outside a window (paper: 0.51-0.61 for
   EVA02-CLIP E/14-plus; too high = OCR-like text copying, too low = mismatch);
2. cluster the image embeddings (1M centres) and keep at most `cap` samples per cluster
   (20 / 35 / 180), all of smaller clusters, so frequent concepts stop dominating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

SCALE_CAPS: dict[str, int] = {"15M": 20, "30M": 35, "100M": 180}
# Paper's window for EVA02-CLIP E/14-plus; other encoders have other similarity scales,
# so recalibrate with `calibrate_window` instead of reusing these numbers.
COSINE_WINDOW = (0.51, 0.61)
# Paper: 198M pairs -> 168.3M kept by the window.
PAPER_KEEP_FRACTION = 168.3 / 198.0
# The encoders `COSINE_WINDOW` was set for: with their pretrained weights the paper's window
# applies as is; every other encoder gets a calibrated window.
PAPER_WINDOW_ENCODERS = ("EVA02-E-14-plus",)


def pair_cosine(image_vecs: np.ndarray, text_vecs: np.ndarray) -> np.ndarray:
    """Row-wise dot product of paired unit-norm vectors (= cosine), float32."""
    a = np.asarray(image_vecs, dtype=np.float32)
    b = np.asarray(text_vecs, dtype=np.float32)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired arrays must have equal 2-d shapes, got {a.shape} and {b.shape}")
    return np.einsum("ij,ij->i", a, b, dtype=np.float32)


def cosine_window_mask(sims: np.ndarray, low: float, high: float) -> np.ndarray:
    """True where `low <= sim <= high` (the paper removes `< low` and `> high`); NaN is False."""
    if low > high:
        raise ValueError(f"empty window: low {low} > high {high}")
    s = np.asarray(sims)
    return (s >= low) & (s <= high)


def calibrate_window(
    sims: np.ndarray,
    keep_fraction: float = PAPER_KEEP_FRACTION,
    low_tail_share: float = 0.5,
) -> tuple[float, float]:
    """Choose `(low, high)` so the window keeps `keep_fraction` of these similarities.

    The paper's 0.51-0.61 only makes sense on EVA02-CLIP's similarity scale; for another
    encoder we keep the paper's *effect* instead: the same fraction of pairs (85 %). The
    dropped `1 - keep_fraction` is split between the two tails, `low_tail_share` of it below
    `low` (mismatched pairs) and the rest above `high` (OCR-like pairs). The bounds are
    empirical quantiles of the finite `sims`, so `cosine_window_mask(sims, low, high)` keeps
    `keep_fraction` of them up to ties and one element of rounding.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if not 0.0 <= low_tail_share <= 1.0:
        raise ValueError(f"low_tail_share must be in [0, 1], got {low_tail_share}")
    s = np.asarray(sims, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("no finite similarities to calibrate on")
    drop = 1.0 - keep_fraction
    q_low = drop * low_tail_share
    q_high = 1.0 - drop * (1.0 - low_tail_share)
    # "higher"/"lower" return observed similarities (no interpolation), so the inclusive mask
    # keeps `keep_fraction` of the sample to within about two elements when there are no ties.
    low = float(np.quantile(s, q_low, method="higher")) if q_low > 0 else float(s.min())
    high = float(np.quantile(s, q_high, method="lower")) if q_high < 1 else float(s.max())
    if low > high:
        low = high = float(np.quantile(s, q_low))
    return low, high


def choose_window(
    sims: np.ndarray,
    configured: tuple[float, float],
    model_name: str,
    pretrained: str,
) -> tuple[float, float, str]:
    """`(low, high, source)` of the cosine window for these similarities.

    `configured` wins when both bounds are >= 0 ("configured"); the paper's window is used for
    the pretrained encoder it was set for ("paper"); otherwise the window is calibrated to keep
    the paper's fraction of pairs ("calibrated"), because similarity scales differ by encoder.
    """
    low, high = configured
    if low >= 0 and high >= 0:
        return low, high, "configured"
    if model_name in PAPER_WINDOW_ENCODERS and pretrained:
        low, high = COSINE_WINDOW
        return low, high, "paper"
    low, high = calibrate_window(sims)
    return low, high, "calibrated"


def _cluster_ranks(labels: np.ndarray, seed: int) -> np.ndarray:
    """Each item's position in a seeded random permutation of its own cluster."""
    n = labels.shape[0]
    keys = np.random.default_rng(seed).random(n)
    order = np.lexsort((keys, labels))
    sorted_labels = labels[order]
    is_start = np.ones(n, dtype=bool)
    is_start[1:] = sorted_labels[1:] != sorted_labels[:-1]
    start_pos = np.maximum.accumulate(np.where(is_start, np.arange(n), 0))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - start_pos
    return ranks


def cap_per_cluster(labels: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the balanced subset: at most `cap` items per cluster label.

    Clusters with `size <= cap` are kept whole; larger ones contribute a uniform random `cap`.
    Every cluster gets ONE fixed random order (derived from `seed`, independent of `cap`) and
    we keep its first `cap` members, so subsets for increasing caps are nested:
    RealSyn15M (20) ⊂ RealSyn30M (35) ⊂ RealSyn100M (180) for the same labels and seed. The
    paper does not say whether its subsets nest; nesting makes scales comparable (every
    extra sample at a larger scale is an addition, never a swap) and lets a larger subset be
    materialised incrementally. Labels may be any integers (e.g. -1 = its own group).
    """
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    lab = np.asarray(labels).astype(np.int64, copy=False).ravel()
    if lab.size == 0 or cap == 0:
        return np.empty(0, dtype=np.int64)
    ranks = _cluster_ranks(lab, seed)
    return np.flatnonzero(ranks < cap).astype(np.int64)


def _gini(sizes: np.ndarray) -> float:
    """Gini coefficient of cluster sizes: 0 = perfectly balanced, -> 1 = one cluster has all."""
    x = np.sort(sizes.astype(np.float64))
    n = x.size
    total = x.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float((2.0 * np.sum(i * x)) / (n * total) - (n + 1.0) / n)


def cluster_size_stats(labels: np.ndarray) -> dict[str, float]:
    """Size distribution of the non-empty clusters: n_clusters, max, mean, p50, p90, gini.

    Used to show (as in the paper's Fig. 9) that capping flattens the distribution.
    """
    lab = np.asarray(labels).astype(np.int64, copy=False).ravel()
    if lab.size == 0:
        return {"n_clusters": 0.0, "max": 0.0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "gini": 0.0}
    _, sizes = np.unique(lab, return_counts=True)
    return {
        "n_clusters": float(sizes.size),
        "max": float(sizes.max()),
        "mean": float(sizes.mean()),
        "p50": float(np.percentile(sizes, 50)),
        "p90": float(np.percentile(sizes, 90)),
        "gini": _gini(sizes),
    }


@dataclass(frozen=True)
class BalancedSelection:
    """The pairs one scale keeps, and the numbers that say whether the cap rule held."""

    indices: np.ndarray  # sorted row indices into the image_clusters assignments
    candidate_pairs: int  # pairs inside the cosine window
    clusters: int  # non-empty clusters among the candidates
    expected_samples: int  # sum over clusters of min(size, cap)


def select_balanced(assignments: pa.Table, cap: int, seed: int = 0) -> BalancedSelection:
    """Apply `cap_per_cluster` to the in-window rows of the image_clusters assignments table.

    `assignments` has one row per image-text pair with boolean `in_window` and integer
    `cluster` (-1 outside the window). The expected size lets a check verify the export.
    """
    in_window = np.asarray(assignments.column("in_window").to_numpy(zero_copy_only=False))
    candidates = np.flatnonzero(in_window)
    labels = np.asarray(assignments.column("cluster").to_numpy())[candidates]
    selected = candidates[cap_per_cluster(labels, cap, seed=seed)]
    sizes = np.bincount(labels[labels >= 0]) if len(labels) else np.zeros(1, np.int64)
    return BalancedSelection(
        indices=selected,
        candidate_pairs=len(candidates),
        clusters=int((sizes > 0).sum()),
        expected_samples=int(np.minimum(sizes, cap).sum()),
    )
