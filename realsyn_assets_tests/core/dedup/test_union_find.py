"""Tests for realsyn_assets.core.dedup.union_find: union-find, pair search vs brute force, representatives."""

from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.dedup import union_find as dedup
from realsyn_assets.core.dedup.union_find import (
    UnionFind,
    cosine_pairs,
    exact_duplicate_groups,
    hamming_pairs,
    select_representatives,
)


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in pairs}


def partition(labels: np.ndarray) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(label, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def reference_components(n: int, pairs) -> set[frozenset[int]]:
    """Plain DFS connected components, the oracle for union-find."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in pairs:
        adj[a].append(b)
        adj[b].append(a)
    seen = [False] * n
    out = set()
    for s in range(n):
        if seen[s]:
            continue
        stack, comp = [s], set()
        seen[s] = True
        while stack:
            v = stack.pop()
            comp.add(v)
            for w in adj[v]:
                if not seen[w]:
                    seen[w] = True
                    stack.append(w)
        out.add(frozenset(comp))
    return out


# --------------------------------------------------------------------------- union-find


def test_union_find_transitivity_scalar():
    uf = UnionFind(6)
    uf.union(0, 1)
    uf.union(1, 2)
    uf.union(4, 5)
    assert uf.find(0) == uf.find(2)
    assert uf.find(3) not in (uf.find(0), uf.find(4))
    assert uf.groups().tolist() == [0, 0, 0, 3, 4, 4]  # label = smallest member
    uf.union(2, 5)
    assert uf.groups().tolist() == [0, 0, 0, 3, 0, 0]


def test_union_find_long_chain_and_path_compression():
    n = 2000
    uf = UnionFind(n)
    for i in range(n - 1, 0, -1):
        uf.union(i, i - 1)
    assert uf.find(n - 1) == uf.find(0)
    root = uf.find(0)
    assert all(int(uf.parent[i]) == root for i in range(n))  # compressed after finds
    assert set(uf.groups().tolist()) == {0}


@pytest.mark.parametrize("seed", range(5))
def test_union_pairs_matches_scalar_and_dfs(seed: int):
    rng = np.random.default_rng(seed)
    n = 300
    pairs = rng.integers(0, n, size=(250, 2))
    vec = UnionFind(n)
    vec.union_pairs(pairs)
    scalar = UnionFind(n)
    for a, b in pairs.tolist():
        scalar.union(a, b)
    expected = reference_components(n, pairs.tolist())
    assert partition(vec.groups()) == expected
    assert partition(scalar.groups()) == expected
    assert np.array_equal(vec.groups(), scalar.groups())


def test_union_pairs_worst_case_orders():
    n = 5000
    chain = np.stack([np.arange(1, n), np.arange(n - 1)], axis=1)[::-1]
    uf = UnionFind(n)
    uf.union_pairs(chain)
    assert set(uf.groups().tolist()) == {0}
    star = np.stack([np.full(n - 1, n - 1), np.arange(n - 1)], axis=1)
    uf2 = UnionFind(n)
    uf2.union_pairs(star)
    assert set(uf2.groups().tolist()) == {0}


def test_union_pairs_rejects_out_of_range():
    with pytest.raises(ValueError):
        UnionFind(3).union_pairs(np.array([[0, 3]]))


def test_exact_duplicate_groups():
    labels = exact_duplicate_groups(["a", "b", "a", "c", "b", "a"])
    assert labels.tolist() == [0, 1, 0, 3, 1, 0]
    assert exact_duplicate_groups([]).tolist() == []


# --------------------------------------------------------------------------- hamming pairs


def brute_hamming(base, max_d, query=None):
    base = [int(h) & (2**64 - 1) for h in base]
    if query is None:
        return {
            (i, j)
            for i in range(len(base))
            for j in range(i + 1, len(base))
            if (base[i] ^ base[j]).bit_count() <= max_d
        }
    query = [int(h) & (2**64 - 1) for h in query]
    return {
        (i, j)
        for i in range(len(query))
        for j in range(len(base))
        if (query[i] ^ base[j]).bit_count() <= max_d
    }


def clustered_hashes(rng, n_centres: int, per: int) -> np.ndarray:
    centres = rng.integers(0, 2**64, size=n_centres, dtype=np.uint64)
    out = []
    for c in centres:
        for _ in range(per):
            flips = rng.choice(64, size=rng.integers(0, 6), replace=False)
            mask = np.uint64(sum(1 << int(f) for f in flips))
            out.append(c ^ mask)
    return np.array(out, dtype=np.uint64)


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
@pytest.mark.parametrize("max_d", [0, 3, 8])
def test_hamming_pairs_self_matches_brute_force(max_d, backend, monkeypatch):
    monkeypatch.setattr(dedup, "_MAX_BLOCK_ELEMENTS", 1000)  # force many row tiles
    monkeypatch.setattr(dedup, "_HAMMING_COL_BLOCK", 37)  # and ragged column tiles
    monkeypatch.setattr(dedup, "_FAISS_QUERY_BLOCK", 23)  # and ragged faiss query blocks
    rng = np.random.default_rng(max_d)
    hashes = clustered_hashes(rng, 20, 6)
    hashes[5] = hashes[6]  # an exact duplicate (distance 0)
    got = hamming_pairs(hashes, max_d, backend=backend)
    assert got.dtype == np.int64 and got.shape[1] == 2
    assert as_set(got) == brute_hamming(hashes.tolist(), max_d)
    assert len(as_set(got)) == len(got)  # no duplicates
    assert np.array_equal(got, got[np.lexsort((got[:, 1], got[:, 0]))])  # sorted


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_hamming_pairs_query_mode_and_signed_input(backend):
    rng = np.random.default_rng(7)
    hashes = clustered_hashes(rng, 10, 5)
    query = clustered_hashes(rng, 3, 4)
    query[:5] = hashes[:5] ^ np.uint64(0b101)  # guaranteed hits at distance 2
    got = hamming_pairs(hashes.view(np.int64), 4, query=query.view(np.int64), backend=backend)
    assert as_set(got) == brute_hamming(hashes.tolist(), 4, query.tolist())
    assert {(i, i) for i in range(5)} <= as_set(got)
    assert np.array_equal(got, hamming_pairs(hashes, 4, query=query, backend="numpy"))
    # python ints (signed, as phash64 returns them) work as well
    signed = [int(h) - 2**64 if int(h) >= 2**63 else int(h) for h in hashes.tolist()]
    assert as_set(hamming_pairs(signed, 4)) == as_set(hamming_pairs(hashes, 4))


def test_hamming_pairs_empty():
    assert hamming_pairs(np.array([], dtype=np.uint64), 3).shape == (0, 2)
    assert hamming_pairs(np.array([1], dtype=np.uint64), 3).shape == (0, 2)
    assert hamming_pairs(
        np.array([1], dtype=np.uint64), 3, query=np.array([], np.uint64)
    ).shape == (
        0,
        2,
    )


# --------------------------------------------------------------------------- cosine pairs


def normalised(rng, n: int, d: int, clusters: int = 8) -> np.ndarray:
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def brute_cosine(vectors, threshold, query=None):
    sims = (vectors if query is None else query) @ vectors.T
    out = set()
    for i, j in zip(*np.nonzero(sims >= threshold), strict=True):
        if query is None and j <= i:
            continue
        out.add((int(i), int(j)))
    near = np.abs(sims - threshold) < 1e-5  # float summation order may flip exact ties
    ambiguous = {(int(i), int(j)) for i, j in zip(*np.nonzero(near), strict=True)}
    return out, ambiguous


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_cosine_pairs_self_matches_brute_force(block: int):
    rng = np.random.default_rng(block)
    x = normalised(rng, 150, 16)
    got = cosine_pairs(x, 0.8, block=block)
    expected, ambiguous = brute_cosine(x, 0.8)
    assert len(expected) > 50  # the data really has near-duplicates
    assert as_set(got) ^ expected <= ambiguous
    assert all(i < j for i, j in as_set(got))  # no self pairs, each pair once


def test_cosine_pairs_query_mode():
    rng = np.random.default_rng(3)
    x = normalised(rng, 120, 8)
    q = np.concatenate([x[:4], normalised(rng, 30, 8)])
    got = cosine_pairs(x, 0.9, query=q, block=16)
    expected, ambiguous = brute_cosine(x, 0.9, query=q)
    assert as_set(got) ^ expected <= ambiguous
    assert {(i, i) for i in range(4)} <= as_set(got)  # identical rows match themselves


def test_cosine_pairs_validates_shapes():
    with pytest.raises(ValueError):
        cosine_pairs(np.zeros((3, 4), np.float32), 0.5, query=np.zeros((2, 5), np.float32))
    assert cosine_pairs(np.zeros((0, 4), np.float32), 0.5).shape == (0, 2)


# --------------------------------------------------------------------------- representatives


def test_select_representatives_lowest_priority_wins():
    #        0  1  2  3  4  5
    prio = np.array([5, 1, 9, 2, 2, 0])
    pairs = np.array([[0, 1], [1, 2], [3, 4]])
    keep, rep = select_representatives(6, pairs, prio)
    assert rep.tolist() == [1, 1, 1, 3, 3, 5]  # tie 3 vs 4 -> lower index
    assert keep.tolist() == [False, True, False, True, False, True]
    assert rep.dtype == np.int64 and keep.dtype == bool


@pytest.mark.parametrize("seed", range(4))
def test_select_representatives_independent_of_pair_order(seed: int):
    rng = np.random.default_rng(seed)
    n = 400
    pairs = rng.integers(0, n, size=(300, 2))
    prio = rng.integers(0, 50, size=n)  # many ties
    keep, rep = select_representatives(n, pairs, prio)
    shuffled = pairs[rng.permutation(len(pairs))][:, ::-1]  # reordered and flipped
    doubled = np.concatenate([shuffled, pairs])  # with duplicate pairs
    for variant in (shuffled, [doubled[:100], doubled[100:]]):
        keep2, rep2 = select_representatives(n, variant, prio)
        assert np.array_equal(keep, keep2) and np.array_equal(rep, rep2)
    # the representative is the (priority, index)-minimum of each DFS component
    for comp in reference_components(n, pairs.tolist()):
        best = min(comp, key=lambda i: (prio[i], i))
        assert all(rep[i] == best for i in comp)
        assert sum(keep[i] for i in comp) == 1


def test_select_representatives_no_pairs_keeps_all_and_validates():
    keep, rep = select_representatives(3, np.empty((0, 2), np.int64), np.zeros(3))
    assert keep.all() and rep.tolist() == [0, 1, 2]
    keep, rep = select_representatives(3, [], np.zeros(3))
    assert keep.all()
    with pytest.raises(ValueError):
        select_representatives(3, np.array([[0, 1]]), np.zeros(2))


def test_incremental_shard_never_overrides_earlier_decisions():
    """New shard vs earlier items (query mode): earlier items always represent their groups."""
    rng = np.random.default_rng(11)
    old = clustered_hashes(rng, 6, 3)
    new = np.concatenate([old[[0, 4]] ^ np.uint64(1), clustered_hashes(rng, 3, 2)])
    n_old = len(old)
    cross = hamming_pairs(old, 10, query=new)  # (new_idx, old_idx)
    within = hamming_pairs(new, 10)  # members of a cluster are <= 10 apart
    pairs = [
        np.stack([cross[:, 0] + n_old, cross[:, 1]], axis=1),
        within + n_old,
    ]
    priority = np.arange(n_old + len(new))  # registration order
    keep, rep = select_representatives(n_old + len(new), pairs, priority)
    new_rep = rep[n_old:]
    assert new_rep[0] < n_old and new_rep[1] < n_old  # dups of old content point to old items
    assert not keep[n_old] and not keep[n_old + 1]
    assert keep[n_old:].sum() == 3  # three fresh clusters, one survivor each
    # every group containing an earlier item is represented by an earlier item
    assert np.all(rep[:n_old] < n_old)
