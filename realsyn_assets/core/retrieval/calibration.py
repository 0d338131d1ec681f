"""Adaptive probing: the probe margin that reaches a target recall@k on a sample of images.

A fixed margin means different things for different encoders and corpora, so the margin is
measured once per clustering on held-out images (one exact search over the sample) and stored
next to the centroids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realsyn_assets.core.retrieval.index import ClusterIndex, RetrievalResult
from realsyn_assets.core.retrieval.search import retrieve_exact
from realsyn_assets.core.retrieval.topk import as_matrix, check_k


@dataclass(frozen=True)
class ProbeCalibration:
    """Margin that reaches `target_recall` on a sample, and what it is expected to cost.

    `recall` and `mean_probes` are measured on the calibration sample (recall@k against
    exact search; probes = clusters searched per image), `recall_n_probe` is the sample
    recall of plain `n_probe` probing for comparison. `reached` is False when even
    `max_probe` clusters per image do not reach the target; `margin` is then the one that
    gets closest.
    """

    margin: float
    recall: float
    mean_probes: float
    recall_n_probe: float
    target_recall: float
    reached: bool
    sample: int
    max_probe: int


def calibrate_probe_margin(
    sample_image_vecs: np.ndarray,
    sentence_vecs: np.ndarray,
    centroids: np.ndarray,
    index: ClusterIndex,
    k: int = 3,
    target_recall: float = 0.95,
    *,
    n_probe: int = 1,
    max_probe: int = 32,
    exact: RetrievalResult | None = None,
) -> ProbeCalibration:
    """Smallest `probe_margin` whose recall@k on a sample of images reaches `target_recall`.

    For every true top-k sentence of every sample image (exact search, or `exact` if given)
    we know the margin that would have reached it: best centroid score minus the score of
    the centroid of the sentence's cluster (and whether that cluster ranks within
    `max_probe`). Sorting those margins gives recall as a function of margin exactly, so one
    exact search over the sample is all it costs: ~`sample * n_sentences * d`, a one-off per
    clustering (store the margin with the centroids). Use images that are not the ones being
    evaluated, a few hundred are enough (the sampling error of the recall is ~0.01 at 500).
    """
    k = check_k(k)
    if not 0.0 <= target_recall <= 1.0:
        raise ValueError(f"target_recall must lie in [0, 1], got {target_recall}")
    if n_probe < 1 or max_probe < 1:
        raise ValueError("n_probe and max_probe must be >= 1")
    q = as_matrix(sample_image_vecs, "sample_image_vecs")
    s = as_matrix(sentence_vecs, "sentence_vecs")
    c = as_matrix(centroids, "centroids")
    if c.shape[0] != index.n_clusters or index.order.shape[0] != s.shape[0]:
        raise ValueError("centroids / index / sentences do not belong together")
    n_c = c.shape[0]
    p = min(n_probe, n_c)
    cap = max(p, min(max_probe, n_c))
    if exact is None:
        exact = retrieve_exact(q, s, k)
    truth = exact.indices
    if q.shape[0] == 0 or n_c == 0 or not (truth >= 0).any():
        return ProbeCalibration(0.0, 1.0, float(p), 1.0, target_recall, True, q.shape[0], cap)
    labels = index.labels()
    n_q = q.shape[0]
    valid = truth >= 0
    free = np.zeros(truth.shape, dtype=bool)  # reached by the plain n_probe clusters
    needed = np.full(truth.shape, np.inf, dtype=np.float64)  # margin that reaches the rest
    top_gaps: list[np.ndarray] = []  # per image: gaps of its `cap` best clusters (unsorted)
    rows_per_block = max(1, (1 << 24) // max(n_c, 1))
    for a in range(0, n_q, rows_per_block):
        z = min(a + rows_per_block, n_q)
        cs = q[a:z] @ c.T  # (b, n_c)
        best = cs.max(axis=1)
        lab = labels[np.maximum(truth[a:z], 0)]
        own = np.take_along_axis(cs, lab, axis=1)  # score of each true sentence's centroid
        # Rank = clusters scoring strictly higher, or equal with a lower id (= blocked_topk order).
        rank = (cs[:, None, :] > own[:, :, None]).sum(axis=2) + (
            (cs[:, None, :] == own[:, :, None]) & (np.arange(n_c)[None, None, :] < lab[:, :, None])
        ).sum(axis=2)
        gap = (best[:, None] - own).astype(np.float64)
        free[a:z] = valid[a:z] & (rank < p)
        needed[a:z] = np.where(valid[a:z] & (rank >= p) & (rank < cap), gap, np.inf)
        top = np.partition(cs, n_c - cap, axis=1)[:, n_c - cap :]
        top_gaps.append(best[:, None] - top)
    gaps = np.concatenate(top_gaps)
    n_valid = valid.sum(axis=1)
    keep = n_valid > 0
    weight = np.where(valid & keep[:, None], 1.0 / np.maximum(n_valid, 1)[:, None], 0.0)
    weight /= max(int(keep.sum()), 1)
    base = float(weight[free].sum())
    finite = np.isfinite(needed) & (weight > 0)
    order = np.argsort(needed[finite], kind="stable")
    m_sorted = needed[finite][order]
    curve = base + np.cumsum(weight[finite][order])
    if base >= target_recall or m_sorted.size == 0:
        margin, recall = 0.0, base
    else:
        hit = np.flatnonzero(curve >= target_recall - 1e-12)
        j = int(hit[0]) if hit.size else m_sorted.size - 1
        j = int(np.searchsorted(m_sorted, m_sorted[j], side="right")) - 1  # include ties
        margin, recall = float(m_sorted[j]), float(curve[j])
    margin_eps = margin + 1e-6 if margin > 0 else 0.0  # float noise between score paths
    probes = np.clip((gaps <= margin_eps).sum(axis=1), p, cap)
    return ProbeCalibration(
        margin=margin_eps,
        recall=round(recall, 12),  # sums of 1/k weights: drop float noise
        mean_probes=float(probes.mean()),
        recall_n_probe=round(base, 12),
        target_recall=float(target_recall),
        reached=bool(recall >= target_recall - 1e-12),
        sample=int(n_q),
        max_probe=int(cap),
    )
