"""Image clusters for semantic balance (paper §3.3): k-means over the images whose pair with the
synthetic text lies inside the cosine window, so the per-cluster caps act on kept pairs only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.balance.sampling import cluster_size_stats, cosine_window_mask
from realsyn_assets.core.balance.subset import composite_key
from realsyn_assets.core.retrieval import kmeans as kmeans_core

# k-means is fit on at most this many kept images per cluster (a seeded subsample): the
# centroids barely move beyond ~64 points each, and fitting costs O(points * k * d).
TRAIN_POINTS_PER_CLUSTER = 64
# Kept pairs assigned to their nearest centroid this many rows at a time (bounded memory).
ASSIGN_BLOCK = 262_144


def pair_similarities(pairs: pa.Table) -> np.ndarray:
    """The image-synthetic text cosine (`syn_score`) of each pair, float32."""
    return np.asarray(pairs.column("syn_score").to_numpy(zero_copy_only=False), dtype=np.float32)


def pair_rows(rows: pa.Table, pairs: pa.Table) -> np.ndarray:
    """Row of each (shard, image_id) of `pairs` in the embedding matrix whose rows are `rows`.

    One hash join in Arrow (no Python objects per row). Raises KeyError when a pair has no
    embedding.
    """
    index = pc.index_in(composite_key(pairs), value_set=composite_key(rows))
    if index.null_count:
        raise KeyError(f"{index.null_count} image-text pairs have no image embedding")
    return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)


def content_version(path: Path | str, block: int = 1 << 22) -> str:
    """sha256 (hex) of a file's bytes: the version of the image_clusters assignments that a
    balanced subset is pinned to. The writer is deterministic, so equal assignments give
    equal versions."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class WindowClusters:
    """Which pairs the window keeps and the image cluster of each kept pair."""

    in_window: np.ndarray  # bool, one per pair
    labels: np.ndarray  # int64 cluster per pair, -1 outside the window
    n_clusters: int
    size_stats: dict[str, float]  # `cluster_size_stats` of the kept pairs
    train_points: int = 0  # kept images the centroids were fit on


def cluster_window(
    vectors: np.ndarray,
    pair_index: np.ndarray,
    sims: np.ndarray,
    window: tuple[float, float],
    n_clusters: int,
    images_per_cluster: int,
    seed: int,
    *,
    train_points_per_cluster: int = TRAIN_POINTS_PER_CLUSTER,
    niter: int = 20,
    block: int = ASSIGN_BLOCK,
) -> WindowClusters:
    """Drop pairs outside `window`, then k-means the kept images' embeddings.

    `vectors[pair_index[j]]` is the image embedding of pair j and `sims[j]` its image-synthetic
    text cosine. `n_clusters` 0 derives the count from `images_per_cluster`. The centroids are
    fit on a seeded subsample of at most `train_points_per_cluster` kept images per cluster and
    every kept pair is then assigned `block` rows at a time, so no copy of all kept vectors is
    made. Raises ValueError when no pair is inside the window.
    """
    in_window = cosine_window_mask(sims, *window)
    kept_rows = np.asarray(pair_index, dtype=np.int64)[in_window]
    if kept_rows.size == 0:
        raise ValueError("no image-text pair inside the cosine window")
    k = n_clusters or kmeans_core.n_clusters_for(kept_rows.size, images_per_cluster)
    k = min(k, kept_rows.size)
    limit = k * max(1, train_points_per_cluster)
    train_rows = kept_rows
    if kept_rows.size > limit:
        pick = np.random.default_rng(seed).choice(kept_rows.size, size=limit, replace=False)
        train_rows = kept_rows[np.sort(pick)]
    result = kmeans_core.train_kmeans(
        vectors[train_rows], k, seed=seed, niter=niter, max_points_per_centroid=limit // k
    )
    labels_kept = np.empty(kept_rows.size, dtype=np.int64)
    for start in range(0, kept_rows.size, block):
        chunk = vectors[kept_rows[start : start + block]]
        labels_kept[start : start + block] = kmeans_core.assign(chunk, result.centroids)[0]
    labels = np.full(len(sims), -1, dtype=np.int64)
    labels[in_window] = labels_kept
    stats = cluster_size_stats(labels_kept)
    return WindowClusters(in_window, labels, k, stats, result.train_points)


def assignments(pairs: pa.Table, found: WindowClusters) -> pa.Table:
    """`pairs` with `in_window` and `cluster` columns: what balanced_subset samples from."""
    return pairs.append_column("in_window", pa.array(found.in_window)).append_column(
        "cluster", pa.array(found.labels)
    )


def cosine_histogram(sims: np.ndarray, low: float, high: float):
    """Histogram of the pair cosines with the window's bounds (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.hist(sims, bins=40)
    ax.axvline(low, color="r")
    ax.axvline(high, color="r")
    ax.set_xlabel("image - synthetic text cosine")
    return fig
