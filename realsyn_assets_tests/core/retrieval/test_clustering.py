"""core/retrieval/clustering.py: fit, keep and store the sentence clustering; probe calibration."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.core.retrieval import clustering


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _sentences(n: int, shard: str, seed: int, d: int = 8) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    topics = _unit(np.random.default_rng(0).normal(size=(4, d)))
    vecs = _unit(topics[rng.integers(0, 4, n)] + 0.3 * rng.normal(size=(n, d)))
    members = pa.table({"sentence_id": [f"{shard}-{i}" for i in range(n)], "shard": [shard] * n})
    return members, vecs


def test_fit_then_incremental_keeps_centroids_and_labels(tmp_path, cluster_and_save):
    members, matrix = _sentences(300, "a", 1)
    run, (stored, ordered, labels) = cluster_and_save(members, matrix, tmp_path)
    assert run.mode == "fit" and run.fit_reason == "no earlier clustering"
    assert run.n_new == 300 and run.drift == 0.0 and run.state.n_clusters == 4
    assert run.sizes.sum() == 300 and len(run.sizes) == 4
    for name in ("centroids.npy", "probe_vectors.npy", "vectors.npy", "members.parquet"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / clustering.STATE).is_file()
    # stored in cluster order: clusters are contiguous and rows match the vectors
    assert list(labels) == sorted(labels) and stored.column("cluster").to_pylist() == list(labels)
    row = {s: i for i, s in enumerate(members.column("sentence_id").to_pylist())}
    back = [row[s] for s in stored.column("sentence_id").to_pylist()]
    np.testing.assert_array_equal(ordered, matrix[back])
    np.testing.assert_array_equal(np.load(tmp_path / clustering.VECTORS), ordered)

    more, more_vecs = _sentences(50, "b", 2)
    both = pa.concat_tables([members, more])
    run2, (stored2, _, _) = cluster_and_save(both, np.concatenate([matrix, more_vecs]), tmp_path)
    assert run2.mode == "incremental" and run2.fit_reason == "-" and run2.n_new == 50
    np.testing.assert_array_equal(run2.centroids, run.centroids)
    old = dict(zip(stored.column("sentence_id").to_pylist(), labels, strict=True))
    new = dict(zip(*stored2.select(["sentence_id", "cluster"]).to_pydict().values(), strict=True))
    assert all(new[s] == c for s, c in old.items())

    again, _ = cluster_and_save(both, np.concatenate([matrix, more_vecs]), tmp_path, recluster=True)
    assert again.mode == "fit" and "requested" in again.fit_reason


def test_interrupted_refit_and_switched_encoder_force_a_fit(tmp_path, cluster_and_save):
    members, matrix = _sentences(200, "a", 3)
    cluster_and_save(members, matrix, tmp_path)
    assert clustering.load_previous(tmp_path, matrix.shape[1]) is not None
    assert clustering.load_previous(tmp_path, matrix.shape[1] + 1) is None
    centroids = np.load(tmp_path / clustering.CENTROIDS)
    np.save(tmp_path / clustering.CENTROIDS, centroids[::-1].copy())
    assert clustering.load_previous(tmp_path, matrix.shape[1]) is None
    run, _ = cluster_and_save(members, matrix, tmp_path)
    assert run.mode == "fit" and run.fit_reason == "no earlier clustering"
    _, other = _sentences(200, "a", 4)
    switched, _ = cluster_and_save(members, other, tmp_path)
    assert switched.mode == "fit" and "embedding space changed" in switched.fit_reason


def test_calibrate_probing_and_stored_clustering(tmp_path, cluster_and_save):
    members, matrix = _sentences(400, "a", 5)
    run, (_, ordered, labels) = cluster_and_save(members, matrix, tmp_path)
    _, image_vecs = _sentences(120, "img", 6)
    ids = [f"img-{i}" for i in range(120)]
    asked: list[np.ndarray] = []

    def vectors_of(rows):
        asked.append(rows)
        return image_vecs[rows]

    common = dict(k=3, max_probe=4, calibration_images=20)
    off = clustering.calibrate_probing(
        ids, vectors_of, ordered, run.centroids, labels, target_recall=0.0, **common
    )
    assert off == {"margin": None, "reason": "off"} and not asked
    none = clustering.calibrate_probing(
        [], vectors_of, ordered, run.centroids, labels, target_recall=0.9, **common
    )
    assert none == {"margin": None, "reason": "no images"}
    probing = clustering.calibrate_probing(
        ids, vectors_of, ordered, run.centroids, labels, target_recall=0.9, **common
    )
    assert len(asked) == 1 and len(asked[0]) == 20 and probing["sample_images"] == 20
    assert probing["margin"] >= 0 and probing["max_probe"] == 4
    clustering.save_probing(tmp_path, probing)

    store = clustering.StoredClustering.open(tmp_path)
    assert store.members.num_rows == 400 and isinstance(store.vectors, np.memmap)
    np.testing.assert_array_equal(store.centroids(), run.centroids)
    assert store.probing() == json.loads(json.dumps(probing))
    (tmp_path / clustering.PROBING).unlink()
    assert store.probing() == {}


def test_opening_a_missing_clustering_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize the upstream"):
        clustering.StoredClustering.open(tmp_path)
