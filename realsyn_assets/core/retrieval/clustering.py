"""The `sentence_clusters` step on files: reuse or fit the sentence clustering, store it in cluster
order, calibrate adaptive probing for it, and read it back for retrieval.

Files in the step's folder:
- `centroids.npy`, `probe_vectors.npy`, `clustering.json`: the fit (see `cluster_state`);
- `members.parquet` and `vectors.npy`: every kept sentence with its cluster and similarity, in
  cluster order, so every cluster is one contiguous slice of the memory-mapped vectors and
  hierarchical retrieval reads only the probed clusters;
- `probe.json`: the calibrated probe margin (adaptive probing), or why there is none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.io import atomic_write_bytes, read_table, save_npy, write_table
from realsyn_assets.core.retrieval import cluster_state
from realsyn_assets.core.retrieval import kmeans as kmeans_core
from realsyn_assets.core.retrieval.calibration import calibrate_probe_margin
from realsyn_assets.core.retrieval.index import build_cluster_index

CENTROIDS = "centroids.npy"
MEMBERS = "members.parquet"
PROBE_VECTORS = "probe_vectors.npy"
VECTORS = "vectors.npy"
STATE = "clustering.json"
PROBING = "probe.json"


def sentence_keys(members: pa.Table) -> np.ndarray:
    """One `shard \\x1f sentence_id` key per row: what identifies a sentence across runs."""
    joined = pc.binary_join_element_wise(
        members.column("shard"), members.column("sentence_id"), "\x1f"
    )
    return np.asarray(joined.to_pylist(), dtype=object)


@dataclass
class PreviousClustering:
    """The last fit as stored: its state, centroids, member assignments and probe vectors."""

    state: cluster_state.ClusteringState
    centroids: np.ndarray
    members: pa.Table
    probe_vectors: np.ndarray


def load_previous(out_dir: Path, dim: int) -> PreviousClustering | None:
    """The last fit, or None if there is none or its files do not belong together."""
    state = cluster_state.ClusteringState.load(out_dir / STATE)
    paths = [out_dir / n for n in (CENTROIDS, MEMBERS, PROBE_VECTORS)]
    if state is None or state.dim != dim or not all(p.is_file() for p in paths):
        return None
    centroids = np.load(paths[0])
    if centroids.shape != (state.n_clusters, dim):
        return None
    if state.fit_id != cluster_state.centroids_fingerprint(centroids):
        return None  # an interrupted refit: the files do not belong together
    members = read_table(paths[1], columns=["shard", "sentence_id", "cluster", "similarity"])
    return PreviousClustering(state, centroids, members, np.load(paths[2]))


@dataclass
class SentenceClustering:
    """Today's sentences against one set of centroids: freshly fitted or carried over."""

    mode: str  # "fit" or "incremental"
    fit_reason: str  # why k-means ran ("-" when it did not)
    state: cluster_state.ClusteringState
    centroids: np.ndarray
    labels: np.ndarray  # int64 cluster per sentence, in input order
    similarity: np.ndarray  # float32 cosine to the assigned centroid, in input order
    n_new: int  # sentences assigned in this run
    drift: float
    recluster_reasons: list[str] = field(default_factory=list)
    probe_rows: np.ndarray | None = None  # fit only: rows whose vectors witness the space

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.state.n_clusters)


def cluster_sentences(
    keys: np.ndarray,
    matrix: np.ndarray,
    out_dir: Path,
    *,
    recluster: bool,
    n_clusters: int,
    sentences_per_cluster: int,
    seed: int,
    niter: int,
    drift_threshold: float,
    log: Callable[[str], None] = lambda _: None,
) -> SentenceClustering:
    """Keep the stored centroids and assign only new sentences, or fit k-means when asked to
    (`recluster`), when there is no usable earlier fit, or when the embedding space changed."""
    previous = None if recluster else load_previous(out_dir, matrix.shape[1])
    why_fit = "requested (recluster=true)" if recluster else "no earlier clustering"
    if previous is not None and cluster_state.embedding_changed(
        previous.state.probe_keys, previous.probe_vectors, keys, matrix
    ):
        previous, why_fit = None, "embedding space changed (encoder switched)"
    if previous is None:
        k = n_clusters or kmeans_core.n_clusters_for(len(keys), sentences_per_cluster)
        log(f"k-means ({why_fit}): {len(keys)} sentences -> {k} clusters")
        run = _fit(keys, matrix, k, seed=seed, niter=niter, why=why_fit)
    else:
        run = _assign_new(keys, matrix, previous)
        log(f"kept {run.state.n_clusters} centroids; assigned {run.n_new} new sentences")
    run.recluster_reasons = cluster_state.recluster_reasons(
        run.state, len(keys), run.drift, drift_threshold
    )
    return run


