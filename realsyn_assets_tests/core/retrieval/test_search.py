from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.evaluation import recall_against_exact
from realsyn_assets.core.retrieval import topk
from realsyn_assets.core.retrieval.index import ClusterIndex, RetrievalResult, build_cluster_index
from realsyn_assets.core.retrieval.kmeans import assign, train_kmeans
from realsyn_assets.core.retrieval.search import (
    retrieve_exact,
    retrieve_hierarchical,
    retrieve_in_document,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def reference_topk(q: np.ndarray, s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy reference: sort each row by (-score, index)."""
    sims = q @ s.T
    n, m = sims.shape
    idx = np.full((n, k), -1, np.int64)
    sc = np.full((n, k), -np.inf, np.float32)
    for r in range(n):
        order = np.lexsort((np.arange(m), -sims[r]))[:k]
        idx[r, : order.size] = order
        sc[r, : order.size] = sims[r, order]
    return idx, sc


def clip_like(n_sent: int, n_img: int, n_centres: int, d: int = 32, seed: int = 0):
    """Clustered unit vectors: random centres + noise; images are drawn near the same centres."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_centres, d)))
    s_lab = rng.integers(0, n_centres, n_sent)
    sents = _unit(centres[s_lab] + 0.35 * rng.standard_normal((n_sent, d)) / np.sqrt(d) * 4)
    i_lab = rng.integers(0, n_centres, n_img)
    imgs = _unit(centres[i_lab] + 0.25 * rng.standard_normal((n_img, d)) / np.sqrt(d) * 4)
    return imgs, sents


def assert_well_formed(res: RetrievalResult, n_sent: int) -> None:
    idx, sc = res.indices, res.scores
    assert idx.dtype == np.int64 and sc.dtype == np.float32
    assert np.all((idx >= -1) & (idx < n_sent))
    assert np.all(np.isneginf(sc[idx < 0]))
    assert np.all(np.isfinite(sc[idx >= 0]))
    # padding only at the end of a row; scores descending
    valid = idx >= 0
    assert np.all(valid[:, :-1] >= valid[:, 1:])
    finite = np.where(valid, sc, np.float32(-1e30))
    assert np.all(np.diff(finite, axis=1) <= 0)
    for row in idx:
        real = row[row >= 0]
        assert len(set(real.tolist())) == real.size, "duplicate sentence in one row"


# ------------------------------------------------------------------ exact


def test_exact_matches_numpy_reference_random():
    rng = np.random.default_rng(0)
    q = _unit(rng.standard_normal((37, 16)))
    s = _unit(rng.standard_normal((501, 16)))
    ref_i, ref_s = reference_topk(q, s, 5)
    for bi, bs in [(1024, 262_144), (4, 64), (37, 7), (3, 1)]:
        res = retrieve_exact(q, s, k=5, block_images=bi, block_sentences=bs)
        np.testing.assert_array_equal(res.indices, ref_i)
        np.testing.assert_allclose(res.scores, ref_s, atol=1e-5)
        assert_well_formed(res, 501)


def test_exact_ties_broken_by_lower_index():
    # Exactly representable vectors so every tie is an exact float tie regardless of blocking.
    s = np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]],
        dtype=np.float32,
    )
    q = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    ref_i, ref_s = reference_topk(q, s, 4)
    for bs in (262_144, 1, 2, 4):
        res = retrieve_exact(q, s, k=4, block_sentences=bs)
        np.testing.assert_array_equal(res.indices, ref_i)
        np.testing.assert_array_equal(res.scores, ref_s)
    np.testing.assert_array_equal(res.indices[0], [0, 2, 4, 1])
    np.testing.assert_array_equal(res.indices[1], [1, 5, 0, 2])
    np.testing.assert_array_equal(res.indices[2], [0, 1, 2, 3])  # all-zero scores
    k1 = retrieve_exact(q, s, k=1, block_sentences=2)
    np.testing.assert_array_equal(k1.indices[:, 0], [0, 1, 0])


@pytest.mark.parametrize("torch_min", [0, 1 << 40])
def test_exact_many_ties_both_topk_paths(monkeypatch, torch_min):
    # Force the torch.topk path (0) or the pure numpy path (huge) on tie-heavy data: sentences
    # are repeats of 6 exactly representable vectors, so most rows tie at the k-th place.
    monkeypatch.setattr(topk, "_TORCH_TOPK_MIN", torch_min)
    rng = np.random.default_rng(3)
    base = np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], [0, 0, 0, 1], [0.5] * 4],
        dtype=np.float32,
    )
    s = base[rng.integers(0, base.shape[0], 700)]
    q = base[rng.integers(0, base.shape[0], 50)]
    s[::97] = rng.standard_normal((s[::97].shape[0], 4)).astype(np.float32)  # a few non-ties
    ref_i, ref_s = reference_topk(q, s, 5)
    for bs in (262_144, 64, 5):
        res = retrieve_exact(q, s, k=5, block_images=16, block_sentences=bs)
        np.testing.assert_array_equal(res.indices, ref_i)
        np.testing.assert_array_equal(res.scores, ref_s)
        assert_well_formed(res, s.shape[0])


