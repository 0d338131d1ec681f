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

Conventions shared by every function here:
- vectors are float32, rows L2-normalised (and finite), similarity = inner product (cosine);
- results are `(n_images, k)`: indices int64 into the sentence array, padded with -1, scores
  float32 descending per row, -inf where the index is -1;
- ties are broken by the lower sentence index, so results are deterministic;
- one image never receives the same sentence twice (each sentence is scored at most once per
  image: sentence blocks, clusters and documents are disjoint).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
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

    def labels(self) -> np.ndarray:
        """Cluster of every sentence, `(n_sentences,)` int64 (the inverse of the CSR layout)."""
        out = np.empty(self.order.shape[0], dtype=np.int64)
        out[self.order] = np.repeat(np.arange(self.n_clusters, dtype=np.int64), self.sizes)
        return out


# --------------------------------------------------------------------------- threads


def blas_thread_counts() -> dict[str, int]:
    """Thread counts of the BLAS / OpenMP pools loaded in this process (threadpoolctl's view:
    numpy's OpenBLAS, the OpenMP runtimes of faiss and torch) and of torch if imported."""
    from threadpoolctl import threadpool_info

    out = {
        f"{info['internal_api']}:{os.path.basename(info['filepath'])}": int(info["num_threads"])
        for info in threadpool_info()
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = int(torch.get_num_threads())
    return out


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` BLAS / OpenMP threads (numpy's OpenBLAS, torch, faiss); restore.

    Why: cluster-first retrieval does thousands of tiny matrix products (tens of images x a
    few hundred sentences). A multithreaded BLAS spends longer waking and synchronising
    threads than computing them, and on a shared machine its spin-waiting threads fight
    other processes for cores: we measured the same retrieval 15x slower with 2 OpenBLAS
    threads than with 1 on a busy 2-core machine. Parallelise across shards/processes
    instead. `None` or 0 leaves everything unchanged. The settings are process-wide, so do
    not run this concurrently with other threads that rely on multithreaded BLAS. torch's
    intra-op pool is adjusted only if torch is already imported (importing it costs seconds).
    """
    if not n:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    old_torch = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(int(n))
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        if torch is not None and old_torch is not None:
            torch.set_num_threads(old_torch)


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


# Small-k top-k by repeated argmax (see `_topk_by_argmax`) up to this many scores per call;
# beyond it torch.topk's single pass over memory wins.
_ARGMAX_MAX_K = 8
_ARGMAX_MAX_CELLS = 1 << 22


def _topk_by_argmax(
    scores: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-k by k rounds of row-wise argmax, masking each winner with -inf, then restoring.

    Exact (score desc, id asc) order with no sorting at all: argmax returns the first maximum
    and `ids` ascend along the columns. On the small per-cluster blocks of hierarchical
    retrieval (tens of images x a few hundred sentences) this is ~6x faster than
    partition + lexsort. Returns None (caller falls back) if a row runs out of finite scores,
    because masked entries would then tie with genuine -inf scores.
    """
    work = scores if scores.flags.writeable else scores.copy()
    b = work.shape[0]
    r = np.arange(b)
    cols = np.empty((b, k), dtype=np.int64)
    vals = np.empty((b, k), dtype=np.float32)
    done = 0
    try:
        for j in range(k):
            c = np.argmax(work, axis=1)
            cols[:, j] = c
            vals[:, j] = work[r, c]
            work[r, c] = -np.inf
            done = j + 1
    finally:
        if work is scores:  # leave the caller's array as it was
            for j in range(done - 1, -1, -1):
                work[r, cols[:, j]] = vals[:, j]
    if np.isneginf(vals).any() or np.isnan(vals).any():
        return None
    return ids[cols].astype(np.int64, copy=False), vals


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
    ascending = ids.ndim == 1 and bool(np.all(ids[1:] > ids[:-1]))
    if k == 1 and ascending:
        # argmax returns the first maximum = lowest id when ids are ascending.
        col = np.argmax(scores, axis=1)
        return ids[col][:, None].astype(np.int64), scores[np.arange(b), col][:, None]
    if ascending and m > k and k <= _ARGMAX_MAX_K and b * m <= _ARGMAX_MAX_CELLS:
        top = _topk_by_argmax(scores, ids, k)
        if top is not None:
            return top
    if m <= k:
        rows, cols = np.divmod(np.arange(b * m), m)
        return _finish(rows, scores[rows, cols], ids2[rows, cols], b, k)
    if b * m < _TORCH_TOPK_MIN:
        return _finish(*_threshold_candidates(scores, ids2, k), b, k)

    import torch  # lazy: keeps `import realsyn_assets.core.retrieval.search` light

    t_vals, t_cols = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k + 1, dim=1)
    vals, cols = t_vals.numpy(), t_cols.numpy()
    out_i = np.empty((b, k), dtype=np.int64)
    out_s = np.empty((b, k), dtype=np.float32)
    # Strictly decreasing over the k+1 best: set and order are both fixed by the scores alone
    # (the common case), so no sorting is needed.
    strict = np.all(vals[:, 1:] < vals[:, :-1], axis=1)
    s_rows = np.flatnonzero(strict)
    s_cols = cols[s_rows, :k]
    out_i[s_rows] = ids[s_cols] if ids.ndim == 1 else ids[s_rows[:, None], s_cols]
    out_s[s_rows] = vals[s_rows, :k]
    other = np.flatnonzero(~strict)
    if other.size:
        # Unambiguous set but ties inside it: sort just those k; tie at the k-th place: keep
        # everything >= the k-th value. Both go through the exact lexsort.
        clean = vals[other, k] < vals[other, k - 1]
        c_rows = np.flatnonzero(clean)
        rows = np.repeat(c_rows, k)
        sel = cols[other[c_rows], :k].ravel()
        sub_ids = ids2[other]
        parts = [(rows, vals[other[c_rows], :k].ravel(), sub_ids[rows, sel])]
        tied = np.flatnonzero(~clean)
        if tied.size:
            t_rows, t_v, t_id = _threshold_candidates(scores[other[tied]], sub_ids[tied], k)
            parts.append((tied[t_rows], t_v, t_id))
        oi, os_ = _finish(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False),
            np.concatenate([p[2] for p in parts]).astype(np.int64, copy=False),
            other.size,
            k,
        )
        out_i[other], out_s[other] = oi, os_
    out_s[out_i < 0] = -np.inf
    return out_i, out_s


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
                pair_i[a:z], pair_s[a:z] = _search(
                    q[img[a:z]], s, k, members, block_images, block_sentences
                )
                continue
            # Members are one contiguous slice: no gather. Local positions ascend with the
            # (ascending) member ids, so mapping them back keeps the tie-break.
            local, pair_s[a:z] = _search(
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
    mi, ms = _finish(rows, pair_s[valid], pair_i[valid], n, k)
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


def sort_by_cluster(sentence_vecs: np.ndarray, index: ClusterIndex) -> np.ndarray:
    """Sentence vectors in cluster order (row i = sentence `index.order[i]`), for
    `retrieve_hierarchical(..., sentences_sorted=True)`: a one-off copy at index-build time
    that makes every cluster a contiguous slice."""
    s = _as_matrix(sentence_vecs, "sentence_vecs")
    if s.shape[0] != index.order.shape[0]:
        raise ValueError(f"index covers {index.order.shape[0]} sentences, got {s.shape[0]}")
    return np.ascontiguousarray(s[index.order])


def _margin_probes(
    q: np.ndarray, centroids: np.ndarray, n_probe: int, margin: float, max_probe: int
) -> np.ndarray:
    """Per image: clusters scoring >= best - margin (at least `n_probe`, at most `max_probe`).

    Rows are sorted by score descending then cluster id (the order `_search` would give),
    padded with -1. Works on blocks of images so the score matrix stays ~64 MB; only rows
    whose margin set is too small or too large need a real top-k.
    """
    n, n_c = q.shape[0], centroids.shape[0]
    ids = np.arange(n_c, dtype=np.int64)
    blocks = []
    step = max(1, (1 << 24) // max(n_c, 1))
    for a in range(0, n, step):
        cs = q[a : a + step] @ centroids.T
        b = cs.shape[0]
        best = cs.max(axis=1)
        mask = cs >= (best - np.float32(margin))[:, None]
        count = mask.sum(axis=1)
        ok = (count >= n_probe) & (count <= max_probe)
        out = np.full((b, max_probe), -1, dtype=np.int64)
        flat = np.flatnonzero(mask[ok])
        if flat.size:
            r_ok = np.flatnonzero(ok)
            rr, cc = np.divmod(flat, n_c)
            sc = cs[r_ok[rr], cc]
            order = np.lexsort((cc, -sc, rr))
            rr, cc = rr[order], cc[order]
            rank = np.arange(rr.size) - np.searchsorted(rr, rr)
            out[r_ok[rr], rank] = cc
        for sel, depth in ((count < n_probe, n_probe), (count > max_probe, max_probe)):
            rows = np.flatnonzero(sel)
            if rows.size:
                out[rows, :depth] = _topk_rows(cs[rows], ids, depth)[0]
        blocks.append(out)
    probes = np.concatenate(blocks) if blocks else np.full((0, max_probe), -1, np.int64)
    width = int(max(n_probe, (probes >= 0).sum(axis=1).max(initial=n_probe)))
    return probes[:, :width]


def _probe_lists(
    q: np.ndarray,
    centroids: np.ndarray,
    sizes: np.ndarray,
    k: int,
    n_probe: int,
    margin: float | None = None,
    max_probe: int | None = None,
) -> np.ndarray:
    """Clusters to search per image, nearest centroid first, padded with -1.

    Every image probes its `n_probe` nearest clusters. With `margin`, it also probes every
    further cluster whose centroid score is within `margin` of its best one, at most
    `max_probe` in all. If the probed clusters hold fewer than `k` sentences in total (tiny
    or empty clusters), it keeps probing the next-nearest clusters until at least `k`
    sentences are reachable or every cluster is probed. The deeper centroid ranking is
    computed only for the images that need it, doubling the depth each round.
    """
    n_c = centroids.shape[0]
    n = q.shape[0]
    if n_c == 0:
        return np.full((n, 0), -1, dtype=np.int64)
    p = min(n_probe, n_c)
    width = p if margin is None else max(p, min(int(max_probe or n_c), n_c))
    if width > p:
        ranked = _margin_probes(q, centroids, p, float(margin), width)
        width = ranked.shape[1]
    else:
        ranked = _search(q, centroids, width)[0]
    reach = np.where(ranked >= 0, sizes[np.maximum(ranked, 0)], 0).sum(axis=1)
    short = np.flatnonzero(reach < k)
    deeper: list[tuple[np.ndarray, np.ndarray]] = []
    depth = width
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
    width = max([width] + [r.shape[1] for _, r in deeper])
    probes = np.full((n, width), -1, dtype=np.int64)
    probes[:, : ranked.shape[1]] = ranked
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
    k = _check_k(k)
    if n_probe < 1:
        raise ValueError(f"n_probe must be >= 1, got {n_probe}")
    if probe_margin is not None and not (probe_margin >= 0 and np.isfinite(probe_margin)):
        raise ValueError(f"probe_margin must be a finite number >= 0, got {probe_margin}")
    if max_probe < 1:
        raise ValueError(f"max_probe must be >= 1, got {max_probe}")
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
    probes = _probe_lists(q, c, index.sizes, k, int(n_probe), probe_margin, max_probe)
    with blas_threads(threads):
        return _search_grouped(
            q, s, index, probes, k, block_images, block_sentences, workers, sentences_sorted
        )


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
    k = _check_k(k)
    if not 0.0 <= target_recall <= 1.0:
        raise ValueError(f"target_recall must lie in [0, 1], got {target_recall}")
    if n_probe < 1 or max_probe < 1:
        raise ValueError("n_probe and max_probe must be >= 1")
    q = _as_matrix(sample_image_vecs, "sample_image_vecs")
    s = _as_matrix(sentence_vecs, "sentence_vecs")
    c = _as_matrix(centroids, "centroids")
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
        # Rank = clusters scoring strictly higher, or equal with a lower id (= _search order).
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
