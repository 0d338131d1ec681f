"""The incremental dedup decision for one shard against every shard registered before it.

A shard's items are appended, in index space, after every earlier item ([earlier..., current...]).
Pair searches run in query mode (current items against all items), each kind of pair is a
*stage*, and `decide` adds the stages in order: an item linked, directly or through its own
shard's items, to an earlier item is a duplicate, inside a shard the first item of a group is
kept, and an item's reason is the first stage that made it a duplicate. Earlier shards' decisions
therefore never change when a shard is added, and reruns give the same answer (see
`union_find.py` for the representatives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from realsyn_assets.core.dedup import union_find
from realsyn_assets.core.io import save_npy

# Rejection reasons, in the order the stages run.
EXACT_DUPLICATE = "exact_duplicate"  # same bytes (images) / same normalised text (sentences)
PERCEPTUAL_DUPLICATE = "perceptual_duplicate"  # images: pHash Hamming distance
NEAR_DUPLICATE_TEXT = "near_duplicate_text"  # sentences: MinHash over character shingles
SEMANTIC_DUPLICATE = "semantic_duplicate"  # embedding cosine

# (reason, pairs) with pairs computed lazily: global (current, other) index pairs
Stage = tuple[str, Callable[[], np.ndarray]]
PairSearch = Callable[..., np.ndarray]  # (base, threshold, query=...) -> query-mode pairs


def shards_before(order: Sequence[str], key: str) -> list[str]:
    """The shards registered before `key` (all of them for an unregistered key)."""
    order = list(order)
    return order[: order.index(key)] if key in order else order


def offset_query_pairs(pairs: np.ndarray, n_earlier: int) -> np.ndarray:
    """Query-mode pairs (query row, target row) -> global pairs, without self pairs."""
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).copy()
    pairs[:, 0] += n_earlier
    return pairs[pairs[:, 0] != pairs[:, 1]]


def exact_pairs(earlier_ids: Sequence[str], current_ids: Sequence[str]) -> np.ndarray:
    """Current items whose id an earlier item has: (current, earlier) global pairs."""
    index = {iid: i for i, iid in enumerate(earlier_ids)}
    n = len(earlier_ids)
    return np.array(
        [(n + i, index[iid]) for i, iid in enumerate(current_ids) if iid in index], dtype=np.int64
    ).reshape(-1, 2)


def exact_stage(earlier_ids: Sequence[str], current_ids: Sequence[str]) -> Stage:
    return EXACT_DUPLICATE, lambda: exact_pairs(earlier_ids, current_ids)


def query_stage(
    reason: str, search: PairSearch, base: np.ndarray, n_earlier: int, threshold: float
) -> Stage:
    """A stage whose pairs come from `search(base, threshold, query=current rows)`."""
    return reason, lambda: offset_query_pairs(
        search(base, threshold, query=base[n_earlier:]), n_earlier
    )


def perceptual_stage(hashes: np.ndarray, n_earlier: int, max_distance: int) -> Stage:
    return query_stage(
        PERCEPTUAL_DUPLICATE, union_find.hamming_pairs, hashes, n_earlier, max_distance
    )


def near_text_stage(signatures: np.ndarray, n_earlier: int, threshold: float) -> Stage:
    from realsyn_assets.core.dedup.minhash import near_duplicate_pairs

    return query_stage(NEAR_DUPLICATE_TEXT, near_duplicate_pairs, signatures, n_earlier, threshold)


def semantic_stage(matrix: np.ndarray, n_earlier: int, threshold: float) -> Stage:
    return query_stage(SEMANTIC_DUPLICATE, union_find.cosine_pairs, matrix, n_earlier, threshold)


def decide(
    n_earlier: int, n_current: int, stages: Sequence[Stage]
) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """Keep mask, reason and representative for the current items, adding pair kinds in order.

    An item's reason is the first pair kind that made it a duplicate.
    """
    n = n_earlier + n_current
    priority = np.arange(n, dtype=np.int64)
    reasons: list[str | None] = [None] * n_current
    pairs: list[np.ndarray] = []
    keep = np.ones(n_current, dtype=bool)
    representative = np.arange(n_earlier, n, dtype=np.int64)
    for name, make_pairs in stages:
        pairs.append(make_pairs())
        mask, rep = union_find.select_representatives(n, pairs, priority)
        for i in np.flatnonzero(keep & ~mask[n_earlier:]):
            reasons[i] = name
        keep = mask[n_earlier:]
        representative = rep[n_earlier:]
    return keep, reasons, representative


def duplicate_of(
    all_ids: Sequence[str], keep: np.ndarray, representative: np.ndarray
) -> list[str | None]:
    """The id each removed current item was folded into (None for kept items)."""
    return [None if k else all_ids[r] for k, r in zip(keep, representative, strict=True)]


def merge_reasons(
    first: Sequence[str | None], then: Sequence[str | None]
) -> tuple[np.ndarray, list[str | None]]:
    """Keep mask and reasons of two filters applied in turn: the first filter's reason wins."""
    reasons = [a or b for a, b in zip(first, then, strict=True)]
    return np.array([r is None for r in reasons], dtype=bool), reasons


def phash_values(table: pa.Table | None) -> np.ndarray:
    """The `phash` column (signed int64 as stored) as uint64 hashes; empty for no table."""
    if table is None or table.num_rows == 0:
        return np.zeros(0, dtype=np.uint64)
    return (
        np.asarray(table.column("phash").to_numpy(zero_copy_only=False))
        .astype(np.int64)
        .view(np.uint64)
    )


def text_signatures(
    path: Path,
    texts: Sequence[str] | None = None,
    read_texts: Callable[[], Sequence[str]] | None = None,
) -> np.ndarray:
    """MinHash signatures of a shard's sentences, stored at `path` once and reused by later shards.

    Given `texts` (the shard being deduplicated) they are computed and stored afresh; otherwise
    the stored file is read, or computed from `read_texts()` when there is none yet.
    """
    from realsyn_assets.core.dedup.minhash import minhash_signatures

    if texts is None and path.exists():
        return np.load(path)
    if texts is None:
        texts = read_texts()
    signatures = minhash_signatures(texts)
    save_npy(signatures, path)
    return signatures


def row_index(rows: Sequence[tuple[str, str]], wanted: Sequence[tuple[str, str]]) -> np.ndarray:
    """Position of every wanted (shard, id) key among `rows`; -1 where it is missing."""
    order = {key: r for r, key in enumerate(rows)}
    return np.array([order.get(key, -1) for key in wanted], dtype=np.int64)
