"""Semantic balance sampling (paper §3.3).

Two steps turn the 198M image-text samples into RealSyn15M / 30M / 100M:
1. drop pairs whose image / synthetic-text cosine falls outside a window (paper: 0.51-0.61 for
   EVA02-CLIP E/14-plus; too high = OCR-like text copying, too low = mismatch);
2. cluster the image embeddings (1M centres) and keep at most `cap` samples per cluster
   (20 / 35 / 180), all of smaller clusters, so frequent concepts stop dominating.

The paper's fixed caps only reproduce its subset sizes for its own cluster-size distribution
(~168 pairs per cluster over 168.3M pairs). The default rule here ("paper_fraction") instead
solves, per scale, the cap whose capped total is closest to the paper's share of the pool
(15.24M, 30.33M, 100.86M of 168.3M), so a corpus of any size gets subsets of the paper's
proportions; "paper_cap" keeps 20 / 35 / 180.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

# The paper's fixed per-cluster caps (§3.3), one per released scale, smallest first.
SCALE_CAPS: dict[str, int] = {"15M": 20, "30M": 35, "100M": 180}
# Millions of pairs: the pool the caps act on (after the window) and each released subset.
PAPER_POOL_M = 168.3
PAPER_SCALE_SAMPLES_M: dict[str, float] = {"15M": 15.24, "30M": 30.33, "100M": 100.86}
# Each scale's share of the pool: 9.06 %, 18.02 %, 59.93 %.
SCALE_SHARES: dict[str, float] = {s: m / PAPER_POOL_M for s, m in PAPER_SCALE_SAMPLES_M.items()}
CapRule = Literal["paper_fraction", "paper_cap"]
PAPER_FRACTION: CapRule = "paper_fraction"
PAPER_CAP: CapRule = "paper_cap"
# Paper's window for EVA02-CLIP E/14-plus; other encoders have other similarity scales,
# so recalibrate with `calibrate_window` instead of reusing these numbers.
COSINE_WINDOW = (0.51, 0.61)
# Paper: 198M pairs -> 168.3M kept by the window.
PAPER_KEEP_FRACTION = 168.3 / 198.0
# The encoders `COSINE_WINDOW` was set for: with their real weights (a pretrained tag or a
# local checkpoint of them) the paper's window applies as is; every other encoder, and these
# with random or bootstrap weights, gets a calibrated window.
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
    weights: str,
) -> tuple[float, float, str]:
    """`(low, high, source)` of the cosine window for these similarities.

    `weights` names the encoder's real weights: its pretrained tag or its local checkpoint file
    (a downloaded EVA02 checkpoint is the same model as the hub tag); empty for random or
    bootstrap weights. `configured` wins when both bounds are >= 0 ("configured"); the paper's
    window is used for the encoder it was set for with real weights ("paper"); otherwise the
    window is calibrated to keep the paper's fraction of pairs ("calibrated"), because
    similarity scales differ by encoder and weights.
    """
    low, high = configured
    if low >= 0 and high >= 0:
        return low, high, "configured"
    if model_name in PAPER_WINDOW_ENCODERS and weights:
        low, high = COSINE_WINDOW
        return low, high, "paper"
    low, high = calibrate_window(sims)
    return low, high, "calibrated"


def _cluster_ranks(labels: np.ndarray, seed: int) -> np.ndarray:
    """Each item's position in a seeded random permutation of its own cluster.

    One sort of unique int64 keys `label << 32 | r` with r a seeded permutation of 0..n-1:
    the keys order items by cluster, then randomly inside it, and being unique they give the
    same order whatever sort algorithm numpy picks. Needs n < 2**32 and |label| < 2**31.
    """
    n = labels.shape[0]
    if n >= 1 << 32 or (n and max(-int(labels.min()), int(labels.max())) >= 1 << 31):
        raise ValueError("too many items or cluster ids out of int32 range")
    keys = (labels.astype(np.int64) << 32) | np.random.default_rng(seed).permutation(n)
    order = np.argsort(keys)
    del keys
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


def capped_total(sizes: np.ndarray, cap: int) -> int:
    """Pairs a per-cluster cap keeps: sum over clusters of min(size, cap)."""
    return int(np.minimum(np.asarray(sizes, dtype=np.int64), cap).sum())


def solve_cap(sizes: np.ndarray, share: float) -> int:
    """The per-cluster cap T >= 1 whose capped total sum(min(size, T)) is closest to
    `share * sum(sizes)` (ties go to the smaller cap).

    The capped total is non-decreasing in T, so a binary search over T finds the first cap
    reaching the target; each evaluation is one `searchsorted` over the sorted sizes plus a
    prefix sum, O(k log k) in all for k clusters. A share >= 1 keeps every cluster whole
    (T = largest size); 0 clusters give 0.
    """
    if not 0.0 <= share:
        raise ValueError(f"share must be >= 0, got {share}")
    s = np.sort(np.asarray(sizes, dtype=np.int64).ravel())
    s = s[s > 0]
    if s.size == 0:
        return 0
    prefix = np.concatenate([[0], np.cumsum(s)])
    k, total, largest = s.size, int(prefix[-1]), int(s[-1])
    target = share * total

    def total_at(cap: int) -> int:
        below = int(np.searchsorted(s, cap, side="right"))
        return int(prefix[below]) + cap * (k - below)

    if target >= total:
        return largest
    lo, hi = 1, largest  # total_at(largest) == total > target
    while lo < hi:
        mid = (lo + hi) // 2
        if total_at(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    if lo > 1 and target - total_at(lo - 1) <= total_at(lo) - target:
        return lo - 1
    return lo


def scale_cap(sizes: np.ndarray, scale: str, rule: CapRule) -> int:
    """The per-cluster cap of `scale` under `rule`: the paper's fixed cap, or the cap solved to
    the paper's share of the pool. Larger scales never get smaller caps, so subsets nest."""
    if scale not in SCALE_CAPS:
        raise ValueError(f"unknown scale {scale!r}; expected one of {list(SCALE_CAPS)}")
    if rule == PAPER_CAP:
        return SCALE_CAPS[scale]
    if rule == PAPER_FRACTION:
        return solve_cap(sizes, SCALE_SHARES[scale])
    raise ValueError(f"unknown cap rule {rule!r}; expected {PAPER_FRACTION} or {PAPER_CAP}")