def _fit(
    keys: np.ndarray, matrix: np.ndarray, k: int, *, seed: int, niter: int, why: str
) -> SentenceClustering:
    result = kmeans_core.train_kmeans(matrix, k, seed=seed, niter=niter)
    centroids = result.centroids.astype(np.float32)
    labels, sims = kmeans_core.assign(matrix, centroids)
    probe_rows = cluster_state.pick_probe_rows(keys)
    state = cluster_state.ClusteringState(
        n_clusters=len(centroids),
        dim=int(matrix.shape[1]),
        fit_sentences=len(keys),
        fit_mean_similarity=float(sims.mean()),
        fit_seconds=float(result.seconds),
        seed=seed,
        probe_keys=[str(keys[i]) for i in probe_rows],
        fit_id=cluster_state.centroids_fingerprint(centroids),
    )
    return SentenceClustering(
        "fit", why, state, centroids, labels, sims, len(keys), 0.0, probe_rows=probe_rows
    )


def _assign_new(
    keys: np.ndarray, matrix: np.ndarray, previous: PreviousClustering
) -> SentenceClustering:
    old = previous.members
    inc = cluster_state.assign_incrementally(
        keys,
        matrix,
        previous.centroids,
        sentence_keys(old),
        old.column("cluster").to_numpy(),
        old.column("similarity").to_numpy(),
    )
    drift = cluster_state.drift(previous.state, inc.similarity[inc.new])
    return SentenceClustering(
        "incremental",
        "-",
        previous.state,
        previous.centroids,
        inc.labels,
        inc.similarity,
        inc.n_new,
        drift,
    )


def save_clustering(
    out_dir: Path, run: SentenceClustering, members: pa.Table, keys: np.ndarray, matrix: np.ndarray
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Write the clustering; return (members with cluster and similarity, vectors, labels), all
    in cluster order (the order of `members.parquet` and `vectors.npy`).

    The state goes last: a crash before it leaves no state pointing at stale labels.
    """
    if run.mode == "fit":
        save_npy(run.centroids, out_dir / CENTROIDS)
        save_npy(matrix[run.probe_rows], out_dir / PROBE_VECTORS)
    order = np.lexsort((keys.astype(str), run.labels))
    members = members.take(pa.array(order))
    members = members.append_column("cluster", pa.array(run.labels[order])).append_column(
        "similarity", pa.array(run.similarity[order])
    )
    ordered = np.ascontiguousarray(matrix[order])
    save_npy(ordered, out_dir / VECTORS)
    write_table(members, out_dir / MEMBERS)
    if run.mode == "fit":
        atomic_write_bytes(out_dir / STATE, run.state.to_json().encode())
    return members, ordered, run.labels[order]


def calibrate_probing(
    image_ids: list[str],
    image_vectors: Callable[[np.ndarray], np.ndarray],
    matrix: np.ndarray,
    centroids: np.ndarray,
    labels: np.ndarray,
    *,
    k: int,
    target_recall: float,
    max_probe: int,
    calibration_images: int,
) -> dict:
    """The probe margin for adaptive probing, tuned on the calibration half of the images
    (`cluster_state.calibration_mask`, at most `calibration_images` of them, spread evenly).

    `image_vectors(rows)` gives the vectors of those rows of `image_ids`. Returns what
    `probe.json` holds: the margin (None when off or without images) and its sample figures.
    """
    if target_recall <= 0 or len(image_ids) == 0:
        return {"margin": None, "reason": "off" if target_recall <= 0 else "no images"}
    rows = np.flatnonzero(cluster_state.calibration_mask(image_ids))
    if rows.size > calibration_images:
        rows = rows[np.linspace(0, rows.size - 1, calibration_images).round().astype(int)]
    cal = calibrate_probe_margin(
        image_vectors(rows),
        matrix,
        centroids,
        build_cluster_index(labels, len(centroids)),
        k=k,
        target_recall=target_recall,
        max_probe=max_probe,
    )
    return {
        "margin": cal.margin,
        "sample_recall": cal.recall,
        "sample_recall_single_cluster": cal.recall_n_probe,
        "mean_probes": cal.mean_probes,
        "target_recall": cal.target_recall,
        "reached": cal.reached,
        "sample_images": cal.sample,
        "max_probe": cal.max_probe,
    }


def save_probing(out_dir: Path, probing: dict) -> None:
    atomic_write_bytes(out_dir / PROBING, json.dumps(probing, indent=1).encode())


@dataclass
class StoredClustering:
    """The stored clustering as retrieval reads it: members and memory-mapped vectors, both in
    cluster order; centroids and the probe margin on demand."""

    directory: Path
    members: pa.Table
    vectors: np.ndarray

    @classmethod
    def open(cls, directory: Path) -> StoredClustering:
        members = read_table(directory / MEMBERS)
        return cls(directory, members, np.load(directory / VECTORS, mmap_mode="r"))

    def centroids(self) -> np.ndarray:
        return np.load(self.directory / CENTROIDS)

    def probing(self) -> dict:
        """probe.json, or {} when it is absent (no adaptive probing)."""
        path = self.directory / PROBING
        return json.loads(path.read_text()) if path.is_file() else {}
