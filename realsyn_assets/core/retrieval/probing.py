"""Which sentence clusters each image searches in hierarchical retrieval.

Every image probes its `n_probe` nearest centroids; with a probe margin (adaptive probing, see
`calibration`) also every cluster whose centroid scores within the margin of its best one.
"""

from __future__ import annotations

import numpy as np

from realsyn_assets.core.retrieval.topk import blocked_topk, topk_rows


def _margin_probes(
    q: np.ndarray, centroids: np.ndarray, n_probe: int, margin: float, max_probe: int
) -> np.ndarray:
    """Per image: clusters scoring >= best - margin (at least `n_probe`, at most `max_probe`).

    Rows are sorted by score descending then cluster id (the order `blocked_topk` would give),
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
                out[rows, :depth] = topk_rows(cs[rows], ids, depth)[0]
        blocks.append(out)
    probes = np.concatenate(blocks) if blocks else np.full((0, max_probe), -1, np.int64)
    width = int(max(n_probe, (probes >= 0).sum(axis=1).max(initial=n_probe)))
    return probes[:, :width]


def probe_lists(
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
        ranked = blocked_topk(q, centroids, width)[0]
    reach = np.where(ranked >= 0, sizes[np.maximum(ranked, 0)], 0).sum(axis=1)
    short = np.flatnonzero(reach < k)
    deeper: list[tuple[np.ndarray, np.ndarray]] = []
    depth = width
    while short.size and depth < n_c:
        depth = min(n_c, max(2 * depth, depth + k))
        r2 = blocked_topk(q[short], centroids, depth)[0]
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
