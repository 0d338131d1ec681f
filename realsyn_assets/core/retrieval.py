"""Image -> sentence retrieval (paper §3.2): exact, hierarchical (cluster-first) and in-document.

The paper retrieves 3 realistic sentences per image from 0.84B sentences. Brute force would cost
>10,000 GPU-hours, so it first picks the nearest sentence-cluster centroid and then searches only
that cluster's members; images sharing a centroid are processed together. `retrieve_hierarchical`
does exactly that; `retrieve_exact` is the brute-force reference used to measure its recall;
`retrieve_in_document` is the MMC4-style baseline where only the image's own document competes.

Conventions shared by every function here:
- vectors are float32, rows L2-normalised (and finite), similarity = inner product (cosine);
- results are `(n_images, k)`: indices int64 into the sentence array, padded with -1, scores
  float32 descending per row, -inf where the index is -1;
- ties are broken by the lower sentence index, so results are deterministic;
- one image never receives the same sentence twice (each sentence is scored at most once per
  image: sentence blocks, clusters and documents are disjoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


# --------------------------------------------------------------------------- helpers


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-d, got shape {a.shape}")
    return a


def _check_k(k: int) -> int:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _empty_result(n: int, k: int) -> RetrievalResult:
    return RetrievalResult(
        indices=np.full((n, k), -1, dtype=np.int64),
        scores=np.full((n, k), -np.inf, dtype=np.float32),
    )


# Below this many scores per call numpy is faster than handing the block to torch.topk.
_TORCH_TOPK_MIN = 1 << 16


def _finish(
    rows: np.ndarray, vals: np.ndarray, cid: np.ndarray, b: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Order candidate (row, score, id) triples by row, -score, id and keep k per row."""
    out_i = np.full((b, k), -1, dtype=np.int64)
    out_s = np.full((b, k), -np.inf, dtype=np.float32)
    # Padding (-1) must lose ties against real ids: give it the largest id key.
    key_id = np.where(cid < 0, np.iinfo(np.int64).max, cid)
    order = np.lexsort((key_id, -vals, rows))
    rows, vals, cid = rows[order], vals[order], cid[order]
    starts = np.searchsorted(rows, np.arange(b))
    rank = np.arange(rows.size) - starts[rows]
    keep = rank < k
    out_i[rows[keep], rank[keep]] = cid[keep]
    out_s[rows[keep], rank[keep]] = vals[keep]
    out_s[out_i < 0] = -np.inf
    return out_i, out_s


