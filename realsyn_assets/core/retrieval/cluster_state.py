"""Keeping a sentence clustering while shards keep arriving (paper §3.2 at web scale).

k-means over every sentence is the expensive, global step of retrieval (2M centroids for 0.84B
sentences in the paper). Re-running it for every new shard would also re-label every old
sentence and invalidate every earlier shard's retrieval. So the centroids are fitted once and
then kept: a new shard's sentences are assigned to the nearest existing centroid, sentences that
were already assigned keep their label, and a drift measure says when the centroids no longer
describe the data (then re-clustering is an explicit decision, not a side effect).

Two things force a refit regardless: no fitted state yet, or a different embedding space (the
encoder changed, so stored centroids and new vectors are not comparable). The latter is detected
with a few "probe" sentences whose vectors are stored at fit time and compared with today's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from realsyn_assets.core.retrieval.kmeans import (
    DRIFT_RECLUSTER_THRESHOLD,
    assign,
    assignment_drift,
)

# The centroid count was sized for the fitted corpus (~420 sentences per cluster); once the
# corpus has grown past this factor, clusters are that much larger and slower to search.
GROWTH_RECLUSTER_FACTOR = 2.0
PROBE_SENTENCES = 64
# Cosine below this between a probe sentence's stored and current vector = new embedding space.
SAME_VECTOR_COSINE = 0.999


@dataclass
class ClusteringState:
    """What a fit leaves behind next to the centroids (stored as `clustering.json`)."""

    n_clusters: int
    dim: int
    fit_sentences: int
    fit_mean_similarity: float
    fit_seconds: float
    seed: int
    probe_keys: list[str] = field(default_factory=list)
    fit_id: str = ""  # centroids_fingerprint() of the centroids this state belongs to

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def load(cls, path: Path) -> ClusteringState | None:
        """The stored state, or None when absent or unreadable (then the caller refits)."""
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def centroids_fingerprint(centroids: np.ndarray) -> str:
    """Ties the stored state to one set of centroids: a write interrupted between the two files
    is detected instead of carrying labels over to centroids they were not computed with."""
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(centroids, np.float32).tobytes()).hexdigest()[:16]


def pick_probe_rows(keys: np.ndarray, n: int = PROBE_SENTENCES) -> np.ndarray:
    """Deterministic rows (spread over the sorted keys) whose vectors witness the embedding space."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(np.asarray(keys, dtype=object).astype(str), kind="stable")
    take = np.linspace(0, len(keys) - 1, num=min(n, len(keys))).round().astype(np.int64)
    return np.unique(order[take])


def embedding_changed(
    probe_keys: list[str], probe_vecs: np.ndarray, keys: np.ndarray, vectors: np.ndarray
) -> bool | None:
    """True when probe sentences present today have different vectors than at fit time.

    None when no probe sentence is present any more (no evidence either way).
    """
    if not probe_keys or len(probe_vecs) != len(probe_keys):
        return None
    where = {k: i for i, k in enumerate(np.asarray(keys, dtype=object).tolist())}
    rows = [(j, where[k]) for j, k in enumerate(probe_keys) if k in where]
    if not rows:
        return None
    old = np.asarray(probe_vecs, np.float32)[[j for j, _ in rows]]
    new = np.asarray(vectors, np.float32)[[i for _, i in rows]]
    if old.shape[1] != new.shape[1]:
        return True
    cos = (old * new).sum(axis=1)
    return bool((cos < SAME_VECTOR_COSINE).any())


@dataclass
class IncrementalAssignment:
    """Labels for today's sentences against fixed centroids."""

    labels: np.ndarray  # int64, one per sentence
    similarity: np.ndarray  # float32 cosine to the assigned centroid
    new: np.ndarray  # bool: assigned now (not carried over from the previous run)

    @property
    def n_new(self) -> int:
        return int(self.new.sum())


def assign_incrementally(
    keys: np.ndarray,
    vectors: np.ndarray,
    centroids: np.ndarray,
    previous_keys: np.ndarray,
    previous_labels: np.ndarray,
    previous_similarity: np.ndarray,
) -> IncrementalAssignment:
    """Carry over the labels of sentences assigned before; assign only the others.

    Sentences that disappeared (a shard re-materialized with fewer kept sentences) simply drop
    out; a carried-over sentence keeps its label even if a centroid would now be a hair closer
    (centroids do not change between refits, so it cannot be).
    """
    keys = np.asarray(keys, dtype=object)
    n = len(keys)
    labels = np.full(n, -1, np.int64)
    sims = np.zeros(n, np.float32)
    prev = {k: i for i, k in enumerate(np.asarray(previous_keys, dtype=object).tolist())}
    old_rows = np.fromiter((prev.get(k, -1) for k in keys.tolist()), np.int64, count=n)
    carried = old_rows >= 0
    labels[carried] = np.asarray(previous_labels, np.int64)[old_rows[carried]]
    sims[carried] = np.asarray(previous_similarity, np.float32)[old_rows[carried]]
    new = ~carried
    if new.any():
        new_labels, new_sims = assign(np.asarray(vectors)[new], centroids)
        labels[new], sims[new] = new_labels, new_sims
    return IncrementalAssignment(labels=labels, similarity=sims, new=new)


def drift(state: ClusteringState, new_similarity: np.ndarray) -> float:
    """Relative drop of the mean best-centroid cosine of newly assigned sentences vs the fit."""
    return assignment_drift(state.fit_mean_similarity, new_similarity)


def recluster_reasons(
    state: ClusteringState,
    n_sentences: int,
    drift_value: float,
    drift_threshold: float = DRIFT_RECLUSTER_THRESHOLD,
    growth_factor: float = GROWTH_RECLUSTER_FACTOR,
) -> list[str]:
    """Why re-clustering is due (empty list = the kept centroids are still fine)."""
    reasons = []
    if drift_value > drift_threshold:
        reasons.append(
            f"drift {drift_value:.3f} > {drift_threshold:.3f}: new sentences fit the "
            "centroids worse than the fitted ones did"
        )
    if state.fit_sentences and n_sentences > growth_factor * state.fit_sentences:
        reasons.append(
            f"corpus grew {n_sentences / state.fit_sentences:.1f}x since the fit "
            f"({state.fit_sentences} -> {n_sentences} sentences)"
        )
    return reasons


def calibration_mask(ids: list[str]) -> np.ndarray:
    """Split images by a stable hash of their id: True = used to calibrate probing, False = kept
    for measuring recall, so the recall reported for retrieval is not measured on the images
    the probe margin was tuned on."""
    import zlib

    return np.fromiter((zlib.crc32(str(i).encode()) & 1 == 0 for i in ids), bool, count=len(ids))
