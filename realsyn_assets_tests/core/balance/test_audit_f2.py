"""The recounts behind the balance checks: the window audit counts what disagrees, and the size
target's tolerance admits every subset the cap solver draws (so the check never fails a correct
subset) while rejecting another scale's draw."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.core.balance import audit, sampling


def _assignments(scores, flags, clusters) -> pa.Table:
    return pa.table(
        {
            "syn_score": pa.array(scores, pa.float32()),
            "in_window": flags,
            "cluster": pa.array(clusters, pa.int64()),
        }
    )


def test_window_audit_counts_disagreements():
    table = _assignments(
        [0.5, 0.55, 0.7, float("nan"), 0.52],
        [True, True, False, False, False],  # 0.52 is inside [0.5, 0.6] but not flagged
        [0, 1, -1, -1, 1],  # ...and has a cluster although flagged out
    )
    found = audit.window_audit(table, 0.5, 0.6, clusters=2)
    assert (found.pairs, found.in_window, found.nan_scores) == (5, 2, 1)
    assert found.mismatched == 1 and found.bad_clusters == 1
    assert found.kept_fraction == pytest.approx(0.4)
    assert not audit.keeps_paper_share(found)


def test_window_audit_flags_in_window_rows_without_a_cluster():
    table = _assignments([0.5, 0.55], [True, True], [0, 2])  # cluster 2 of 2 does not exist
    assert audit.window_audit(table, 0.5, 0.6, clusters=2).bad_clusters == 1


def test_calibrated_windows_keep_the_paper_share_within_tolerance():
    rng = np.random.default_rng(0)
    for n in (10, 37, 530, 20_000):
        scores = rng.normal(0.6, 0.1, n).astype(np.float32)
        low, high = sampling.calibrate_window(scores)
        flags = sampling.cosine_window_mask(scores, low, high)
        found = audit.window_audit(
            _assignments(scores, flags, np.where(flags, 0, -1)), low, high, 1
        )
        assert found.mismatched == 0 and audit.keeps_paper_share(found), (n, found)


@pytest.mark.parametrize("seed", range(12))
def test_size_target_admits_every_drawn_subset(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 60))
    sizes = rng.zipf(1.6, k).clip(1, 5000)
    labels = np.repeat(np.arange(k), sizes)
    pool = pa.table({"in_window": np.ones(labels.size, bool), "cluster": labels})
    drawn = sampling.select_scales(pool)
    for scale, selection in drawn.items():
        target = audit.size_target(sizes, scale, "paper_fraction")
        assert target.accepts(selection.indices.size), (scale, selection.indices.size, target)
        exact = audit.size_target(sizes, scale, "paper_cap")
        paper = sampling.select_balanced(pool, scale, "paper_cap")
        assert exact.accepts(paper.indices.size) and exact.tolerance == 0


def test_size_target_rejects_another_scales_draw():
    labels = np.repeat(np.arange(50), 40)  # 2000 pairs in 50 equal clusters
    pool = pa.table({"in_window": np.ones(labels.size, bool), "cluster": labels})
    large = sampling.select_balanced(pool, "100M").indices.size
    assert not audit.size_target(np.bincount(labels), "15M", "paper_fraction").accepts(large)
    with pytest.raises(ValueError, match="unknown cap rule"):
        audit.size_target(np.bincount(labels), "15M", "other")
