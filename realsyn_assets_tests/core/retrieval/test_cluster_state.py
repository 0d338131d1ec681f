"""Kept centroids: carrying labels over, assigning only new sentences, drift and refit triggers."""

from __future__ import annotations

import numpy as np

from realsyn_assets.core.retrieval import cluster_state as cs
from realsyn_assets.core.retrieval.kmeans import assign, train_kmeans


def _clustered(rng, centres: np.ndarray, n: int, spread: float = 0.15) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + spread * rng.standard_normal(
        (n, centres.shape[1])
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _unit(rng, k: int, d: int) -> np.ndarray:
    c = rng.standard_normal((k, d))
    return (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)


def test_new_shard_is_assigned_without_touching_old_labels():
    rng = np.random.default_rng(0)
    centres = _unit(rng, 8, 32)
    old = _clustered(rng, centres, 800)
    fit = train_kmeans(old, 8, seed=0)
    old_labels, old_sims = assign(old, fit.centroids)
    old_keys = np.array([f"a\x1f{i}" for i in range(len(old))], dtype=object)
    new = _clustered(rng, centres, 300)
    new_keys = np.array([f"b\x1f{i}" for i in range(len(new))], dtype=object)
    # today: the old shard minus 10 sentences (re-materialized), plus the new one, mixed order
    keys = np.concatenate([new_keys, old_keys[10:]])
    vecs = np.concatenate([new, old[10:]])
    # the carried-over labels are used as they are, even if they were (hypothetically) stale
    stale = old_labels.copy()
    stale[10:20] = (stale[10:20] + 1) % 8
    inc = cs.assign_incrementally(keys, vecs, fit.centroids, old_keys, stale, old_sims)
    assert inc.n_new == 300 and inc.new[:300].all() and not inc.new[300:].any()
    np.testing.assert_array_equal(inc.labels[300:], stale[10:])
    expected, sims = assign(new, fit.centroids)
    np.testing.assert_array_equal(inc.labels[:300], expected)
    np.testing.assert_allclose(inc.similarity[:300], sims, rtol=1e-6)


def _state(fit_sims: np.ndarray, n: int = 800) -> cs.ClusteringState:
    return cs.ClusteringState(8, 32, n, float(fit_sims.mean()), 0.1, 0, [])


def test_drift_small_for_same_distribution_large_for_new_topics():
    rng = np.random.default_rng(1)
    centres = _unit(rng, 8, 32)
    fit = train_kmeans(_clustered(rng, centres, 800), 8, seed=0)
    _, fit_sims = assign(_clustered(rng, centres, 800), fit.centroids)
    state = _state(fit_sims)
    _, same = assign(_clustered(rng, centres, 400), fit.centroids)
    _, other = assign(_clustered(rng, _unit(rng, 8, 32), 400), fit.centroids)
    assert abs(cs.drift(state, same)) < 0.02
    assert cs.drift(state, other) > 0.3
    assert cs.recluster_reasons(state, 1200, cs.drift(state, same)) == []
    reasons = cs.recluster_reasons(state, 1200, cs.drift(state, other))
    assert len(reasons) == 1 and "drift" in reasons[0]
    grown = cs.recluster_reasons(state, 2000, 0.0)
    assert len(grown) == 1 and "grew 2.5x" in grown[0]
    assert cs.drift(state, np.zeros(0)) == 0.0


def test_embedding_change_is_detected_by_probe_sentences(tmp_path):
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 200, 16)
    keys = np.array([f"s{i}" for i in range(200)], dtype=object)
    rows = cs.pick_probe_rows(keys, 20)
    assert len(rows) == 20 and np.array_equal(rows, cs.pick_probe_rows(keys[::-1][::-1], 20))
    probe_keys = [str(keys[i]) for i in rows]
    assert cs.embedding_changed(probe_keys, vecs[rows], keys, vecs) is False
    # same sentences, another encoder
    assert cs.embedding_changed(probe_keys, vecs[rows], keys, _unit(rng, 200, 16)) is True
    # only some probes still present: still compared on those
    assert cs.embedding_changed(probe_keys, vecs[rows], keys[:100], vecs[:100]) is False
    # none present: no evidence
    assert cs.embedding_changed(probe_keys, vecs[rows], keys[:0], vecs[:0]) is None
    state = cs.ClusteringState(4, 16, 200, 0.8, 0.5, 0, probe_keys, cs.centroids_fingerprint(vecs))
    assert state.fit_id != cs.centroids_fingerprint(vecs[::-1])
    (tmp_path / "c.json").write_text(state.to_json())
    assert cs.ClusteringState.load(tmp_path / "c.json") == state
    (tmp_path / "bad.json").write_text("{not json")
    assert cs.ClusteringState.load(tmp_path / "bad.json") is None
    assert cs.ClusteringState.load(tmp_path / "missing.json") is None


def test_calibration_split_is_stable_and_about_half():
    ids = [f"img{i}" for i in range(2000)]
    mask = cs.calibration_mask(ids)
    assert 0.45 < mask.mean() < 0.55
    np.testing.assert_array_equal(mask, cs.calibration_mask(ids))
    assert cs.calibration_mask(ids[:5]).tolist() == mask[:5].tolist()
