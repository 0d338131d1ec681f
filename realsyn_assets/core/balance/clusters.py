"""Image clusters for semantic balance (paper §3.3): k-means over the images whose pair with the
synthetic text lies inside the cosine window, so the per-cluster caps act on kept pairs only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from realsyn_assets.core.balance.sampling import cluster_size_stats, cosine_window_mask
from realsyn_assets.core.retrieval import kmeans as kmeans_core


def pair_similarities(pairs: pa.Table) -> np.ndarray:
    """The image-synthetic text cosine (`syn_score`) of each pair, float32."""
    return np.asarray(pairs.column("syn_score").to_numpy(zero_copy_only=False), dtype=np.float32)


def pair_rows(rows: pa.Table, pairs: pa.Table) -> np.ndarray:
    """Row of each (shard, image_id) of `pairs` in the embedding matrix whose rows are `rows`.

    Raises KeyError when a pair has no embedding.
    """
    row_of = {
        (s, i): r
        for r, (s, i) in enumerate(
            zip(rows.column("shard").to_pylist(), rows.column("image_id").to_pylist(), strict=True)
        )
    }
    return np.array(
        [
            row_of[(s, i)]
            for s, i in zip(
                pairs.column("shard").to_pylist(), pairs.column("image_id").to_pylist(), strict=True
            )
        ],
        dtype=np.int64,
    )


@dataclass(frozen=True)
class WindowClusters:
    """Which pairs the window keeps and the image cluster of each kept pair."""

    in_window: np.ndarray  # bool, one per pair
    labels: np.ndarray  # int64 cluster per pair, -1 outside the window
    n_clusters: int
    size_stats: dict[str, float]  # `cluster_size_stats` of the kept pairs


def cluster_window(
    vectors: np.ndarray,
    pair_index: np.ndarray,
    sims: np.ndarray,
    window: tuple[float, float],
    n_clusters: int,
    images_per_cluster: int,
    seed: int,
) -> WindowClusters:
    """Drop pairs outside `window`, then k-means the kept images' embeddings.

    `vectors[pair_index[j]]` is the image embedding of pair j and `sims[j]` its image-synthetic
    text cosine. `n_clusters` 0 derives the count from `images_per_cluster`. Raises ValueError
    when no pair is inside the window.
    """
    in_window = cosine_window_mask(sims, *window)
    kept = vectors[pair_index[in_window]]
    if len(kept) == 0:
        raise ValueError("no image-text pair inside the cosine window")
    k = n_clusters or kmeans_core.n_clusters_for(len(kept), images_per_cluster)
    result = kmeans_core.train_kmeans(kept, k, seed=seed)
    labels_kept, _ = kmeans_core.assign(kept, result.centroids)
    labels = np.full(len(sims), -1, dtype=np.int64)
    labels[in_window] = labels_kept
    return WindowClusters(in_window, labels, k, cluster_size_stats(labels_kept))


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
