"""Perceptual near-duplicate sentences: MinHash + LSH banding, verified by Jaccard (spec §2).

RealSyn removes "perceptually and semantically" redundant sentences (1.16B -> 0.84B) without
saying how. The perceptual half here is the standard text counterpart of an image pHash:

* each sentence is normalised (``ids.normalise_text``: NFKC, case-folded, whitespace collapsed),
  split into words (punctuation dropped), and turned into a set of **shingles** — runs of
  ``shingle`` consecutive words (``unit="word"``) or characters (``unit="char"``, over the
  words joined by single spaces). A sentence shorter than one shingle is one shingle.
* a **MinHash signature** of ``num_perm`` uint64 values estimates the Jaccard similarity of two
  shingle sets (fraction of equal positions). Hashes are keyed only by the text and
  ``(num_perm, shingle, unit, seed)`` — no corpus vocabulary — so a shard's signatures can be
  stored once and compared with any later shard (``save_signatures`` / ``load_signatures``).
* **LSH banding** (``bands`` x ``rows``) turns "similar signatures" into "equal band keys":
  candidates come from sorting band keys (self mode) or binary search (query mode), never from
  all pairs. Band/row counts are chosen for the threshold, weighting misses over extra
  candidates because every candidate is verified.
* **verification**: the estimated Jaccard from the full signatures, or — when the texts are
  given — the exact Jaccard of the shingle sets. Pairs at or above ``threshold`` are returned as
  an (m, 2) int64 array, like ``dedup.hamming_pairs``: ``(i, j)`` with ``i < j`` in self mode,
  ``(query_idx, base_idx)`` in query mode. Feed them to ``dedup.select_representatives``.

Defaults (``unit="char"``, ``shingle=4``, ``threshold=0.45``, ``num_perm=64``) favour recall on
sentences that differ by one word, inserted word or punctuation: character shingles tolerate one
changed word far better than word shingles (one replaced word removes 3 of ~12 word trigrams but
only ~6 of ~70 character 4-grams). Character 3-grams share more n-grams between unrelated
sentences, so LSH would emit many more candidates. Lines that differ only in a duration,
catalogue number or date (track listings, citations) are joined too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from realsyn_assets.core.ids import normalise_text
from realsyn_assets.core.io import atomic_path

DEFAULT_NUM_PERM = 64
DEFAULT_SHINGLE = 4
DEFAULT_UNIT = "char"
DEFAULT_THRESHOLD = 0.45
DEFAULT_MAX_BUCKET = 64

EMPTY = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # signature value of a text without shingles
_FORMAT = "realsyn-minhash-v1"
_WORD = re.compile(r"\w+")
_GOLDEN = np.uint64(0x9E37_79B9_7F4A_7C15)
_MIX1 = np.uint64(0xFF51_AFD7_ED55_8CCD)
_MIX2 = np.uint64(0xC4CE_B9FE_1A85_EC53)


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection with full avalanche), vectorised."""
    x = x ^ (x >> np.uint64(33))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(33))
    x = x * _MIX2
    return x ^ (x >> np.uint64(33))


