"""Union-find and near-duplicate pair search for perceptual and semantic deduplication (spec §2).

The paper (following CLIP-CID) links items whose perceptual hashes or embeddings are close and
keeps one item per connected component (Union-Find). This module provides the three pieces:

* pair search: ``hamming_pairs`` (64-bit pHash, popcount of XOR) and ``cosine_pairs`` (L2-normalised
  embeddings, dot product), both exact, blocked so memory stays bounded, and with a *query mode*
  that compares new items against an existing set;
* grouping: ``UnionFind`` (scalar API plus a vectorised ``union_pairs``) and
  ``exact_duplicate_groups`` for identical keys (content hashes, normalised text);
* the decision: ``select_representatives`` keeps, in every connected component, the member with
  the lowest priority value (ties: lowest index). The result depends only on the *set* of pairs,
  never on their order, so reruns and re-partitioned runs agree.

Incremental use across shards. Every item gets a priority
number at registration: earlier shards get lower numbers (e.g. ``shard_seq * 2**32 + row``). A new
shard is compared with itself (self mode) and against everything registered before it (query
mode, new -> earlier). ``select_representatives`` then runs over the index space
``[earlier items..., new items...]`` with the new-new and new-earlier pairs only. Because every
earlier item has a lower priority than every new item, any component that touches an earlier
item is represented by an earlier item, so new items can only be *dropped in favour of* older
content, never the other way round: an earlier shard's keep/drop decision never changes and never
has to be recomputed. The caller applies the result to the new items only. (One deliberate
difference from a one-shot global run: if a new item bridges two earlier items that were not
duplicates of each other, both stay kept — decisions are final once made.) Comparing against the
earlier *kept* items only is cheaper; comparing against all earlier items (kept and dropped)
reproduces transitive grouping more faithfully — the asset layer chooses.

Cost: both pair searches are exact brute force, O(n_query * n) with vectorised inner loops
(faiss binary flat index, or a numpy fallback, for hashes; BLAS matmul for cosine). That is what
incremental per-shard use needs (a few thousand new items against all earlier ones) and is
implemented in ``incremental.py``, which the assets call. For a one-shot global
pass over hundreds of millions of items, use an ANN index (faiss IVF/HNSW) to generate candidate
pairs and feed them to ``select_representatives`` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MAX_BLOCK_ELEMENTS = 1 << 22  # ~4M comparisons per block: 32 MiB of uint64 XORs at most


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path compression and union by rank.

    The scalar ``find``/``union`` are for small or streaming use; ``union_pairs`` merges millions
    of pairs with vectorised numpy passes (no per-pair Python loop).
    """

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        self.parent = np.arange(n, dtype=np.int64)
        self.rank = np.zeros(n, dtype=np.int8)

    def __len__(self) -> int:
        return len(self.parent)

    def find(self, i: int) -> int:
        """Root of ``i``; compresses the path it walks."""
        parent = self.parent
        root = int(i)
        while parent[root] != root:
            root = int(parent[root])
        node = int(i)
        while node != root:  # second pass: point everything on the path at the root
            nxt = int(parent[node])
            parent[node] = root
            node = nxt
        return root

    def union(self, a: int, b: int) -> None:
        """Merge the sets of ``a`` and ``b`` (union by rank keeps trees shallow)."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.rank[ra] < self.rank[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        if self.rank[ra] == self.rank[rb]:
            self.rank[ra] += 1

    def _compress_all(self) -> None:
        """Pointer jumping until every element points at its root (O(log depth) passes)."""
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return
            parent[:] = grand

    def union_pairs(self, pairs: np.ndarray) -> None:
        """Merge all ``(a, b)`` rows of an (m, 2) integer array, vectorised.

        Hook-and-compress: each round links every root that has a cross-set edge to the smallest
        root it touches (roots only ever point to smaller indices, so no cycles), then compresses
        all paths. Typically converges in a handful of rounds, independent of pair order.
        """
        pairs = _as_pairs(pairs, len(self))
        if len(pairs) == 0:
            return
        self._compress_all()
        a, b = pairs[:, 0], pairs[:, 1]
        parent = self.parent
        while True:
            ra, rb = parent[a], parent[b]
            cross = ra != rb
            if not cross.any():
                break
            ra, rb = ra[cross], rb[cross]
            low, high = np.minimum(ra, rb), np.maximum(ra, rb)
            np.minimum.at(parent, high, low)
            self._compress_all()
            a, b = a[cross], b[cross]  # pairs already inside one set never matter again
        self.rank[:] = 0  # heights are 1 after full compression; rank is only a heuristic

    def groups(self) -> np.ndarray:
        """Group label per element: the smallest member index of its set (order-independent)."""
        n = len(self)
        self._compress_all()
        roots = self.parent
        smallest = np.full(n, n, dtype=np.int64)
        np.minimum.at(smallest, roots, np.arange(n, dtype=np.int64))
        return smallest[roots]


def _as_pairs(pairs: np.ndarray | Sequence[np.ndarray], n: int) -> np.ndarray:
    """Validate/concatenate pair arrays into one (m, 2) int64 array within ``0..n-1``."""
    if isinstance(pairs, np.ndarray):
        parts = [pairs]
    else:
        parts = [np.asarray(p) for p in pairs]
    parts = [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in parts]
    out = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    if len(out) and (out.min() < 0 or out.max() >= n):
        raise ValueError(f"pair index out of range 0..{n - 1}")
    return out


def exact_duplicate_groups(keys: Sequence[str]) -> np.ndarray:
    """Label per element such that equal keys share a label: the index of the key's first use."""
    first: dict[str, int] = {}
    labels = np.fromiter(
        (first.setdefault(key, i) for i, key in enumerate(keys)), dtype=np.int64, count=len(keys)
    )
    return labels


