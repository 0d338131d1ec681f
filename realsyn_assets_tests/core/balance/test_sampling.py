from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.core.balance.sampling import (
    COSINE_WINDOW,
    SCALE_CAPS,
    calibrate_window,
    cap_per_cluster,
    choose_window,
    cluster_size_stats,
    cosine_window_mask,
    pair_cosine,
    select_balanced,
)


def skewed_labels(seed: int = 0) -> np.ndarray:
    """Cluster sizes from 1 to ~400 (heavy-tailed, like real concept frequencies), shuffled."""
    rng = np.random.default_rng(seed)
    sizes = np.concatenate([[1, 2, 20, 21, 35, 36, 180, 181, 400], rng.zipf(1.6, 300).clip(1, 300)])
    labels = np.repeat(np.arange(sizes.size), sizes)
    return rng.permutation(labels)


def test_paper_constants():
    assert SCALE_CAPS == {"15M": 20, "30M": 35, "100M": 180}
    assert COSINE_WINDOW == (0.51, 0.61)


def test_pair_cosine_rowwise():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((10, 8)).astype(np.float32)
    b = rng.standard_normal((10, 8)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    got = pair_cosine(a, b)
    assert got.shape == (10,) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.diag(a @ b.T), atol=1e-6)
    np.testing.assert_allclose(pair_cosine(a, a), 1.0, atol=1e-6)
    with pytest.raises(ValueError):
        pair_cosine(a, b[:5])


def test_window_mask_boundaries_inclusive():
    sims = np.array([0.5099, 0.51, 0.55, 0.61, 0.6101, np.nan, -1.0, 1.0], dtype=np.float64)
    mask = cosine_window_mask(sims, *COSINE_WINDOW)
    np.testing.assert_array_equal(mask, [False, True, True, True, False, False, False, False])
    with pytest.raises(ValueError):
        cosine_window_mask(sims, 0.7, 0.6)


@pytest.mark.parametrize("keep,share", [(168.3 / 198.0, 0.5), (0.5, 0.2), (0.9, 1.0), (0.7, 0.0)])
def test_calibrate_window_keeps_fraction(keep, share):
    rng = np.random.default_rng(1)
    sims = rng.normal(0.3, 0.05, 20_000)  # e.g. an encoder whose scores sit far below 0.51
    low, high = calibrate_window(sims, keep_fraction=keep, low_tail_share=share)
    assert low <= high
    mask = cosine_window_mask(sims, low, high)
    assert mask.mean() == pytest.approx(keep, abs=3 / sims.size)
    drop = 1 - keep
    assert (sims < low).mean() == pytest.approx(drop * share, abs=2 / sims.size)
    assert (sims > high).mean() == pytest.approx(drop * (1 - share), abs=2 / sims.size)


def test_calibrate_window_defaults_and_errors():
    sims = np.linspace(0.0, 1.0, 10_001)
    low, high = calibrate_window(np.append(sims, [np.nan, np.inf]))  # non-finite ignored
    kept = cosine_window_mask(sims, low, high).mean()
    assert kept == pytest.approx(168.3 / 198.0, abs=3e-4)
    assert low == pytest.approx((1 - 168.3 / 198.0) / 2, abs=2e-4)
    with pytest.raises(ValueError):
        calibrate_window(sims, keep_fraction=0.0)
    with pytest.raises(ValueError):
        calibrate_window(sims, low_tail_share=1.5)
    with pytest.raises(ValueError):
        calibrate_window(np.array([np.nan]))
    full = calibrate_window(sims, keep_fraction=1.0)
    assert full == (0.0, 1.0)


def test_cap_respected_and_small_clusters_whole():
    labels = skewed_labels()
    sizes = np.bincount(labels)
    for cap in SCALE_CAPS.values():
        keep = cap_per_cluster(labels, cap, seed=3)
        assert keep.dtype == np.int64
        assert np.all(np.diff(keep) > 0)  # sorted, unique
        kept_sizes = np.bincount(labels[keep], minlength=sizes.size)
        np.testing.assert_array_equal(kept_sizes, np.minimum(sizes, cap))
    assert cap_per_cluster(labels, 0).size == 0
    assert cap_per_cluster(np.array([], dtype=np.int64), 5).size == 0
    np.testing.assert_array_equal(cap_per_cluster(labels, 10_000), np.arange(labels.size))
    with pytest.raises(ValueError):
        cap_per_cluster(labels, -1)


def test_caps_nested_and_deterministic():
    labels = skewed_labels(seed=4)
    subsets = [set(cap_per_cluster(labels, SCALE_CAPS[s], seed=11).tolist()) for s in SCALE_CAPS]
    assert subsets[0] < subsets[1] < subsets[2]  # 15M ⊂ 30M ⊂ 100M
    again = cap_per_cluster(labels, 35, seed=11)
    np.testing.assert_array_equal(again, sorted(subsets[1]))
    other = cap_per_cluster(labels, 35, seed=12)
    assert not np.array_equal(other, again)
    # same size either way: only which members of big clusters are kept changes
    assert other.size == again.size


def test_cap_is_uniform_within_a_big_cluster():
    labels = np.zeros(100, dtype=np.int64)
    counts = np.zeros(100)
    for seed in range(400):
        counts[cap_per_cluster(labels, 10, seed=seed)] += 1
    # each member is kept with probability 0.1 -> 40 expected, sd ~6
    assert counts.min() > 15 and counts.max() < 70


def test_cluster_size_stats_and_capping_flattens():
    labels = skewed_labels(seed=5)
    st = cluster_size_stats(labels)
    sizes = np.bincount(labels)
    assert st["n_clusters"] == sizes.size
    assert st["max"] == sizes.max()
    assert st["mean"] == pytest.approx(sizes.mean())
    assert st["p50"] == pytest.approx(np.median(sizes))
    assert st["p90"] == pytest.approx(np.percentile(sizes, 90))
    assert 0.0 < st["gini"] < 1.0
    capped = cluster_size_stats(labels[cap_per_cluster(labels, 20)])
    assert capped["max"] == 20
    assert capped["gini"] < st["gini"]
    equal = cluster_size_stats(np.repeat(np.arange(5), 7))
    assert equal["gini"] == pytest.approx(0.0, abs=1e-12)
    assert cluster_size_stats(np.array([], dtype=np.int64))["n_clusters"] == 0.0


def test_choose_window_configured_paper_or_calibrated():
    sims = np.linspace(0.0, 1.0, 201)
    assert choose_window(sims, (0.2, 0.3), "ViT-B-32", "") == (0.2, 0.3, "configured")
    assert choose_window(sims, (-1.0, -1.0), "EVA02-E-14-plus", "laion2b_s9b_b144k") == (
        *COSINE_WINDOW,
        "paper",
    )
    low, high, how = choose_window(sims, (-1.0, -1.0), "EVA02-E-14-plus", "")
    assert how == "calibrated" and (low, high) == calibrate_window(sims)


def test_select_balanced_caps_in_window_pairs():
    labels = skewed_labels()
    in_window = np.arange(labels.size) % 7 != 0
    table = pa.table({"in_window": in_window, "cluster": np.where(in_window, labels, -1)})
    selection = select_balanced(table, "15M", "paper_cap", seed=3)
    candidates = np.flatnonzero(in_window)
    assert selection.candidate_pairs == candidates.size
    assert in_window[selection.indices].all()
    assert np.array_equal(selection.indices, np.sort(selection.indices))
    sizes = np.bincount(labels[in_window])
    assert selection.clusters == int((sizes > 0).sum())
    assert selection.expected_samples == int(np.minimum(sizes, 20).sum()) == selection.indices.size