def test_exact_large_block_matches_reference():
    rng = np.random.default_rng(4)
    q = _unit(rng.standard_normal((40, 24)))
    s = _unit(rng.standard_normal((5000, 24)))  # 200k scores per block: torch.topk path
    ref_i, ref_s = reference_topk(q, s, 3)
    res = retrieve_exact(q, s, k=3, block_sentences=3000)
    np.testing.assert_array_equal(res.indices, ref_i)
    np.testing.assert_allclose(res.scores, ref_s, atol=1e-5)


def test_exact_k_larger_than_corpus_pads():
    rng = np.random.default_rng(1)
    q = _unit(rng.standard_normal((3, 8)))
    s = _unit(rng.standard_normal((2, 8)))
    res = retrieve_exact(q, s, k=4, block_sentences=1)
    ref_i, ref_s = reference_topk(q, s, 4)
    np.testing.assert_array_equal(res.indices, ref_i)
    assert np.all(res.indices[:, 2:] == -1)
    assert np.all(np.isneginf(res.scores[:, 2:]))
    assert_well_formed(res, 2)
    empty = retrieve_exact(q, np.zeros((0, 8), np.float32), k=3)
    assert empty.indices.shape == (3, 3) and np.all(empty.indices == -1)
    with pytest.raises(ValueError):
        retrieve_exact(q, s, k=0)


# ------------------------------------------------------------------ cluster index


def test_build_cluster_index_csr():
    labels = np.array([2, 0, 2, 1, 0, 2])
    idx = build_cluster_index(labels, 4)
    assert isinstance(idx, ClusterIndex)
    np.testing.assert_array_equal(idx.offsets, [0, 2, 3, 6, 6])
    np.testing.assert_array_equal(idx.members(0), [1, 4])
    np.testing.assert_array_equal(idx.members(2), [0, 2, 5])
    assert idx.members(3).size == 0
    np.testing.assert_array_equal(idx.sizes, [2, 1, 3, 0])
    with pytest.raises(ValueError):
        build_cluster_index(np.array([0, 5]), 3)


# ------------------------------------------------------------------ hierarchical


@pytest.fixture(scope="module")
def clustered():
    imgs, sents = clip_like(n_sent=6000, n_img=300, n_centres=30, seed=2)
    km = train_kmeans(sents, 30, seed=0, nredo=3)
    labels, _ = assign(sents, km.centroids)
    index = build_cluster_index(labels, km.centroids.shape[0])
    exact = retrieve_exact(imgs, sents, k=3)
    return imgs, sents, km.centroids, index, exact


def test_hierarchical_recall_vs_exact(clustered):
    imgs, sents, cents, index, exact = clustered
    r1 = retrieve_hierarchical(imgs, sents, cents, index, k=3, n_probe=1)
    assert_well_formed(r1, sents.shape[0])
    rec1 = recall_against_exact(r1, exact)
    assert rec1 >= 0.9
    r3 = retrieve_hierarchical(imgs, sents, cents, index, k=3, n_probe=3)
    assert_well_formed(r3, sents.shape[0])
    rec3 = recall_against_exact(r3, exact)
    assert rec3 >= rec1
    assert rec3 >= 0.98
    # probing every cluster is exact search
    rall = retrieve_hierarchical(imgs, sents, cents, index, k=3, n_probe=cents.shape[0])
    np.testing.assert_array_equal(rall.indices, exact.indices)
    # scores are the true similarities of the returned sentences
    i, j = np.nonzero(r1.indices >= 0)
    true = np.einsum("ij,ij->i", imgs[i], sents[r1.indices[i, j]])
    np.testing.assert_allclose(r1.scores[i, j], true, atol=1e-5)


def test_hierarchical_results_lie_in_nearest_cluster(clustered):
    imgs, sents, cents, index, _ = clustered
    res = retrieve_hierarchical(imgs, sents, cents, index, k=3, n_probe=1)
    nearest, _ = assign(imgs, cents)
    sent_label = np.empty(sents.shape[0], np.int64)
    for c in range(index.n_clusters):
        sent_label[index.members(c)] = c
    big = index.sizes[nearest] >= 3
    assert big.all()
    np.testing.assert_array_equal(sent_label[res.indices], np.repeat(nearest[:, None], 3, axis=1))
    # and equals exact search restricted to that cluster
    for r in range(0, imgs.shape[0], 37):
        members = index.members(int(nearest[r]))
        sub = retrieve_exact(imgs[r : r + 1], sents[members], k=3)
        np.testing.assert_array_equal(res.indices[r], members[sub.indices[0]])


