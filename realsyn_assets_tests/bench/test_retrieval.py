"""`realsyn bench retrieval`, its CLIP-like data generator, and the core behaviour it relies on
(adaptive probing, probe-margin calibration, BLAS thread control, the argmax top-k path)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realsyn_assets.bench import retrieval as bench
from realsyn_assets.bench.synthetic import ClipLikeSpec, generate, stats
from realsyn_assets.core.evaluation import recall_against_exact
from realsyn_assets.core.retrieval.calibration import calibrate_probe_margin
from realsyn_assets.core.retrieval.index import build_cluster_index, sort_by_cluster
from realsyn_assets.core.retrieval.kmeans import assign, train_kmeans
from realsyn_assets.core.retrieval.search import retrieve_exact, retrieve_hierarchical
from realsyn_assets.core.retrieval.threads import blas_thread_counts, blas_threads
from realsyn_assets.core.retrieval.topk import topk_rows

REQUIRED = (
    "sentences",
    "images",
    "dim",
    "hierarchical_s",
    "exact_s",
    "speedup",
    "recall_at_3",
    "lancedb_s",
    "lancedb_recall_at_3",
    "kmeans_s",
)


# ------------------------------------------------------------------ the benchmark


def test_main_prints_one_json_object_per_size(capsys):
    argv = [
        "--sentences", "5000", "3000",
        "--images", "200",
        "--dim", "32",
        "--calibration-images", "100",
        "--lancedb-sweep-queries", "100",
    ]  # fmt: skip
    assert bench.main(argv) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 2
    rows = [json.loads(ln) for ln in lines]
    assert [r["sentences"] for r in rows] == [5000, 3000]
    for r in rows:
        for key in REQUIRED:
            assert key in r, key
        assert r["images"] == 200 and r["dim"] == 32
        for key in ("recall_at_3", "n_probe1_recall_at_3", "lancedb_recall_at_3"):
            assert 0.0 <= r[key] <= 1.0
        assert r["speedup"] > 0 and r["n_probe1_speedup"] > 0
        assert r["exact_s"] > 0 and r["hierarchical_s"] > 0 and r["lancedb_s"] > 0
        assert r["kmeans_s"] >= 0 and r["clusters"] == round(r["sentences"] / 420)
        # adaptive probing searches a superset of the paper's single cluster
        assert r["recall_at_3"] >= r["n_probe1_recall_at_3"]
        assert r["mean_probes"] >= 1
        assert r["exact_extrapolated"] is False
        assert r["lancedb_index"] == "IVF_FLAT" and r["lancedb_nprobes"] >= 1
        if r["lancedb_reached_target"]:
            assert r["lancedb_recall_at_3"] >= r["recall_at_3"]
        assert r["lancedb_sweep"] and all(0 <= s["recall"] <= 1 for s in r["lancedb_sweep"])
        data = r["data"]
        assert data["cos_sentence_sentence"] > data["cos_image_sentence"]


def test_main_exact_subsample_and_no_lancedb(capsys):
    argv = [
        "--sentences", "4000",
        "--images", "300",
        "--dim", "32",
        "--calibration-images", "50",
        "--exact-images", "100",
        "--no-lancedb",
    ]  # fmt: skip
    assert bench.main(argv) == 0
    r = json.loads(capsys.readouterr().out.strip())
    assert r["exact_images_timed"] == 100 and r["exact_extrapolated"] is True
    assert "lancedb_s" not in r
    assert 0.0 <= r["recall_at_3"] <= 1.0


def test_min_nprobes_finds_smallest_reaching_setting():
    calls = []

    def evaluate(nprobes):
        calls.append(nprobes)
        return min(1.0, nprobes / 10)  # reaches 0.7 first at 7

    assert bench.min_nprobes(evaluate, 64, 0.7) == 7
    assert calls[:4] == [1, 2, 4, 8]  # doubling, then bisection between 4 and 8
    assert bench.min_nprobes(lambda p: 0.5, 16, 0.9) is None
    assert bench.min_nprobes(lambda p: 1.0, 16, 0.9) == 1


def test_partition_specs():
    assert bench._partitions("sqrt", 1_000_000) == 1000
    assert bench._partitions("rows:8192", 1_000_000) == 122
    assert bench._partitions("50", 1000) == 50
    assert bench._partitions("5000", 100) == 100  # never more partitions than rows


# ------------------------------------------------------------------ CLIP-like generator


def test_generator_is_clip_like_not_isotropic():
    spec = ClipLikeSpec(n_sentences=6000, n_images=400, dim=64, seed=3)
    data = generate(spec)
    assert data.sentences.shape == (6000, 64) and data.images.shape == (400, 64)
    assert data.sentences.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(data.sentences, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(data.images, axis=1), 1.0, atol=1e-5)
    again = generate(spec)
    np.testing.assert_array_equal(data.sentences, again.sentences)
    st = stats(data)
    # a cone (isotropic unit vectors in 64-d would average ~0), and a modality gap
    assert st["cos_sentence_sentence"] > 0.25
    assert st["cos_image_image"] > 0.25
    assert st["cos_image_sentence"] < st["cos_sentence_sentence"] - 0.1
    # anisotropic: far fewer effective dimensions than the ambient ones
    assert st["effective_dim"] < 64 / 3
    # long-tailed sub-topic sizes
    sizes = np.bincount(data.sentence_subtopic)
    assert sizes.max() > 4 * np.median(sizes)
    # images sit near their own sub-topic's sentences, but are not copies of them
    sims = data.images @ data.sentences.T
    best = np.argmax(sims, axis=1)
    same = np.mean(data.sentence_subtopic[best] == data.image_subtopic)
    assert same > 0.5
    assert sims.max() < 0.99


# ------------------------------------------------------------------ core: adaptive probing


@pytest.fixture(scope="module")
def corpus():
    data = generate(ClipLikeSpec(n_sentences=8000, n_images=700, dim=48, seed=1))
    s = data.sentences
    km = train_kmeans(s, 19, seed=0)
    labels, _ = assign(s, km.centroids)
    index = build_cluster_index(labels, 19)
    imgs, cal = data.images[:500], data.images[500:]
    exact = retrieve_exact(imgs, s, k=3)
    return s, imgs, cal, km.centroids, index, exact


def test_adaptive_probing_recall_at_least_paper_setting(corpus):
    s, imgs, _, cents, index, exact = corpus
    paper = retrieve_hierarchical(imgs, s, cents, index, k=3, n_probe=1)
    zero = retrieve_hierarchical(imgs, s, cents, index, k=3, probe_margin=0.0)
    np.testing.assert_array_equal(zero.indices, paper.indices)  # margin 0 = the paper
    base = recall_against_exact(paper, exact)
    last = base
    for margin in (0.01, 0.03, 0.1):
        res = retrieve_hierarchical(imgs, s, cents, index, k=3, probe_margin=margin)
        rec = recall_against_exact(res, exact)
        assert rec >= last  # more margin, superset of clusters, never worse
        last = rec
    assert last > base
    everything = retrieve_hierarchical(
        imgs, s, cents, index, k=3, probe_margin=10.0, max_probe=index.n_clusters
    )
    np.testing.assert_array_equal(everything.indices, exact.indices)
    capped = retrieve_hierarchical(imgs, s, cents, index, k=3, probe_margin=10.0, max_probe=2)
    np.testing.assert_array_equal(
        capped.indices, retrieve_hierarchical(imgs, s, cents, index, k=3, n_probe=2).indices
    )
    with pytest.raises(ValueError):
        retrieve_hierarchical(imgs, s, cents, index, probe_margin=-0.1)
    with pytest.raises(ValueError):
        retrieve_hierarchical(imgs, s, cents, index, probe_margin=0.1, max_probe=0)


def test_calibration_estimate_is_exact_on_its_sample(corpus):
    s, imgs, cal, cents, index, exact = corpus
    for target in (0.8, 0.95):
        c = calibrate_probe_margin(cal, s, cents, index, k=3, target_recall=target)
        assert c.reached and c.recall >= target and c.margin > 0
        assert 1 <= c.mean_probes <= c.max_probe
        res = retrieve_hierarchical(cal, s, cents, index, k=3, probe_margin=c.margin)
        measured = recall_against_exact(res, retrieve_exact(cal, s, k=3))
        assert measured >= c.recall - 1e-9
        assert c.recall_n_probe <= c.recall
    # held-out images: the calibrated margin generalises (within sampling error)
    c = calibrate_probe_margin(cal, s, cents, index, k=3, target_recall=0.95)
    res = retrieve_hierarchical(imgs, s, cents, index, k=3, probe_margin=c.margin)
    assert recall_against_exact(res, exact) >= 0.9
    # an easy target is met by the paper's single cluster: margin 0
    easy = calibrate_probe_margin(cal, s, cents, index, k=3, target_recall=0.0)
    assert easy.margin == 0.0 and easy.mean_probes == 1.0
    with pytest.raises(ValueError):
        calibrate_probe_margin(cal, s, cents, index, target_recall=1.5)


def test_workers_give_identical_results(corpus):
    s, imgs, _, cents, index, _ = corpus
    one = retrieve_hierarchical(imgs, s, cents, index, k=3, probe_margin=0.05, workers=1)
    two = retrieve_hierarchical(imgs, s, cents, index, k=3, probe_margin=0.05, workers=2)
    np.testing.assert_array_equal(one.indices, two.indices)
    np.testing.assert_array_equal(one.scores, two.scores)


def test_sorted_sentence_layout_gives_identical_results(corpus):
    s, imgs, _, cents, index, _ = corpus
    s_sorted = sort_by_cluster(s, index)
    np.testing.assert_array_equal(
        s_sorted[index.offsets[3] : index.offsets[4]], s[index.members(3)]
    )
    for probing in ({"n_probe": 1}, {"n_probe": 2}, {"probe_margin": 0.05}):
        plain = retrieve_hierarchical(imgs, s, cents, index, k=3, **probing)
        fast = retrieve_hierarchical(
            imgs, s_sorted, cents, index, k=3, sentences_sorted=True, **probing
        )
        np.testing.assert_array_equal(fast.indices, plain.indices)
        np.testing.assert_array_equal(fast.scores, plain.scores)
    with pytest.raises(ValueError):
        sort_by_cluster(s[:-1], index)


def test_cluster_index_labels_invert_csr():
    labels = np.array([2, 0, 2, 1, 0, 2, 4])
    index = build_cluster_index(labels, 5)
    np.testing.assert_array_equal(index.labels(), labels)


# ------------------------------------------------------------------ core: threads, top-k


def test_blas_threads_sets_and_restores():
    import faiss
    import torch

    before = blas_thread_counts()
    assert "torch" in before
    assert any(key.startswith("openblas") for key in before)  # numpy's bundled OpenBLAS
    assert any(key.startswith("openmp") for key in before)  # faiss / torch OpenMP
    faiss_before = faiss.omp_get_max_threads()
    with blas_threads(1):
        assert set(blas_thread_counts().values()) == {1}
        assert faiss.omp_get_max_threads() == 1
    assert blas_thread_counts() == before
    with pytest.raises(RuntimeError), blas_threads(1):
        raise RuntimeError("boom")
    assert blas_thread_counts() == before
    with blas_threads(None):
        assert blas_thread_counts() == before
    assert torch.get_num_threads() == before["torch"]
    assert faiss.omp_get_max_threads() == faiss_before


def test_argmax_topk_matches_reference_with_ties_and_leaves_input_alone():
    rng = np.random.default_rng(7)
    for _ in range(20):
        b, m, k = int(rng.integers(1, 30)), int(rng.integers(5, 60)), int(rng.integers(2, 6))
        scores = rng.integers(0, 4, (b, m)).astype(np.float32)  # heavy ties
        ids = np.sort(rng.choice(10_000, m, replace=False)).astype(np.int64)
        keep = scores.copy()
        got_i, got_s = topk_rows(scores, ids, k)
        np.testing.assert_array_equal(scores, keep)
        for r in range(b):
            order = np.lexsort((ids, -scores[r]))[:k]
            np.testing.assert_array_equal(got_i[r], ids[order])
            np.testing.assert_array_equal(got_s[r], scores[r, order])
    ro = np.arange(12, dtype=np.float32).reshape(2, 6)
    ro.setflags(write=False)  # read-only input takes a copy
    top_i, _ = topk_rows(ro, np.arange(6), 2)
    np.testing.assert_array_equal(top_i, [[5, 4], [5, 4]])
