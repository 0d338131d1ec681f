from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.retrieval.kmeans import (
    IMAGES_PER_CLUSTER,
    SENTENCES_PER_CLUSTER,
    KMeansResult,
    assign,
    assignment_drift,
    n_clusters_for,
    train_kmeans,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted(n: int = 5000, k: int = 20, d: int = 64, noise: float = 0.03, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((k, d)))
    truth = rng.integers(0, k, size=n)
    x = _unit(centres[truth] + noise * rng.standard_normal((n, d)))
    return x, truth, centres


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    total = 0
    for c in np.unique(labels):
        total += np.bincount(truth[labels == c]).max()
    return total / labels.size


def test_n_clusters_for_paper_ratios():
    assert n_clusters_for(840_000_000, SENTENCES_PER_CLUSTER) == 2_000_000
    assert n_clusters_for(168_000_000, IMAGES_PER_CLUSTER) == 1_000_000
    assert n_clusters_for(10, 420) == 1  # never below one
    assert n_clusters_for(630, 420) == 2  # 1.5 rounds up
    assert n_clusters_for(3, 1) == 3
    assert n_clusters_for(0, 420) == 0
    assert n_clusters_for(5, 2) <= 5
    with pytest.raises(ValueError):
        n_clusters_for(10, 0)


def test_recovers_planted_clusters():
    x, truth, _ = planted()
    # Lloyd iterations cannot repair a seeding that put two centroids in one cluster; a few
    # redos (best objective kept) make recovery of planted structure reliable.
    res = train_kmeans(x, 20, seed=1, nredo=8)
    assert isinstance(res, KMeansResult)
    assert res.centroids.shape == (20, 64) and res.centroids.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.centroids, axis=1), 1.0, atol=1e-5)
    labels, sim = assign(x, res.centroids)
    assert labels.dtype == np.int64 and sim.dtype == np.float32
    assert purity(labels, truth) > 0.95
    assert res.train_points == 5000
    assert res.iterations >= 1
    assert res.seconds >= 0
    assert 0.5 < res.mean_similarity <= 1.0
    # Objective of spherical k-means = summed best similarity over training points.
    assert res.objective == pytest.approx(sim.sum(), rel=0.05)


def test_deterministic_for_seed():
    x, _, _ = planted(n=2000, seed=3)
    a = train_kmeans(x, 20, seed=7)
    b = train_kmeans(x, 20, seed=7)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    c = train_kmeans(x, 20, seed=8)
    assert not np.array_equal(a.centroids, c.centroids)


def test_subsample_path():
    x, truth, _ = planted(n=5000, seed=4)
    res = train_kmeans(x, 20, seed=0, max_points_per_centroid=50, nredo=8)
    assert res.train_points == 20 * 50
    again = train_kmeans(x, 20, seed=0, max_points_per_centroid=50, nredo=8)
    np.testing.assert_array_equal(res.centroids, again.centroids)
    labels, _ = assign(x, res.centroids)
    assert purity(labels, truth) > 0.95


def test_single_cluster_is_normalised_mean_direction():
    x, _, _ = planted(n=200, k=3, seed=5)
    res = train_kmeans(x, 1)
    assert res.centroids.shape == (1, 64)
    mean_dir = x.mean(axis=0)
    mean_dir /= np.linalg.norm(mean_dir)
    np.testing.assert_allclose(res.centroids[0], mean_dir, atol=1e-4)
    labels, _ = assign(x, res.centroids)
    assert np.all(labels == 0)


def test_more_clusters_than_points_is_clipped():
    x, _, _ = planted(n=12, k=3, seed=6)
    res = train_kmeans(x, 50)
    assert res.centroids.shape == (12, 64)
    labels, sim = assign(x, res.centroids)
    np.testing.assert_allclose(sim, 1.0, atol=1e-5)  # every point is its own centroid
    assert len(set(labels.tolist())) == 12
    # n < 2k: works and yields k centroids
    res2 = train_kmeans(x, 7)
    assert res2.centroids.shape == (7, 64)
    assert np.all(np.isfinite(res2.centroids))


def test_rejects_empty_and_bad_k():
    with pytest.raises(ValueError):
        train_kmeans(np.zeros((0, 8), np.float32), 2)
    with pytest.raises(ValueError):
        train_kmeans(np.ones((4, 8), np.float32), 0)


def test_assign_blocked_equals_unblocked():
    x, _, _ = planted(n=1000, seed=9)
    c = train_kmeans(x, 20, seed=0).centroids
    l1, s1 = assign(x, c, block=65536)
    l2, s2 = assign(x, c, block=7)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(s1, s2)
    ref = np.argmax(x @ c.T, axis=1)
    np.testing.assert_array_equal(l1, ref)
    e_l, e_s = assign(np.zeros((0, 64), np.float32), c)
    assert e_l.shape == (0,) and e_s.shape == (0,)


def test_assignment_drift():
    assert assignment_drift(0.8, np.full(10, 0.8, np.float32)) == pytest.approx(0.0, abs=1e-6)
    assert assignment_drift(0.8, np.full(10, 0.6, np.float32)) == pytest.approx(0.25, rel=1e-5)
    assert assignment_drift(0.8, np.full(10, 0.9, np.float32)) < 0
    assert assignment_drift(0.8, np.zeros(0, np.float32)) == 0.0
    # Items from unseen directions fit trained centroids worse than the training items did.
    x, _, _ = planted(n=2000, k=10, seed=11)
    res = train_kmeans(x, 10, seed=0)
    _, same = assign(planted(n=500, k=10, seed=11)[0], res.centroids)
    _, new = assign(planted(n=500, k=10, seed=12)[0], res.centroids)
    assert abs(assignment_drift(res.mean_similarity, same)) < 0.05
    assert assignment_drift(res.mean_similarity, new) > 0.3


def test_init_options():
    x, _, _ = planted(n=600, k=6, seed=13)
    for init in ("random", "kmeans++", "auto"):
        res = train_kmeans(x, 6, init=init, seed=2)
        assert res.centroids.shape == (6, 64)
        np.testing.assert_allclose(np.linalg.norm(res.centroids, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        train_kmeans(x, 6, init="bogus")
    with pytest.raises(ValueError):
        train_kmeans(x, 6, nredo=0)
    # More redos can only keep an equal or better objective (higher summed similarity).
    one = train_kmeans(x, 6, init="random", seed=2, nredo=1)
    many = train_kmeans(x, 6, init="random", seed=2, nredo=6)
    assert many.objective >= one.objective - 1e-3