@lru_cache(maxsize=1 << 20)
def _word_hash(word: str) -> int:
    """Stable 64-bit hash of a word (Python's ``hash`` is salted per process)."""
    return int.from_bytes(
        hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


def _normal_words(text: object) -> list[str]:
    return _WORD.findall(normalise_text(text)) if isinstance(text, str) else []


def _unit_values(texts: Sequence[str], unit: str) -> tuple[np.ndarray, np.ndarray]:
    """The token values shingles are built from — word hashes or character codes — for all
    texts, concatenated, and the number of values per text."""
    if unit == "char":
        joined = [" ".join(_normal_words(t)) for t in texts]
        lengths = np.fromiter(map(len, joined), dtype=np.int64, count=len(joined))
        # errors="replace": a lone surrogate becomes one "?" code unit, lengths stay right
        codes = np.frombuffer("".join(joined).encode("utf-32-le", "replace"), dtype=np.uint32)
        return codes.astype(np.uint64), lengths
    if unit == "word":
        words = [_normal_words(t) for t in texts]
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        flat = [_word_hash(w) for ws in words for w in ws]
        return np.asarray(flat, dtype=np.uint64), lengths
    raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


def _all_shingles(texts: Sequence[str], k: int, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Hash of every window of ``k`` consecutive values of every text (one window covering the
    whole text when it is shorter than ``k``), and the owning text of each. Vectorised over all
    texts at once: the rolling hash runs on the concatenation, windows that would cross a text
    boundary are dropped."""
    if k < 1:
        raise ValueError("shingle must be >= 1")
    values, lengths = _unit_values(texts, unit)
    n = len(lengths)
    total = len(values)
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    local = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    # window length per position: k, or the whole text for texts shorter than k
    span = np.minimum(lengths, k)[owner]
    valid = local <= (lengths[owner] - span)
    padded = np.concatenate([values, np.zeros(k, dtype=np.uint64)])
    acc = np.zeros(total, dtype=np.uint64)
    for j in range(k):
        step = _fmix64(acc * _GOLDEN + padded[j : j + total] + np.uint64(j + 1))
        acc = np.where(j < span, step, acc)
    return acc[valid], owner[valid]


def shingle_set(text: str, shingle: int = DEFAULT_SHINGLE, unit: str = DEFAULT_UNIT) -> np.ndarray:
    """Sorted unique shingle hashes of one text (what MinHash summarises)."""
    hashes, _ = _all_shingles([text], shingle, unit)
    return np.unique(hashes)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays (0.0 if both are empty)."""
    if len(a) == 0 and len(b) == 0:
        return 0.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def _perm_constants(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Odd multipliers and offsets of the permutations, derived from ``seed`` only."""
    rng = np.random.default_rng(np.random.SeedSequence([0x5EED, int(seed)]))
    mult = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    add = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
    return mult, add


def minhash_signatures(
    texts: Sequence[str],
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = 0,
    unit: str = DEFAULT_UNIT,
) -> np.ndarray:
    """(n, num_perm) uint64 MinHash signatures. A text without shingles (empty, punctuation only,
    not a string) gets the all-``EMPTY`` row, which never matches anything.

    Shingle hashes are already fully mixed (fmix64), so permutation j can be the cheap bijection
    ``h_j(x) = a_j * x + b_j (mod 2**64)`` with odd ``a_j`` (multiply-add universal hashing; the
    minimum is decided by the well-mixed high bits). Constants come from ``seed`` only:
    deterministic across processes and machines."""
    if num_perm < 1:
        raise ValueError("num_perm must be >= 1")
    mult, add = _perm_constants(num_perm, seed)
    out = np.full((len(texts), num_perm), EMPTY, dtype=np.uint64)
    shingles, owner = _all_shingles(texts, shingle, unit)
    if len(shingles) == 0:
        return out
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # first window of each text
    rows = owner[first]
    tmp = np.empty(len(shingles), dtype=np.uint64)
    for j in range(num_perm):  # one permutation at a time: 1-D, in place, cache friendly
        np.multiply(shingles, mult[j], out=tmp)
        np.add(tmp, add[j], out=tmp)
        out[rows, j] = np.minimum.reduceat(tmp, first)
    return out


# --------------------------------------------------------------------------- LSH


@lru_cache(maxsize=256)
def lsh_bands(num_perm: int, threshold: float, miss_weight: float = 0.9) -> tuple[int, int]:
    """(bands, rows) with ``bands * rows <= num_perm`` minimising the weighted area of missed
    pairs above ``threshold`` and extra candidates below it under the S-curve
    ``P(J) = 1 - (1 - J**rows)**bands``. Candidates are verified, so misses weigh more."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    grid = np.linspace(0.0, 1.0, 1001)
    best: tuple[float, int, int] | None = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p = 1.0 - (1.0 - grid**rows) ** bands
        below, above = grid < threshold, grid >= threshold
        fp = float(np.trapezoid(p[below], grid[below])) if below.sum() > 1 else 0.0
        fn = float(np.trapezoid(1.0 - p[above], grid[above])) if above.sum() > 1 else 0.0
        cost = miss_weight * fn + (1.0 - miss_weight) * fp
        if best is None or cost < best[0] - 1e-12:
            best = (cost, bands, rows)
    assert best is not None
    return best[1], best[2]


def _band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one hash per band of ``rows`` signature values."""
    n = len(signatures)
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            acc = np.full(n, np.uint64(b + 1), dtype=np.uint64)
            for r in range(rows):
                acc = _fmix64(acc * _GOLDEN + signatures[:, b * rows + r])
            keys[:, b] = acc
    return keys


def _as_signatures(signatures: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(signatures)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, num_perm)")
    if arr.dtype != np.uint64:
        arr = arr.astype(np.uint64)
    return np.ascontiguousarray(arr)


def _self_candidates(keys: np.ndarray, valid: np.ndarray, max_bucket: int) -> np.ndarray:
    """Pair codes ``i * n + j`` (i < j) of rows sharing a band key."""
    n = len(keys)
    codes: list[np.ndarray] = []
    rows_all = np.flatnonzero(valid)
    for b in range(keys.shape[1]):
        col = keys[rows_all, b]
        order = np.argsort(col, kind="stable")
        sorted_keys = col[order]
        members = rows_all[order]
        same_next = sorted_keys[1:] == sorted_keys[:-1]
        if not same_next.any():
            continue
        run = np.r_[0, np.cumsum(~same_next)]
        max_run = int(np.bincount(run).max())
        for d in range(1, min(max_run, max_bucket)):
            ok = run[d:] == run[:-d]
            if not ok.any():
                break
            a, c = members[:-d][ok], members[d:][ok]
            codes.append(np.minimum(a, c) * n + np.maximum(a, c))
    if not codes:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(codes))


def _query_candidates(
    base_keys: np.ndarray,
    base_valid: np.ndarray,
    query_keys: np.ndarray,
    query_valid: np.ndarray,
    max_bucket: int,
) -> np.ndarray:
    """Pair codes ``q * n_base + j`` of query rows sharing a band key with base rows."""
    n_base = len(base_keys)
    base_rows = np.flatnonzero(base_valid)
    query_rows = np.flatnonzero(query_valid)
    codes: list[np.ndarray] = []
    for b in range(base_keys.shape[1]):
        col = base_keys[base_rows, b]
        order = np.argsort(col, kind="stable")
        sorted_keys = col[order]
        qk = query_keys[query_rows, b]
        left = np.searchsorted(sorted_keys, qk, side="left")
        right = np.searchsorted(sorted_keys, qk, side="right")
        count = np.minimum(right - left, max_bucket)
        hit = count > 0
        if not hit.any():
            continue
        q, left, count = query_rows[hit], left[hit], count[hit]
        total = int(count.sum())
        rep_q = np.repeat(q, count)
        offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        base_idx = base_rows[order[np.repeat(left, count) + offset]]
        codes.append(rep_q * n_base + base_idx)
    if not codes:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(codes))


def _estimated_jaccard(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    out = np.empty(len(i), dtype=np.float64)
    step = max(1, (1 << 22) // max(1, a.shape[1]))
    for s in range(0, len(i), step):
        out[s : s + step] = (a[i[s : s + step]] == b[j[s : s + step]]).mean(axis=1)
    return out


def near_duplicate_pairs(
    signatures: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    query: np.ndarray | None = None,
    texts: Sequence[str] | None = None,
    query_texts: Sequence[str] | None = None,
    *,
    shingle: int = DEFAULT_SHINGLE,
    unit: str = DEFAULT_UNIT,
    bands: int | None = None,
    max_bucket: int = DEFAULT_MAX_BUCKET,
) -> np.ndarray:
    """Pairs whose Jaccard similarity is ``>= threshold``, as an (m, 2) int64 array.

    Self mode (``query is None``): ``(i, j)``, ``i < j``, within ``signatures``. Query mode:
    ``(q, j)`` of ``query[q]`` against ``signatures[j]`` (e.g. a new shard against the stored
    signatures of earlier shards). Candidates share at least one LSH band; each is verified by
    the exact Jaccard of its shingle sets when the texts are given (``texts`` for the base and,
    in query mode, ``query_texts``; ``shingle``/``unit`` must match the signatures), else by the
    signature estimate. Inside one band bucket at most ``max_bucket`` neighbours are paired
    (all pairs for buckets up to that size) so a line repeated 100k times costs O(n), not O(n^2);
    union-find over the result still joins all of them. Sorted lexicographically.
    """
    base = _as_signatures(signatures, "signatures")
    num_perm = base.shape[1]
    q = None if query is None else _as_signatures(query, "query")
    if q is not None and q.shape[1] != num_perm:
        raise ValueError("query signatures have a different num_perm")
    if texts is not None and len(texts) != len(base):
        raise ValueError("texts must match signatures")
    if q is not None and query_texts is not None and len(query_texts) != len(q):
        raise ValueError("query_texts must match query")
    empty = np.zeros((0, 2), dtype=np.int64)
    if len(base) == 0 or (q is not None and len(q) == 0) or num_perm == 0:
        return empty
    if bands is None:
        bands, rows = lsh_bands(num_perm, threshold)
    else:
        rows = num_perm // bands
        if rows < 1:
            raise ValueError("bands must be <= num_perm")
    base_valid = ~(base == EMPTY).all(axis=1)
    base_keys = _band_keys(base, bands, rows)
    if q is None:
        codes = _self_candidates(base_keys, base_valid, max_bucket)
        i, j = codes // len(base), codes % len(base)
        left_sig, left_texts = base, texts
    else:
        q_valid = ~(q == EMPTY).all(axis=1)
        codes = _query_candidates(
            base_keys, base_valid, _band_keys(q, bands, rows), q_valid, max_bucket
        )
        i, j = codes // len(base), codes % len(base)
        left_sig, left_texts = q, query_texts
    if len(i) == 0:
        return empty
    sim = _estimated_jaccard(left_sig, base, i, j)
    if left_texts is not None and texts is not None:
        # exact check only where the estimate is within ~3.5 standard errors of the threshold
        margin = 3.5 * np.sqrt(0.25 / num_perm)
        near = np.flatnonzero(sim >= threshold - margin)
        exact = np.zeros(len(i), dtype=np.float64)
        exact[near] = _exact_jaccard_pairs(left_texts, texts, i[near], j[near], shingle, unit)
        sim = exact
    keep = sim >= threshold
    out = np.stack([i[keep], j[keep]], axis=1).astype(np.int64)
    order = np.lexsort((out[:, 1], out[:, 0]))
    return out[order]


def _shingle_sets(texts: Sequence[str], rows: np.ndarray, k: int, unit: str) -> dict:
    """Python sets of shingle hashes for the given rows, computed in one vectorised pass."""
    rows = np.unique(rows)
    hashes, owner = _all_shingles([texts[r] for r in rows.tolist()], k, unit)
    bounds = np.searchsorted(owner, np.arange(len(rows) + 1))
    return {int(r): set(hashes[bounds[n] : bounds[n + 1]].tolist()) for n, r in enumerate(rows)}


def _exact_jaccard_pairs(
    left_texts: Sequence[str],
    right_texts: Sequence[str],
    i: np.ndarray,
    j: np.ndarray,
    shingle: int,
    unit: str,
) -> np.ndarray:
    left = _shingle_sets(left_texts, i, shingle, unit)
    right = left if left_texts is right_texts else {}
    missing = np.setdiff1d(j, np.fromiter(right.keys(), dtype=np.int64, count=len(right)))
    if len(missing):
        right.update(_shingle_sets(right_texts, missing, shingle, unit))
    out = np.empty(len(i), dtype=np.float64)
    for n, (a, b) in enumerate(zip(i.tolist(), j.tolist(), strict=True)):
        sa, sb = left[a], right[b]
        union = len(sa | sb)
        out[n] = len(sa & sb) / union if union else 0.0
    return out


# --------------------------------------------------------------------------- storage


def save_signatures(
    path: str | os.PathLike[str],
    signatures: np.ndarray,
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = 0,
    unit: str = DEFAULT_UNIT,
) -> Path:
    """Store one shard's signatures with the parameters that made them (atomic ``.npz``)."""
    sig = _as_signatures(signatures, "signatures")
    if sig.shape[1] != num_perm:
        raise ValueError("signatures do not have num_perm columns")
    path = Path(path)
    meta = {"format": _FORMAT, "num_perm": num_perm, "shingle": shingle, "seed": seed, "unit": unit}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, signatures=sig, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return path


def load_signatures(
    path: str | os.PathLike[str], expect: dict | None = None
) -> tuple[np.ndarray, dict]:
    """(signatures, parameters). With ``expect`` (e.g. ``{"num_perm": 64, "unit": "char"}``),
    raise ValueError if the stored parameters differ — signatures made with other parameters
    are not comparable."""
    with np.load(Path(path), allow_pickle=False) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        sig = data["signatures"].astype(np.uint64, copy=False)
    if meta.pop("format", None) != _FORMAT:
        raise ValueError(f"{path}: not a {_FORMAT} file")
    for key, value in (expect or {}).items():
        if meta.get(key) != value:
            raise ValueError(f"{path}: {key}={meta.get(key)!r}, expected {value!r}")
    return sig, meta


__all__ = [
    "DEFAULT_MAX_BUCKET",
    "DEFAULT_NUM_PERM",
    "DEFAULT_SHINGLE",
    "DEFAULT_THRESHOLD",
    "DEFAULT_UNIT",
    "EMPTY",
    "jaccard",
    "load_signatures",
    "lsh_bands",
    "minhash_signatures",
    "near_duplicate_pairs",
    "save_signatures",
    "shingle_set",
]
