"""Caps solved to the paper's shares, nesting from one permutation, random baseline, lean
clustering helpers (core/balance/sampling.py, clusters.py, subset.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.core.balance.clusters import cluster_window, content_version
from realsyn_assets.core.balance.sampling import (
    PAPER_CAP,
    PAPER_FRACTION,
    SCALE_CAPS,
    SCALE_SHARES,
    capped_total,
    scale_cap,
    select_balanced,
    select_random,
    solve_cap,
)
from realsyn_assets.core.balance.subset import missing_from


def paper_like_sizes(n_clusters: int, seed: int = 0) -> np.ndarray:
    """Skewed cluster sizes with a mean near the paper's ~168 pairs per cluster."""
    rng = np.random.default_rng(seed)
    return np.maximum(1, rng.lognormal(np.log(90), 1.1, n_clusters).astype(np.int64))


def assignments_for(sizes: np.ndarray, seed: int = 0, outside: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(sizes.size), sizes))
    labels = np.concatenate([labels, np.full(outside, -1)])
    n = labels.size
    return pa.table(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "shard": ["s0"] * n,
            "in_window": labels >= 0,
            "cluster": labels,
        }
    )


def test_paper_shares_defined_once():
    assert SCALE_SHARES["15M"] == pytest.approx(15.24 / 168.3)
    assert SCALE_SHARES["30M"] == pytest.approx(30.33 / 168.3)
    assert SCALE_SHARES["100M"] == pytest.approx(100.86 / 168.3)
    assert list(SCALE_SHARES) == list(SCALE_CAPS)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("share", [0.01, 0.0906, 0.18, 0.3, 0.5993, 0.95])
def test_solve_cap_is_the_closest_cap(seed, share):
    sizes = paper_like_sizes(300, seed)
    cap = solve_cap(sizes, share)
    target = share * sizes.sum()
    errors = np.array([abs(capped_total(sizes, t) - target) for t in range(1, sizes.max() + 1)])
    assert abs(capped_total(sizes, cap) - target) == errors.min()
    assert cap == 1 + int(np.argmin(errors))  # the smallest of equally close caps


def test_solve_cap_edges():
    assert solve_cap(np.array([], dtype=np.int64), 0.5) == 0
    assert solve_cap(np.array([0, 0]), 0.5) == 0
    assert solve_cap(np.array([3, 7, 2]), 1.0) == 7
    assert solve_cap(np.array([3, 7, 2]), 2.0) == 7
    assert solve_cap(np.array([3, 7, 2]), 0.0) == 1  # never 0 for a non-empty pool
    assert solve_cap(np.array([5, 5, 5, 5]), 0.5) == 2  # 8 (cap 2) and 12 (cap 3) tie at 10
    with pytest.raises(ValueError):
        solve_cap(np.array([1]), -0.1)
    with pytest.raises(ValueError):
        scale_cap(np.array([1]), "7M", PAPER_FRACTION)
    with pytest.raises(ValueError):
        scale_cap(np.array([1]), "15M", "median")


def test_paper_fraction_within_one_point_at_every_scale_and_nested():
    sizes = paper_like_sizes(2000, seed=3)
    table = assignments_for(sizes, seed=3, outside=500)
    previous: set[int] = set()
    caps = []
    for scale in SCALE_CAPS:
        sel = select_balanced(table, scale, PAPER_FRACTION, seed=7)
        assert sel.candidate_pairs == sizes.sum()
        assert abs(sel.achieved_share - SCALE_SHARES[scale]) < 0.01
        assert sel.indices.size == sel.expected_samples == sel.sizes_after.sum()
        np.testing.assert_array_equal(sel.sizes_before, sizes)
        np.testing.assert_array_equal(sel.sizes_after, np.minimum(sizes, sel.cap))
        kept = np.bincount(table.column("cluster").to_numpy()[sel.indices], minlength=sizes.size)
        np.testing.assert_array_equal(kept, sel.sizes_after)
        rows = set(sel.indices.tolist())
        assert previous <= rows  # 15M ⊂ 30M ⊂ 100M
        previous = rows
        caps.append(sel.cap)
    assert caps == sorted(caps)
    again = select_balanced(table, "30M", PAPER_FRACTION, seed=7)
    np.testing.assert_array_equal(
        again.indices, select_balanced(table, "30M", PAPER_FRACTION, seed=7).indices
    )
    other = select_balanced(table, "30M", PAPER_FRACTION, seed=8)
    assert other.indices.size == again.indices.size
    assert not np.array_equal(other.indices, again.indices)