def select_random(n_rows: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of `size` rows drawn uniformly without replacement from `n_rows`.

    The paper's ablation baseline (random sampling of the same size as the balanced subset).
    The draw is a prefix of one seeded permutation, so for a fixed seed a smaller random subset
    is contained in a larger one, as the balanced subsets are.
    """
    if n_rows < 0 or not 0 <= size <= n_rows:
        raise ValueError(f"need 0 <= size <= n_rows, got size {size} of {n_rows}")
    order = np.random.default_rng(seed).permutation(n_rows)[:size]
    return np.sort(order).astype(np.int64, copy=False)


@dataclass(frozen=True)
class BalancedSelection:
    """The pairs one scale keeps, and the numbers that say whether the cap rule held."""

    indices: np.ndarray  # sorted row indices into the image_clusters assignments
    candidate_pairs: int  # pairs inside the cosine window
    clusters: int  # non-empty clusters among the candidates
    expected_samples: int  # sum over clusters of min(size, cap)
    cap: int
    cap_rule: str
    target_share: float  # the paper's share of the pool for this scale (under either rule)
    sizes_before: np.ndarray  # candidate pairs per cluster id
    sizes_after: np.ndarray  # selected pairs per cluster id

    @property
    def achieved_share(self) -> float:
        return self.indices.size / self.candidate_pairs if self.candidate_pairs else 0.0


def candidate_labels(assignments: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, cluster ids) of the in-window rows of the image_clusters assignments.

    Raises ValueError when an in-window row has a negative cluster id.
    """
    in_window = np.asarray(assignments.column("in_window").to_numpy(zero_copy_only=False))
    candidates = np.flatnonzero(in_window)
    labels = np.asarray(assignments.column("cluster").to_numpy(), dtype=np.int64)[candidates]
    if labels.size and labels.min() < 0:
        raise ValueError("in-window pairs without a cluster: rematerialize image_clusters")
    return candidates, labels


def select_scales(
    assignments: pa.Table,
    scales: list[str] | None = None,
    rule: CapRule = PAPER_FRACTION,
    seed: int = 0,
) -> dict[str, BalancedSelection]:
    """The balanced subsets of `scales` (default: all, smallest first) from the image_clusters
    `assignments` (boolean `in_window`, integer `cluster`): in-window rows capped per cluster
    by `scale_cap`.

    Each candidate gets one seeded random rank inside its cluster, computed once and the same
    for every scale and rule; a scale keeps the ranks below its cap, so for one seed and one
    assignments table 15M ⊂ 30M ⊂ 100M by construction.
    """
    candidates, labels = candidate_labels(assignments)
    before = (np.bincount(labels) if labels.size else np.zeros(0, np.int64)).astype(np.int64)
    ranks = _cluster_ranks(labels, seed) if labels.size else np.zeros(0, np.int64)
    out = {}
    for scale in scales or list(SCALE_CAPS):
        cap = scale_cap(before, scale, rule)
        chosen = np.flatnonzero(ranks < cap)
        out[scale] = BalancedSelection(
            indices=candidates[chosen].astype(np.int64, copy=False),
            candidate_pairs=int(candidates.size),
            clusters=int((before > 0).sum()),
            expected_samples=capped_total(before, cap),
            cap=int(cap),
            cap_rule=rule,
            target_share=SCALE_SHARES[scale],
            sizes_before=before,
            sizes_after=np.minimum(before, cap),
        )
    return out


def select_balanced(
    assignments: pa.Table, scale: str, rule: CapRule = PAPER_FRACTION, seed: int = 0
) -> BalancedSelection:
    """The balanced subset of one `scale` (see `select_scales`)."""
    return select_scales(assignments, [scale], rule, seed)[scale]