# --------------------------------------------------------------------------- pair search


def _as_uint64(hashes: np.ndarray | Sequence[int]) -> np.ndarray:
    """Hashes as uint64; accepts int64 (signed pHash values, reinterpreted) or Python ints."""
    arr = np.asarray(hashes)
    if arr.dtype == np.uint64:
        return arr.ravel()
    if arr.dtype == np.int64:
        return arr.ravel().view(np.uint64)
    if arr.dtype == object or arr.size == 0 or np.issubdtype(arr.dtype, np.integer):
        values = [int(h) & 0xFFFF_FFFF_FFFF_FFFF for h in arr.ravel().tolist()]
        return np.array(values, dtype=np.uint64)
    raise TypeError(f"hashes must be integers, got {arr.dtype}")


_HAMMING_COL_BLOCK = 1 << 16
_FAISS_QUERY_BLOCK = 1 << 14


def hamming_pairs(
    hashes: np.ndarray,
    max_distance: int,
    query: np.ndarray | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """All index pairs whose 64-bit hashes differ in at most ``max_distance`` bits.

    Self mode (``query is None``): pairs ``(i, j)`` with ``i < j`` within ``hashes``.
    Query mode: pairs ``(q, j)`` of ``query[q]`` against ``hashes[j]`` (all of them, no symmetry).
    Hashes may be uint64 or int64 (the signed values ``phash64`` returns). Returns an (m, 2)
    int64 array sorted lexicographically. Exact brute force in bounded memory.

    ``backend``: "faiss" (``IndexBinaryFlat.range_search``, several times faster), "numpy" (XOR
    + ``np.bitwise_count`` over tiles of ~4M comparisons), or "auto" = faiss when importable.
    Both give identical results (tested).
    """
    base = _as_uint64(hashes)
    q = base if query is None else _as_uint64(query)
    if len(base) == 0 or len(q) == 0:
        return np.empty((0, 2), dtype=np.int64)
    if backend not in ("auto", "faiss", "numpy"):
        raise ValueError(f"unknown backend {backend!r}")
    if backend != "numpy":
        try:
            import faiss  # noqa: F401 - optional fast path
        except ImportError:
            if backend == "faiss":
                raise
        else:
            return _hamming_pairs_faiss(base, q, max_distance, self_mode=query is None)
    return _hamming_pairs_numpy(base, q, max_distance, self_mode=query is None)


def _hamming_pairs_faiss(
    base: np.ndarray, q: np.ndarray, max_distance: int, self_mode: bool
) -> np.ndarray:
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(np.ascontiguousarray(base).view(np.uint8).reshape(-1, 8))
    codes = np.ascontiguousarray(q).view(np.uint8).reshape(-1, 8)
    chunks: list[np.ndarray] = []
    for r0 in range(0, len(q), _FAISS_QUERY_BLOCK):  # blocks bound the result buffers
        block = codes[r0 : r0 + _FAISS_QUERY_BLOCK]
        # faiss keeps distances strictly below the radius
        lims, _, found = index.range_search(block, int(max_distance) + 1)
        i = np.repeat(np.arange(len(block), dtype=np.int64) + r0, np.diff(lims).astype(np.int64))
        _collect(chunks, i, found.astype(np.int64), self_mode)
    return _finish(chunks)


def _hamming_pairs_numpy(
    base: np.ndarray, q: np.ndarray, max_distance: int, self_mode: bool
) -> np.ndarray:
    n, nq = len(base), len(q)
    col_block = max(1, min(n, _HAMMING_COL_BLOCK))
    row_block = max(1, _MAX_BLOCK_ELEMENTS // col_block)
    chunks: list[np.ndarray] = []
    for r0 in range(0, nq, row_block):
        r1 = min(r0 + row_block, nq)
        rows_q = q[r0:r1, None]
        c_first = r0 if self_mode else 0  # self mode: only tiles on/above the diagonal
        for c0 in range(c_first, n, col_block):
            c1 = min(c0 + col_block, n)
            dist = np.bitwise_count(rows_q ^ base[None, c0:c1])
            rows, cols = np.nonzero(dist <= max_distance)
            _collect(chunks, rows + r0, cols + c0, self_mode)
    return _finish(chunks)


def cosine_pairs(
    vectors: np.ndarray,
    threshold: float,
    query: np.ndarray | None = None,
    block: int = 4096,
) -> np.ndarray:
    """All index pairs whose dot product is ``>= threshold`` (cosine for L2-normalised rows).

    Self mode: pairs ``(i, j)`` with ``i < j`` (self pairs excluded). Query mode: ``(q, j)``.
    Computed as blocked float32 matmuls (``block`` x ``block`` tiles, so memory is bounded by
    ``block**2`` floats regardless of n); exact — no approximate index — so results are
    reproducible. Returns an (m, 2) int64 array sorted lexicographically.
    """
    base = np.ascontiguousarray(vectors, dtype=np.float32)
    if base.ndim != 2:
        raise ValueError("vectors must be 2-D")
    q = base if query is None else np.ascontiguousarray(query, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != base.shape[1]:
        raise ValueError("query must be 2-D with the same dimension as vectors")
    chunks: list[np.ndarray] = []
    n, nq = len(base), len(q)
    block = max(1, int(block))
    for r0 in range(0, nq, block):
        r1 = min(r0 + block, nq)
        c_first = r0 if query is None else 0  # self mode: only tiles on/above the diagonal
        for c0 in range(c_first, n, block):
            c1 = min(c0 + block, n)
            sims = q[r0:r1] @ base[c0:c1].T
            rows, cols = np.nonzero(sims >= threshold)
            _collect(chunks, rows + r0, cols + c0, query is None)
    return _finish(chunks)


def _collect(chunks: list[np.ndarray], i: np.ndarray, j: np.ndarray, self_mode: bool) -> None:
    """Add the pairs (i, j) to `chunks`; in self mode only those with i < j."""
    if self_mode:
        keep = j > i
        i, j = i[keep], j[keep]
    if len(i):
        chunks.append(np.stack([i, j], axis=1))


def _finish(chunks: list[np.ndarray]) -> np.ndarray:
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    out = np.concatenate(chunks).astype(np.int64, copy=False)
    order = np.lexsort((out[:, 1], out[:, 0]))
    return out[order]


# --------------------------------------------------------------------------- decision


def select_representatives(
    n: int, pairs: np.ndarray | Sequence[np.ndarray], priority: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Union-find over ``pairs``; keep one member per group, the one with the lowest priority.

    ``pairs`` is one (m, 2) array or a sequence of them (e.g. pHash pairs and embedding pairs),
    all in the same ``0..n-1`` index space (map query-mode indices before calling). Ties in
    priority go to the lower index. Returns ``(keep_mask bool[n], representative int64[n])``;
    ``representative[i] == i`` exactly for kept items. Deterministic: independent of pair order,
    pair direction and duplicate pairs.
    """
    priority = np.asarray(priority)
    if priority.shape != (n,):
        raise ValueError(f"priority must have shape ({n},), got {priority.shape}")
    uf = UnionFind(n)
    uf.union_pairs(_as_pairs(pairs, n))
    labels = uf.groups()
    index = np.arange(n, dtype=np.int64)
    order = np.lexsort((index, priority))  # best first: lowest priority, then lowest index
    # np.unique(return_index=True) gives each label's first position in `order`: its best member
    group_labels, first = np.unique(labels[order], return_index=True)
    best_of_label = np.empty(n, dtype=np.int64)
    best_of_label[group_labels] = order[first]
    representative = best_of_label[labels]
    return representative == index, representative