def _threshold_candidates(
    scores: np.ndarray, ids2: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every entry >= the row's k-th largest value (ties included), as (row, score, id)."""
    m = scores.shape[1]
    kth = np.partition(scores, m - k, axis=1)[:, m - k]
    rows, cols = np.nonzero(scores >= kth[:, None])
    return rows, scores[rows, cols], ids2[rows, cols]


def _topk_rows(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of `scores` returning `ids` (1-d per column, or 2-d per cell).

    Order: score descending, then id ascending (deterministic tie-break). Padding: -1 / -inf.
    Entries whose id is -1 are padding from an earlier merge and sort last (their score is
    -inf). A plain argpartition / topk may pick an arbitrary member of a tie at the k-th place,
    so: large blocks go through `torch.topk(k + 1)` (~10x faster than `np.partition` on CPU);
    a row whose (k+1)-th value is strictly below its k-th has an unambiguous top-k set, and
    only rows with a tie at the boundary take the exact path (keep everything >= the k-th
    value, lexsort the survivors).
    """
    b, m = scores.shape
    if b == 0 or m == 0:
        return (
            np.full((b, k), -1, dtype=np.int64),
            np.full((b, k), -np.inf, dtype=np.float32),
        )
    ids2 = np.broadcast_to(ids, (b, m)) if ids.ndim == 1 else ids
    if k == 1 and ids.ndim == 1 and np.all(ids[1:] > ids[:-1]):
        # argmax returns the first maximum = lowest id when ids are ascending.
        col = np.argmax(scores, axis=1)
        return ids[col][:, None].astype(np.int64), scores[np.arange(b), col][:, None]
    if m <= k:
        rows, cols = np.divmod(np.arange(b * m), m)
        return _finish(rows, scores[rows, cols], ids2[rows, cols], b, k)
    if b * m < _TORCH_TOPK_MIN:
        return _finish(*_threshold_candidates(scores, ids2, k), b, k)

    import torch  # lazy: keeps `import realsyn_assets.core.retrieval` light

    t_vals, t_cols = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k + 1, dim=1)
    vals, cols = t_vals.numpy(), t_cols.numpy()
    clean = vals[:, k] < vals[:, k - 1]
    c_rows = np.flatnonzero(clean)
    rows = np.repeat(c_rows, k)
    sel_cols = cols[c_rows, :k].ravel()
    parts = [(rows, vals[c_rows, :k].ravel(), ids2[rows, sel_cols])]
    tied = np.flatnonzero(~clean)
    if tied.size:
        t_rows, t_v, t_id = _threshold_candidates(scores[tied], ids2[tied], k)
        parts.append((tied[t_rows], t_v, t_id))
    return _finish(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False),
        np.concatenate([p[2] for p in parts]).astype(np.int64, copy=False),
        b,
        k,
    )


def _merge(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([a[0], b[0]], axis=1)
    sc = np.concatenate([a[1], b[1]], axis=1)
    return _topk_rows(sc, ids, k)


def _search(
    q: np.ndarray,
    s: np.ndarray,
    k: int,
    members: np.ndarray | None = None,
    block_images: int = 1024,
    block_sentences: int = 262_144,
) -> tuple[np.ndarray, np.ndarray]:
    """Blocked brute-force top-k of every row of `q` against `s[members]` (all of `s` if None).

    Sentence blocks are the outer loop, so each block of the candidate matrix is gathered once
    and shared by all queries. Peak extra memory is the similarity block,
    `4 * block_images * block_sentences` bytes (1 GiB at the defaults), plus
    `4 * block_sentences * d` for a gathered block; rows with a tie at the k-th place need a
    partitioned copy and a mask of their own rows on top.
    """
    nq = q.shape[0]
    m = s.shape[0] if members is None else members.shape[0]
    best_i = np.full((nq, k), -1, dtype=np.int64)
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    if nq == 0 or m == 0:
        return best_i, best_s
    for j0 in range(0, m, block_sentences):
        j1 = min(j0 + block_sentences, m)
        if members is None:
            sb = s[j0:j1]
            ids = np.arange(j0, j1, dtype=np.int64)
        else:
            ids = members[j0:j1]
            sb = s[ids]
        first = j0 == 0
        for i0 in range(0, nq, block_images):
            i1 = min(i0 + block_images, nq)
            sim = q[i0:i1] @ sb.T
            top = _topk_rows(sim, ids, k)
            if first:
                best_i[i0:i1], best_s[i0:i1] = top
            else:
                best_i[i0:i1], best_s[i0:i1] = _merge((best_i[i0:i1], best_s[i0:i1]), top, k)
    return best_i, best_s


def _search_grouped(
    q: np.ndarray,
    s: np.ndarray,
    index: ClusterIndex,
    probes: np.ndarray,
    k: int,
    block_images: int,
    block_sentences: int,
) -> RetrievalResult:
    """Top-k per image over the union of the groups listed in its row of `probes` (-1 = none).

    (image, group) pairs are sorted by group so each group's member matrix is gathered once
    for all images that probe it; per-pair top-k lists are then merged per image. Groups are
    disjoint, so no sentence can appear twice for one image.
    """
    n, width = probes.shape
    result = _empty_result(n, k)
    if n == 0 or width == 0:
        return result
    sizes = index.sizes
    img, slot = np.nonzero(probes >= 0)
    grp = probes[img, slot]
    nonempty = sizes[grp] > 0
    img, slot, grp = img[nonempty], slot[nonempty], grp[nonempty]
    if img.size == 0:
        return result
    order = np.argsort(grp, kind="stable")
    img, slot, grp = img[order], slot[order], grp[order]
    cand_i = np.full((n, width, k), -1, dtype=np.int64)
    cand_s = np.full((n, width, k), -np.inf, dtype=np.float32)
    bounds = np.flatnonzero(np.diff(grp)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [grp.size]])
    for a, z in zip(starts.tolist(), stops.tolist(), strict=True):
        g = int(grp[a])
        members = index.members(g)
        rows = img[a:z]
        ti, ts = _search(q[rows], s, k, members, block_images, block_sentences)
        cand_i[rows, slot[a:z]] = ti
        cand_s[rows, slot[a:z]] = ts
    if width == 1:
        result.indices[:] = cand_i[:, 0]
        result.scores[:] = cand_s[:, 0]
        return result
    mi, ms = _topk_rows(cand_s.reshape(n, width * k), cand_i.reshape(n, width * k), k)
    return RetrievalResult(indices=mi, scores=ms)


# --------------------------------------------------------------------------- public API


def retrieve_exact(
    image_vecs: np.ndarray,
    sentence_vecs: np.ndarray,
    k: int = 3,
    block_images: int = 1024,
    block_sentences: int = 262_144,
) -> RetrievalResult:
    """Brute-force top-k sentences per image, in blocks of bounded memory.

    The reference for recall; O(n_images * n_sentences * d). A running top-k per image is
    merged across sentence blocks, so memory does not grow with the number of sentences.
    """
    k = _check_k(k)
    q = _as_matrix(image_vecs, "image_vecs")
    s = _as_matrix(sentence_vecs, "sentence_vecs")
    if q.shape[0] and s.shape[0] and q.shape[1] != s.shape[1]:
        raise ValueError(f"dimension mismatch: images {q.shape[1]}, sentences {s.shape[1]}")
    if block_images < 1 or block_sentences < 1:
        raise ValueError("block sizes must be >= 1")
    idx, sc = _search(q, s, k, None, block_images, block_sentences)
    return RetrievalResult(indices=idx, scores=sc)


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


def _probe_lists(
    q: np.ndarray, centroids: np.ndarray, sizes: np.ndarray, k: int, n_probe: int
) -> np.ndarray:
    """Clusters to search per image, nearest centroid first, padded with -1.

    Every image probes its `n_probe` nearest clusters. If those hold fewer than `k` sentences
    in total (tiny or empty clusters), it keeps probing the next-nearest clusters until at
    least `k` sentences are reachable or every cluster is probed. The deeper centroid ranking
    is computed only for the images that need it, doubling the depth each round.
    """
    n_c = centroids.shape[0]
    n = q.shape[0]
    if n_c == 0:
        return np.full((n, 0), -1, dtype=np.int64)
    p = min(n_probe, n_c)
    ranked = _search(q, centroids, p)[0]
    short = np.flatnonzero(sizes[ranked].sum(axis=1) < k)
    deeper: list[tuple[np.ndarray, np.ndarray]] = []
    depth = p
    while short.size and depth < n_c:
        depth = min(n_c, max(2 * depth, depth + k))
        r2 = _search(q[short], centroids, depth)[0]
        cum = np.cumsum(sizes[r2], axis=1)
        enough = cum[:, -1] >= k
        needed = np.where(enough, np.argmax(cum >= k, axis=1) + 1, depth)
        needed = np.maximum(needed, p)
        done = enough | (depth >= n_c)
        r2 = np.where(np.arange(depth)[None, :] < needed[:, None], r2, -1)
        deeper.append((short[done], r2[done, : int(needed[done].max(initial=p))]))
        short = short[~done]
    width = max([p] + [r.shape[1] for _, r in deeper])
    probes = np.full((n, width), -1, dtype=np.int64)
    probes[:, :p] = ranked
    for rows, r in deeper:
        probes[rows, :] = -1
        probes[rows, : r.shape[1]] = r
    return probes


def retrieve_hierarchical(
    image_vecs: np.ndarray,
    sentence_vecs: np.ndarray,
    centroids: np.ndarray,
    index: ClusterIndex,
    k: int = 3,
    n_probe: int = 1,
    *,
    block_images: int = 1024,
    block_sentences: int = 262_144,
) -> RetrievalResult:
    """Paper §3.2: nearest sentence-cluster centroid(s), then exact top-k inside them.

    `n_probe=1` is the paper's setting. Fallthrough: when the probed clusters hold fewer than
    `k` sentences together, the next-nearest clusters are probed as well until `k` sentences
    are reachable (rows stay -1 padded only if the whole corpus has fewer than `k`). Images
    are grouped by probed cluster so each cluster's member matrix is gathered once and scored
    with one matrix product for all its images; cost is about
    `n_images * (n_clusters + n_probe * mean_cluster_size) * d` instead of
    `n_images * n_sentences * d`.

    CPU note: the per-cluster products are small (a few images x ~420 sentences), where a
    multithreaded BLAS spends more time waking threads than computing; on a busy machine we
    measured 10-50x slowdowns. Run this step with `OPENBLAS_NUM_THREADS=1` (or MKL/OMP
    equivalents) and parallelise across shards/processes instead.
    """
    k = _check_k(k)
    if n_probe < 1:
        raise ValueError(f"n_probe must be >= 1, got {n_probe}")
    q = _as_matrix(image_vecs, "image_vecs")
    s = _as_matrix(sentence_vecs, "sentence_vecs")
    c = _as_matrix(centroids, "centroids")
    if c.shape[0] != index.n_clusters:
        raise ValueError(f"{c.shape[0]} centroids but index has {index.n_clusters} clusters")
    if index.order.shape[0] != s.shape[0]:
        raise ValueError(f"index covers {index.order.shape[0]} sentences, got {s.shape[0]}")
    if q.shape[0] == 0 or s.shape[0] == 0 or c.shape[0] == 0:
        return _empty_result(q.shape[0], k)
    if not (q.shape[1] == s.shape[1] == c.shape[1]):
        raise ValueError("images, sentences and centroids must share one dimension")
    probes = _probe_lists(q, c, index.sizes, k, int(n_probe))
    return _search_grouped(q, s, index, probes, k, block_images, block_sentences)


def retrieve_in_document(
    image_doc_ids: Sequence[str],
    image_vecs: np.ndarray,
    sentence_doc_ids: Sequence[str],
    sentence_vecs: np.ndarray,
    k: int = 3,
) -> RetrievalResult:
    """MMC4-style baseline: each image ranks only the sentences of its own document.

    Documents with fewer than `k` sentences leave the rest of the row -1 padded; images whose
    document has no sentences get an all -1 row. Images of one document share one gathered
    sentence matrix.
    """
    k = _check_k(k)
    q = _as_matrix(image_vecs, "image_vecs")
    s = _as_matrix(sentence_vecs, "sentence_vecs")
    if len(image_doc_ids) != q.shape[0] or len(sentence_doc_ids) != s.shape[0]:
        raise ValueError("doc id lists must match the number of vectors")
    if q.shape[0] == 0 or s.shape[0] == 0:
        return _empty_result(q.shape[0], k)
    if q.shape[1] != s.shape[1]:
        raise ValueError(f"dimension mismatch: images {q.shape[1]}, sentences {s.shape[1]}")
    sdocs = np.asarray([str(d) for d in sentence_doc_ids])
    idocs = np.asarray([str(d) for d in image_doc_ids])
    uniq, s_codes = np.unique(sdocs, return_inverse=True)
    pos = np.searchsorted(uniq, idocs)
    pos_c = np.minimum(pos, uniq.size - 1)
    i_codes = np.where(uniq[pos_c] == idocs, pos_c, -1).astype(np.int64)
    index = build_cluster_index(s_codes.ravel(), int(uniq.size))
    return _search_grouped(q, s, index, i_codes[:, None], k, 1024, 262_144)


def recall_at_k(approx: RetrievalResult, exact: RetrievalResult) -> float:
    """Mean over images of `|approx ∩ exact| / |valid exact|` (padding ignored).

    Images for which the exact result has no valid sentence are skipped; 1.0 if none remain.
    """
    a, e = approx.indices, exact.indices
    if a.shape[0] != e.shape[0]:
        raise ValueError("results cover different numbers of images")
    valid_e = e >= 0
    n_valid = valid_e.sum(axis=1)
    keep = n_valid > 0
    if not keep.any():
        return 1.0
    hit = (a[:, :, None] == e[:, None, :]) & (a[:, :, None] >= 0) & valid_e[:, None, :]
    hits = hit.any(axis=1).sum(axis=1)
    return float(np.mean(hits[keep] / n_valid[keep]))
