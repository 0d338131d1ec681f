"""Independent recounts behind the balance checks (paper §3.3): they recompute from the files an
asset wrote, and from the paper's numbers, what the asset claims, so a check can disagree.

- `window_audit`: the image_clusters assignments recounted against the recorded cosine window,
  and the kept share compared with the paper's (198M -> 168.3M pairs, 85 %).
- `size_target`: the size a scale's balanced subset should have, derived from the in-window pool
  and the paper (its share of the pool, or its fixed caps), not from the subset itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from realsyn_assets.core.balance.sampling import (
    PAPER_CAP,
    PAPER_FRACTION,
    PAPER_KEEP_FRACTION,
    SCALE_CAPS,
    SCALE_SHARES,
    capped_total,
    cosine_window_mask,
)

# The window keeps the paper's share of pairs to within this many percentage points (plus the
# rounding of two pairs, see `keep_tolerance`).
KEEP_TOLERANCE = 0.05
# A paper_fraction subset hits the paper's share of the pool to within 1 percentage point, or
# the granularity of the per-cluster cap when that is coarser (few clusters).
SHARE_TOLERANCE = 0.01


@dataclass(frozen=True)
class WindowAudit:
    """The assignments file recounted: how many pairs, how many in the window, and the rows
    that disagree with the recorded window or cluster count."""

    pairs: int
    in_window: int
    nan_scores: int  # pairs whose syn_score is not a finite number (never in a window)
    mismatched: int  # rows whose in_window flag disagrees with low <= syn_score <= high
    bad_clusters: int  # in-window rows without a valid cluster id, or others with one

    @property
    def kept_fraction(self) -> float:
        return self.in_window / self.pairs if self.pairs else 0.0


def window_audit(assignments: pa.Table, low: float, high: float, clusters: int) -> WindowAudit:
    """Recount `assignments` (float `syn_score`, bool `in_window`, int `cluster`) against the
    window `[low, high]` and `clusters` cluster ids (in-window rows: 0..clusters-1, others -1)."""
    scores = np.asarray(assignments.column("syn_score").to_numpy(zero_copy_only=False), np.float32)
    flags = np.asarray(assignments.column("in_window").to_numpy(zero_copy_only=False), bool)
    labels = np.asarray(assignments.column("cluster").to_numpy(zero_copy_only=False), np.int64)
    expected = cosine_window_mask(scores, low, high)
    valid = (labels >= 0) & (labels < clusters)
    return WindowAudit(
        pairs=int(scores.size),
        in_window=int(flags.sum()),
        nan_scores=int((~np.isfinite(scores)).sum()),
        mismatched=int((flags != expected).sum()),
        bad_clusters=int((flags & ~valid).sum() + (~flags & (labels != -1)).sum()),
    )


def keep_tolerance(pairs: int) -> float:
    """How far the kept share may stray from the paper's: `KEEP_TOLERANCE`, plus two pairs'
    worth, the rounding a quantile-calibrated window has on a small pool."""
    return KEEP_TOLERANCE + (2.0 / pairs if pairs else 1.0)


def keeps_paper_share(audit: WindowAudit) -> bool:
    """True when the window keeps the paper's 85 % of pairs, within `keep_tolerance`."""
    return abs(audit.kept_fraction - PAPER_KEEP_FRACTION) <= keep_tolerance(audit.pairs)


@dataclass(frozen=True)
class SizeTarget:
    """The size a scale's subset should have, and how far it may be from it."""

    target: float
    tolerance: float
    pool: int  # in-window pairs
    clusters: int  # non-empty clusters among them

    def accepts(self, samples: int) -> bool:
        return abs(samples - self.target) <= self.tolerance


def size_target(sizes: np.ndarray, scale: str, rule: str) -> SizeTarget:
    """The target size of `scale`'s subset drawn from in-window pairs whose clusters have
    `sizes` pairs each (any order; zeros ignored).

    paper_fraction: the paper's share of the pool (9.06 / 18.02 / 59.93 %), within
    `SHARE_TOLERANCE` of the pool or the cap's granularity: one more unit of cap adds at most one
    pair per cluster, so the closest cap lands within k/2 of the target for k clusters (k - target
    when even a cap of 1 overshoots). paper_cap: exactly sum(min(cluster size, paper cap)).
    """
    if scale not in SCALE_CAPS:
        raise ValueError(f"unknown scale {scale!r}; expected one of {list(SCALE_CAPS)}")
    sizes = np.asarray(sizes, dtype=np.int64).ravel()
    pool, k = int(sizes.sum()), int((sizes > 0).sum())
    if rule == PAPER_CAP:
        return SizeTarget(float(capped_total(sizes, SCALE_CAPS[scale])), 0.0, pool, k)
    if rule != PAPER_FRACTION:
        raise ValueError(f"unknown cap rule {rule!r}; expected {PAPER_FRACTION} or {PAPER_CAP}")
    target = SCALE_SHARES[scale] * pool
    tolerance = max(SHARE_TOLERANCE * pool, k / 2.0, k - target)
    return SizeTarget(target, tolerance, pool, k)