def test_paper_cap_rule_keeps_the_fixed_caps():
    sizes = paper_like_sizes(400, seed=1)
    table = assignments_for(sizes, seed=1)
    for scale, cap in SCALE_CAPS.items():
        sel = select_balanced(table, scale, PAPER_CAP, seed=0)
        assert sel.cap == cap and sel.cap_rule == PAPER_CAP
        assert sel.indices.size == capped_total(sizes, cap)
        assert sel.target_share == SCALE_SHARES[scale]


def test_demo_sized_pool_within_one_point():
    """The demo: 450 in-window pairs in 3 clusters; caps move the total in steps of 3."""
    sizes = np.array([128, 176, 146])
    table = assignments_for(sizes)
    got = {s: select_balanced(table, s).achieved_share for s in SCALE_CAPS}
    for scale, share in got.items():
        assert abs(share - SCALE_SHARES[scale]) < 0.01
    assert {s: select_balanced(table, s).cap for s in SCALE_CAPS} == {
        "15M": 14,
        "30M": 27,
        "100M": 90,
    }


def test_in_window_row_without_cluster_is_an_error():
    table = pa.table({"in_window": [True, True], "cluster": [0, -1]})
    with pytest.raises(ValueError, match="rematerialize image_clusters"):
        select_balanced(table, "15M")


def test_select_random_sorted_unique_nested_deterministic():
    small = select_random(1000, 90, seed=4)
    large = select_random(1000, 180, seed=4)
    assert small.dtype == np.int64 and small.size == 90
    assert np.all(np.diff(small) > 0) and small.min() >= 0 and large.max() < 1000
    assert set(small.tolist()) <= set(large.tolist())
    np.testing.assert_array_equal(small, select_random(1000, 90, seed=4))
    assert not np.array_equal(small, select_random(1000, 90, seed=5))
    assert select_random(0, 0, seed=0).size == 0
    np.testing.assert_array_equal(select_random(5, 5, seed=1), np.arange(5))
    with pytest.raises(ValueError):
        select_random(10, 11, seed=0)
    with pytest.raises(ValueError):
        select_random(10, -1, seed=0)


def test_missing_from_counts_rows_outside():
    outer = pa.table({"shard": ["a", "a", "b"], "image_id": ["1", "2", "1"]})
    inner = pa.table({"shard": ["a", "b", "b"], "image_id": ["2", "1", "2"]})
    assert missing_from(outer, inner) == 1
    assert missing_from(outer, outer.slice(0, 2)) == 0
    assert missing_from(outer, inner.slice(0, 0)) == 0


def test_content_version_follows_the_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 10_000)
    b.write_bytes(b"x" * 10_000)
    assert content_version(a) == content_version(b, block=7)
    assert len(content_version(a)) == 64
    b.write_bytes(b"x" * 9_999 + b"y")
    assert content_version(a) != content_version(b)


def test_cluster_window_fits_on_a_subsample_and_assigns_every_kept_pair():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)).astype(np.float32) * 3
    vectors = (centres[rng.integers(0, 4, 2000)] + rng.normal(size=(2000, 16))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = rng.uniform(0, 1, 2000).astype(np.float32)
    pair_index = rng.permutation(2000)
    found = cluster_window(
        vectors, pair_index, sims, (0.1, 0.9), 4, 10, 0, train_points_per_cluster=20, block=333
    )
    kept = (sims >= 0.1) & (sims <= 0.9)
    assert found.train_points == 80
    np.testing.assert_array_equal(found.in_window, kept)
    assert (found.labels[kept] >= 0).all() and (found.labels[~kept] == -1).all()
    assert np.bincount(found.labels[kept]).min() > 200  # four real clusters found
    same = cluster_window(
        vectors, pair_index, sims, (0.1, 0.9), 4, 10, 0, train_points_per_cluster=20
    )
    np.testing.assert_array_equal(same.labels, found.labels)  # block size changes nothing


def test_tiny_subset_keeps_half_for_training():
    from realsyn_assets.core.balance.subset import EVAL_SPLIT, TRAIN_SPLIT, eval_split

    split = eval_split([f"i{k}" for k in range(9)], fraction=0.0, min_count=16)
    assert split.count(EVAL_SPLIT) == 4 and split.count(TRAIN_SPLIT) == 5
    assert eval_split(["only"], fraction=0.0, min_count=16) == [TRAIN_SPLIT]
