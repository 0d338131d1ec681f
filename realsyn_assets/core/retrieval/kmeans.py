"""Spherical k-means over L2-normalised embeddings (paper §3.2 sentence clusters, §3.3 image clusters).

The paper clusters 0.84B sentence embeddings into 2M centres and 168M image embeddings into 1M
centres with Faiss. We use Faiss' `Kmeans` as well (it is fast, multithreaded and GPU-capable)
and only add what the pipeline needs around it: cluster counts that scale with corpus size, a
deterministic training subsample, bounded-memory assignment, and a drift measure that says when
the centroids no longer describe newly added data.

All vectors are float32 with unit-norm rows; similarity is the inner product (cosine).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import faiss
import numpy as np

from realsyn_assets.core.retrieval.topk import as_matrix

# Paper: 2M clusters for 0.84B sentences (~420 per cluster), 1M clusters for 168M images (~168).
SENTENCES_PER_CLUSTER = 420
IMAGES_PER_CLUSTER = 168

# "auto" init uses k-means++ seeding while train_points * k stays below this (~1 s of work).
KMEANS_PP_BUDGET = 50_000_000
_INIT_METHODS = {
    "auto": None,
    "random": faiss.ClusteringInitMethod_RANDOM,
    "kmeans++": faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
}

# A relative drop of the mean best-centroid similarity above this suggests re-clustering.
DRIFT_RECLUSTER_THRESHOLD = 0.05


def n_clusters_for(n_items: int, per_cluster: int) -> int:
    """Number of clusters that keeps the paper's mean cluster size for a corpus of `n_items`.

    `max(1, round(n_items / per_cluster))` (half rounds up), never more than `n_items`;
    0 only for an empty corpus.
    """
    if per_cluster <= 0:
        raise ValueError(f"per_cluster must be positive, got {per_cluster}")
    if n_items <= 0:
        return 0
    k = max(1, math.floor(n_items / per_cluster + 0.5))
    return min(k, n_items)


@dataclass
class KMeansResult:
    """Trained centroids plus the numbers worth recording as asset metadata.

    `objective` is Faiss' final objective over the training points: the sum of inner products
    for spherical k-means (higher is better), the sum of squared L2 distances otherwise.
    `mean_similarity` is the mean best-centroid similarity of the training points under the
    final centroids; keep it, it is the baseline for `assignment_drift`.
    """

    centroids: np.ndarray
    train_points: int
    iterations: int
    objective: float
    seconds: float
    mean_similarity: float = float("nan")


def train_kmeans(
    vectors: np.ndarray,
    n_clusters: int,
    *,
    seed: int = 0,
    niter: int = 20,
    max_points_per_centroid: int = 256,
    spherical: bool = True,
    nredo: int = 1,
    init: str = "auto",
) -> KMeansResult:
    """Train k-means with Faiss; deterministic for a given `seed`.

    When `n > n_clusters * max_points_per_centroid` we train on a uniform subsample of that size
    drawn with `seed` (Faiss would subsample too; doing it here makes `train_points` explicit and
    the sample reproducible independently of Faiss internals). `n_clusters` larger than the
    number of points is clipped to it (each point then becomes a centroid). Spherical mode keeps
    centroids unit-norm so that inner product with unit-norm queries is cosine.

    `init`: "random" (Faiss default: k distinct training points), "kmeans++" (D²-weighted
    seeding, O(n·k·d), much less likely to leave two centroids in one natural cluster) or
    "auto" = kmeans++ while `train_points * k <= KMEANS_PP_BUDGET`, random beyond (at the
    paper's 2M centroids kmeans++ seeding would cost more than the clustering itself).
    `nredo` > 1 reruns with different seeds and keeps the best objective; Lloyd iterations
    cannot move a centroid across well-separated clusters, so for small k with clear structure
    a few redos are the cheap cure for bad local minima.
    """
    x = as_matrix(vectors, "vectors")
    n, d = x.shape
    if n == 0:
        raise ValueError("cannot cluster an empty set of vectors")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if max_points_per_centroid < 1:
        raise ValueError("max_points_per_centroid must be >= 1")
    if nredo < 1:
        raise ValueError("nredo must be >= 1")
    if init not in _INIT_METHODS:
        raise ValueError(f"init must be one of {sorted(_INIT_METHODS)}, got {init!r}")
    k = min(int(n_clusters), n)

    t0 = time.perf_counter()
    limit = k * max_points_per_centroid
    if n > limit:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=limit, replace=False))
        train = np.ascontiguousarray(x[sample])
    else:
        train = x

    if init == "auto":
        init = "kmeans++" if train.shape[0] * k <= KMEANS_PP_BUDGET else "random"
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=seed,
        spherical=spherical,
        verbose=False,
        nredo=nredo,
        init_method=_INIT_METHODS[init],
        # Our own subsample already respects the cap; stop Faiss from resampling or from
        # warning about "too few points per centroid" on small corpora (n < 39 k).
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=1,
    )
    objective = float(km.train(train))
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32).reshape(k, d)
    iterations = len(km.iteration_stats or [])
    _, sim = assign(train, centroids)
    seconds = time.perf_counter() - t0
    return KMeansResult(
        centroids=centroids,
        train_points=int(train.shape[0]),
        iterations=iterations,
        objective=objective,
        seconds=seconds,
        mean_similarity=float(sim.mean(dtype=np.float64)),
    )


def assign(
    vectors: np.ndarray, centroids: np.ndarray, block: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by inner product, `block` rows at a time so memory stays bounded.

    Returns `(labels int64, similarity float32)`. Meant for unit-norm centroids (spherical
    k-means); for non-spherical centroids inner product is not nearest-in-L2.
    """
    x = as_matrix(vectors, "vectors")
    c = as_matrix(centroids, "centroids")
    if block < 1:
        raise ValueError("block must be >= 1")
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    sims = np.empty(n, dtype=np.float32)
    if n == 0:
        return labels, sims
    if c.shape[0] == 0:
        raise ValueError("no centroids to assign to")
    if c.shape[1] != x.shape[1]:
        raise ValueError(f"dimension mismatch: vectors {x.shape[1]}, centroids {c.shape[1]}")
    index = faiss.IndexFlatIP(c.shape[1])
    index.add(c)
    for start in range(0, n, block):
        stop = min(start + block, n)
        dist, idx = index.search(x[start:stop], 1)
        labels[start:stop] = idx[:, 0]
        sims[start:stop] = dist[:, 0]
    return labels, sims


def assignment_drift(old_similarity_mean: float, new_similarity: np.ndarray) -> float:
    """Relative drop of mean best-centroid similarity: `(old - mean(new)) / |old|`.

    Centroids are trained once (they are a global asset) while shards keep arriving. If new
    items fit the existing centroids clearly worse than the training items did (positive
    drift above ~`DRIFT_RECLUSTER_THRESHOLD`, i.e. 5 %), the new data covers concepts the
    clustering has not seen and retrieval/balancing quality degrades: re-cluster. Zero or
    negative drift means the new items fit at least as well. Empty input gives 0.0.
    """
    new = np.asarray(new_similarity, dtype=np.float64).ravel()
    new = new[np.isfinite(new)]
    if new.size == 0 or not math.isfinite(old_similarity_mean):
        return 0.0
    denom = max(abs(float(old_similarity_mean)), 1e-12)
    return float((float(old_similarity_mean) - new.mean()) / denom)
