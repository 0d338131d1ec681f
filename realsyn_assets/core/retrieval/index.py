"""Result and index types of retrieval: top-k rows per image and a clustering in CSR layout.

Conventions (shared by every retrieval module, see `search`): results are `(n_images, k)` int64
sentence indices padded with -1 and float32 scores descending per row, -inf where the index is -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realsyn_assets.core.retrieval.topk import as_matrix


@dataclass
class RetrievalResult:
    """Top-k sentences per image."""

    indices: np.ndarray  # (n_images, k) int64 into the sentence array, -1 where fewer than k
    scores: np.ndarray  # (n_images, k) float32, descending per row, -inf where -1

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def valid_counts(self) -> np.ndarray:
        """How many real (non-padding) sentences each image received."""
        return (self.indices >= 0).sum(axis=1)


@dataclass(frozen=True)
class ClusterIndex:
    """CSR layout of a clustering: members of cluster c are `order[offsets[c]:offsets[c+1]]`.

    Making each cluster's members contiguous lets retrieval gather one cluster's sentence
    matrix with a single slice of `order`; members are listed in ascending sentence index.
    """

    order: np.ndarray  # (n_sentences,) int64 sentence indices sorted by cluster (stable)
    offsets: np.ndarray  # (n_clusters + 1,) int64

    @property
    def n_clusters(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def members(self, cluster: int) -> np.ndarray:
        return self.order[self.offsets[cluster] : self.offsets[cluster + 1]]

    def labels(self) -> np.ndarray:
        """Cluster of every sentence, `(n_sentences,)` int64 (the inverse of the CSR layout)."""
        out = np.empty(self.order.shape[0], dtype=np.int64)
        out[self.order] = np.repeat(np.arange(self.n_clusters, dtype=np.int64), self.sizes)
        return out


def build_cluster_index(sentence_labels: np.ndarray, n_clusters: int) -> ClusterIndex:
    """CSR index of a sentence clustering (labels in `[0, n_clusters)`); empty clusters allowed."""
    labels = np.asarray(sentence_labels).astype(np.int64, copy=False).ravel()
    if n_clusters < 0:
        raise ValueError("n_clusters must be >= 0")
    if labels.size and (labels.min() < 0 or labels.max() >= n_clusters):
        raise ValueError(
            f"labels must lie in [0, {n_clusters}), got [{labels.min()}, {labels.max()}]"
        )
    order = np.argsort(labels, kind="stable").astype(np.int64)
    counts = np.bincount(labels, minlength=n_clusters)
    offsets = np.zeros(n_clusters + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return ClusterIndex(order=order, offsets=offsets)


def sort_by_cluster(sentence_vecs: np.ndarray, index: ClusterIndex) -> np.ndarray:
    """Sentence vectors in cluster order (row i = sentence `index.order[i]`), for
    `retrieve_hierarchical(..., sentences_sorted=True)`: a one-off copy at index-build time
    that makes every cluster a contiguous slice."""
    s = as_matrix(sentence_vecs, "sentence_vecs")
    if s.shape[0] != index.order.shape[0]:
        raise ValueError(f"index covers {index.order.shape[0]} sentences, got {s.shape[0]}")
    return np.ascontiguousarray(s[index.order])
