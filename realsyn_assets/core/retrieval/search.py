"""Image -> sentence retrieval (paper §3.2): exact, hierarchical (cluster-first) and in-document.

The paper retrieves 3 realistic sentences per image from 0.84B sentences. Brute force would cost
>10,000 GPU-hours, so it first picks the nearest sentence-cluster centroid and then searches only
that cluster's members; images sharing a centroid are processed together. `retrieve_hierarchical`
does exactly that; `retrieve_exact` is the brute-force reference used to measure its recall;
`retrieve_in_document` is the MMC4-style baseline where only the image's own document competes.

Beyond the paper: with `probe_margin` an image also searches every other cluster whose centroid
scores within the margin of its best one (up to `max_probe`). Images deep inside one cluster
still probe one; images near a cluster border probe the neighbours that hold their true nearest
sentences. `calibrate_probe_margin` picks the margin for a target recall from a sample of
images, because a fixed margin means different things for different encoders and corpora.

Modules of this package: `search` (this one: the three retrievals), `topk` (the deterministic
top-k kernels), `index` (result and cluster-index types), `probing` (which clusters an image
searches), `calibration` (the probe margin), `threads` (BLAS thread control), `kmeans` and
`cluster_state` (fitting and keeping the sentence clustering), `clustering` and `retrieved` (the
`sentence_clusters` and `retrieved_texts` steps on files).

Conventions shared by every function of the package:
- vectors are float32, rows L2-normalised (and finite), similarity = inner product (cosine);
- results are `(n_images, k)`: indices int64 into the sentence array, padded with -1, scores
  float32 descending per row, -inf where the index is -1;
- ties are broken by the lower sentence index, so results are deterministic;
- one image never receives the same sentence twice (each sentence is scored at most once per
  image: sentence blocks, clusters and documents are disjoint).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from realsyn_assets.core.retrieval.index import ClusterIndex, RetrievalResult, build_cluster_index
from realsyn_assets.core.retrieval.probing import probe_lists
from realsyn_assets.core.retrieval.threads import blas_threads
from realsyn_assets.core.retrieval.topk import (
    as_matrix,
    blocked_topk,
    check_k,
    topk_from_candidates,
)


def _empty_result(n: int, k: int) -> RetrievalResult:
    return RetrievalResult(
        indices=np.full((n, k), -1, dtype=np.int64),
        scores=np.full((n, k), -np.inf, dtype=np.float32),
    )


def _search_groups(
    q: np.ndarray,
    s: np.ndarray,
    index: ClusterIndex,
    probes: np.ndarray,
    k: int,
    block_images: int,
    block_sentences: int,
    workers: int = 1,
    presorted: bool = False,
) -> RetrievalResult:
    """Top-k per image over the union of the groups listed in its row of `probes` (-1 = none).

    (image, group) pairs are sorted by group so each group's member matrix is gathered once
    for all images that probe it; per-pair top-k lists are then merged per image. Groups are
    disjoint, so no sentence can appear twice for one image. `presorted`: row i of `s` is
    sentence `index.order[i]`, so a group's members are the slice `s[offsets[g]:offsets[g+1]]`.
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
    img, grp = img[order], grp[order]
    pair_i = np.empty((img.size, k), dtype=np.int64)
    pair_s = np.empty((img.size, k), dtype=np.float32)
    bounds = np.flatnonzero(np.diff(grp)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    stops = np.concatenate([bounds, [grp.size]]).tolist()

    offsets = index.offsets

    def run(lo: int, hi: int) -> None:  # groups lo..hi-1; writes disjoint slices only
        for a, z in zip(starts[lo:hi], stops[lo:hi], strict=True):
            g = int(grp[a])
            members = index.members(g)
            if not presorted:
                pair_i[a:z], pair_s[a:z] = blocked_topk(
                    q[img[a:z]], s, k, members, block_images, block_sentences
                )
                continue
            # Members are one contiguous slice: no gather. Local positions ascend with the
            # (ascending) member ids, so mapping them back keeps the tie-break.
            local, pair_s[a:z] = blocked_topk(
                q[img[a:z]], s[offsets[g] : offsets[g + 1]], k, None, block_images, block_sentences
            )
            pair_i[a:z] = np.where(local >= 0, members[np.maximum(local, 0)], -1)

    n_groups = len(starts)
    workers = max(1, min(int(workers), n_groups))
    if workers == 1:
        run(0, n_groups)
    else:
        # Split groups into contiguous chunks of about equal work (pairs x cluster size);
        # numpy releases the GIL inside the matrix products and reductions.
        from concurrent.futures import ThreadPoolExecutor

        work = np.asarray(stops) - np.asarray(starts)
        work = work * sizes[grp[np.asarray(starts)]]
        cum = np.cumsum(work)
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, workers) / workers)
        edges = [0, *np.clip(cuts + 1, 0, n_groups).tolist(), n_groups]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(run, edges[i], edges[i + 1])
                for i in range(workers)
                if edges[i] < edges[i + 1]
            ]
            for f in futures:
                f.result()
    if width == 1:
        result.indices[img] = pair_i
        result.scores[img] = pair_s
        return result
    # Merge the per-pair lists of each image: only real candidates, one lexsort.
    valid = pair_i >= 0
    rows = np.broadcast_to(img[:, None], valid.shape)[valid]
    mi, ms = topk_from_candidates(rows, pair_s[valid], pair_i[valid], n, k)
    return RetrievalResult(indices=mi, scores=ms)


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
    k = check_k(k)
    q = as_matrix(image_vecs, "image_vecs")
    s = as_matrix(sentence_vecs, "sentence_vecs")
    if q.shape[0] and s.shape[0] and q.shape[1] != s.shape[1]:
        raise ValueError(f"dimension mismatch: images {q.shape[1]}, sentences {s.shape[1]}")
    if block_images < 1 or block_sentences < 1:
        raise ValueError("block sizes must be >= 1")
    idx, sc = blocked_topk(q, s, k, None, block_images, block_sentences)
    return RetrievalResult(indices=idx, scores=sc)