def test_hierarchical_small_clusters_fall_through():
    # 4 orthogonal directions; cluster 0 holds 1 sentence, cluster 1 holds 0, cluster 2 holds 2,
    # cluster 3 holds 5. Centroids sit on the axes; the image is closest to axis 0, then 1, 2, 3.
    d = 4
    cents = np.eye(d, dtype=np.float32)
    sents = np.array([[1, 0, 0, 0]] + [[0, 0, 1, 0]] * 2 + [[0, 0, 0, 1]] * 5, dtype=np.float32)
    labels = np.array([0, 2, 2, 3, 3, 3, 3, 3])
    index = build_cluster_index(labels, 4)
    img = _unit(np.array([[0.8, 0.6, 0.3, 0.1]], dtype=np.float32))
    res = retrieve_hierarchical(img, sents, cents, index, k=3, n_probe=1)
    np.testing.assert_array_equal(res.indices[0], [0, 1, 2])  # cluster 0, (1 empty), 2
    res4 = retrieve_hierarchical(img, sents, cents, index, k=4, n_probe=1)
    np.testing.assert_array_equal(res4.indices[0], [0, 1, 2, 3])  # had to reach cluster 3
    assert_well_formed(res4, sents.shape[0])
    # fewer sentences than k in the whole corpus: everything, then padding
    res9 = retrieve_hierarchical(img, sents, cents, index, k=9, n_probe=1)
    assert (res9.indices[0] >= 0).sum() == 8 and res9.indices[0, -1] == -1
    assert_well_formed(res9, sents.shape[0])
    # many images, mixed: only the ones that need it go deeper, others stay in their cluster
    imgs = np.concatenate([img, np.array([[0, 0, 0, 1]], np.float32)])
    mixed = retrieve_hierarchical(imgs, sents, cents, index, k=3, n_probe=1)
    np.testing.assert_array_equal(mixed.indices[0], [0, 1, 2])
    np.testing.assert_array_equal(mixed.indices[1], [3, 4, 5])


def test_hierarchical_validates_inputs(clustered):
    imgs, sents, cents, index, _ = clustered
    with pytest.raises(ValueError):
        retrieve_hierarchical(imgs, sents, cents[:-1], index)
    with pytest.raises(ValueError):
        retrieve_hierarchical(imgs, sents[:-1], cents, index)
    with pytest.raises(ValueError):
        retrieve_hierarchical(imgs, sents, cents, index, n_probe=0)
    empty = retrieve_hierarchical(imgs[:0], sents, cents, index)
    assert empty.indices.shape == (0, 3)


# ------------------------------------------------------------------ in-document


def test_in_document_only_same_doc_and_padding():
    rng = np.random.default_rng(5)
    s_docs = ["a"] * 5 + ["b"] * 2 + ["c"] * 4
    sents = _unit(rng.standard_normal((len(s_docs), 16)))
    i_docs = ["c", "a", "b", "zzz", "a"]
    imgs = _unit(rng.standard_normal((len(i_docs), 16)))
    res = retrieve_in_document(i_docs, imgs, s_docs, sents, k=3)
    assert_well_formed(res, len(s_docs))
    s_docs_arr = np.array(s_docs)
    for r, doc in enumerate(i_docs):
        got = res.indices[r][res.indices[r] >= 0]
        assert all(s_docs_arr[got] == doc)
        members = np.flatnonzero(s_docs_arr == doc)
        if members.size:
            ref_i, _ = reference_topk(imgs[r : r + 1], sents[members], 3)
            ref = members[ref_i[0][ref_i[0] >= 0]]
            np.testing.assert_array_equal(got, ref)
    assert (res.indices[2] >= 0).sum() == 2 and res.indices[2, 2] == -1  # doc b has 2
    assert np.all(res.indices[3] == -1)  # doc without sentences
    assert np.all(np.isneginf(res.scores[3]))
    with pytest.raises(ValueError):
        retrieve_in_document(i_docs[:-1], imgs, s_docs, sents)


# ------------------------------------------------------------------ recall


def test_recall_against_exact():
    e = RetrievalResult(
        indices=np.array([[1, 2, 3], [4, 5, -1], [-1, -1, -1]]),
        scores=np.zeros((3, 3), np.float32),
    )
    a = RetrievalResult(
        indices=np.array([[3, 9, 1], [-1, -1, -1], [7, 8, 9]]),
        scores=np.zeros((3, 3), np.float32),
    )
    # row0: 2/3, row1: 0/2, row2 skipped (no exact answers)
    assert recall_against_exact(a, e) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_against_exact(e, e) == 1.0