def retrieve_hierarchical(
    image_vecs: np.ndarray,
    sentence_vecs: np.ndarray,
    centroids: np.ndarray,
    index: ClusterIndex,
    k: int = 3,
    n_probe: int = 1,
    *,
    probe_margin: float | None = None,
    max_probe: int = 32,
    threads: int | None = 1,
    workers: int = 1,
    sentences_sorted: bool = False,
    block_images: int = 1024,
    block_sentences: int = 262_144,
) -> RetrievalResult:
    """Paper §3.2: nearest sentence-cluster centroid(s), then exact top-k inside them.

    `n_probe=1` (and no `probe_margin`) is the paper's setting. `probe_margin` switches on
    adaptive probing: each image additionally probes the clusters whose centroid score is
    within `probe_margin` of its best centroid score, at most `max_probe` clusters in all
    (see `calibrate_probe_margin`). Fallthrough: when the probed clusters hold fewer than
    `k` sentences together, the next-nearest clusters are probed as well until `k`
    sentences are reachable (rows stay -1 padded only if the whole corpus has fewer than
    `k`). Images are grouped by probed cluster so each cluster's member matrix is gathered
    once and scored with one matrix product for all its images; cost is about
    `n_images * (n_clusters + probes * mean_cluster_size) * d` instead of
    `n_images * n_sentences * d`.

    `threads` (default 1) limits BLAS threads for the per-cluster stage (see `blas_threads`:
    the products are too small for threads to pay off and multithreaded BLAS collapses on a
    busy machine); the one large centroid-scoring product keeps the library default. `None`
    leaves all thread settings alone. Parallelise across shards/processes instead.
    `workers` > 1 runs the per-cluster stage on that many threads (identical results; it only
    pays on otherwise idle cores).

    `sentences_sorted=True` says `sentence_vecs` is stored in cluster order
    (`sort_by_cluster`: row i is sentence `index.order[i]`), so each cluster is a contiguous
    slice instead of a gather; with a memory-mapped file only the probed clusters are read.
    Results still use the original sentence indices.
    """
    k = check_k(k)
    if n_probe < 1:
        raise ValueError(f"n_probe must be >= 1, got {n_probe}")
    if probe_margin is not None and not (probe_margin >= 0 and np.isfinite(probe_margin)):
        raise ValueError(f"probe_margin must be a finite number >= 0, got {probe_margin}")
    if max_probe < 1:
        raise ValueError(f"max_probe must be >= 1, got {max_probe}")
    q = as_matrix(image_vecs, "image_vecs")
    s = as_matrix(sentence_vecs, "sentence_vecs")
    c = as_matrix(centroids, "centroids")
    if c.shape[0] != index.n_clusters:
        raise ValueError(f"{c.shape[0]} centroids but index has {index.n_clusters} clusters")
    if index.order.shape[0] != s.shape[0]:
        raise ValueError(f"index covers {index.order.shape[0]} sentences, got {s.shape[0]}")
    if q.shape[0] == 0 or s.shape[0] == 0 or c.shape[0] == 0:
        return _empty_result(q.shape[0], k)
    if not (q.shape[1] == s.shape[1] == c.shape[1]):
        raise ValueError("images, sentences and centroids must share one dimension")
    probes = probe_lists(q, c, index.sizes, k, int(n_probe), probe_margin, max_probe)
    with blas_threads(threads):
        return _search_groups(
            q, s, index, probes, k, block_images, block_sentences, workers, sentences_sorted
        )


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
    k = check_k(k)
    q = as_matrix(image_vecs, "image_vecs")
    s = as_matrix(sentence_vecs, "sentence_vecs")
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
    return _search_groups(q, s, index, i_codes[:, None], k, 1024, 262_144)
