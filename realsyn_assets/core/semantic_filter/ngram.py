"""Offline sentence perplexity: an interpolated absolute-discounting word n-gram model.

The stand-in for GPT-2 perplexity (paper Eq. 2) when no language model is installed: order 3
by default, estimated on the corpus itself. Fully vectorised with numpy (n-grams are packed into
int64 keys, counts looked up with ``searchsorted``), so fitting and scoring run at tens of
thousands of sentences per second per core.

**Scoring a sentence with a model that saw it.** A model estimated on the very sentences it
scores gives every sentence inflated probability: each of its n-grams was counted at least once
*because of it*, so rare sentences look fluent and the high end of the window catches nothing.
``NGramScorer.perplexity(..., exclude_self=True)`` therefore scores each sentence *leave-one-out*:
its own n-gram counts (and the context / type counts they contribute) are subtracted before its
probabilities are computed — exactly the model fitted on all other sentences, at no extra cost.
Use it whenever the scored sentences were part of ``fit`` (the usual case: fit on the kept
sentences of all shards, then score each shard — ``fit_perplexity`` does both in one pass); use
``exclude_self=False`` for new text. It equals refitting without the sentence (tested), and its
distribution is close to that of a genuine hold-out split.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from realsyn_assets.core.io import atomic_path

# Words (any letters, inner apostrophes), digit runs and single punctuation marks; digits are
# mapped to 0 so that years, durations and catalogue numbers share statistics.
_NGRAM_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
_DIGIT = re.compile(r"\d")
_BITS = 21  # bits per word id: 3 ids fit an int64 key
_MAX_VOCAB = (1 << _BITS) - 1
UNK, BOS, EOS = 0, 1, 2
_SPECIALS = ("<unk>", "<s>", "</s>")
_FORMAT = "realsyn-ngram-v1"


def ngram_tokens(sentence: str) -> list[str]:
    """Lowercased words, digit runs (as zeros) and punctuation marks of a sentence."""
    low = sentence.lower()
    if "’" in low:
        low = low.replace("’", "'")
    if _DIGIT.search(low) is not None:
        low = _DIGIT.sub("0", low)
    return _NGRAM_TOKEN.findall(low)


def _group_ids(sid: np.ndarray, local: np.ndarray, n_local: int) -> tuple[np.ndarray, ...]:
    """Group positions by (sentence, ``local``) where ``0 <= local < n_local``. Returns (group
    id per position, group sizes, first position of every group). ``sid`` is non-decreasing, so
    the combined key is nearly sorted and a stable (radix/tim) argsort is cheap."""
    combined = sid * np.int64(n_local) + local
    order = np.argsort(combined, kind="stable")
    c_sorted = combined[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = c_sorted[1:] != c_sorted[:-1]
    run = np.cumsum(new) - 1
    gid = np.empty(len(order), dtype=np.int64)
    gid[order] = run
    return gid, np.bincount(run), order[new]


def _dense(sorted_values: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense rank of a non-decreasing array (0, 0, 1, 2, 2, ...) and the number of ranks."""
    if len(sorted_values) == 0:
        return np.zeros(0, dtype=np.int64), 0
    new = np.empty(len(sorted_values), dtype=bool)
    new[0] = True
    new[1:] = sorted_values[1:] != sorted_values[:-1]
    rank = np.cumsum(new) - 1
    return rank, int(rank[-1]) + 1


class _OrderTable:
    """Sorted n-gram keys with counts, and per-history totals / distinct-continuation counts."""

    __slots__ = ("keys", "counts", "hist_keys", "hist_total", "hist_types", "discount")

    def __init__(self, keys: np.ndarray, counts: np.ndarray) -> None:
        self.keys = keys
        self.counts = counts
        hist = keys >> _BITS
        self.hist_keys, start = np.unique(hist, return_index=True)
        self.hist_total = np.add.reduceat(counts, start) if len(keys) else np.zeros(0, np.int64)
        self.hist_types = np.diff(np.append(start, len(keys))).astype(np.int64)
        # Ney's leave-one-out estimate D = n1 / (n1 + 2 n2)
        n1 = int(np.count_nonzero(counts == 1))
        n2 = int(np.count_nonzero(counts == 2))
        d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
        self.discount = float(min(max(d, 0.05), 0.95))

    @staticmethod
    def _lookup(table: np.ndarray, values: np.ndarray, sorted_query: np.ndarray) -> np.ndarray:
        """Values for sorted query keys (0 where absent); sorted queries make searchsorted walk
        the table once instead of jumping around it."""
        if len(table) == 0 or len(sorted_query) == 0:
            return np.zeros(len(sorted_query), dtype=np.int64)
        idx = np.minimum(np.searchsorted(table, sorted_query), len(table) - 1)
        return np.where(table[idx] == sorted_query, values[idx], 0).astype(np.int64)

    def stats(self, keys: np.ndarray) -> tuple[np.ndarray, ...]:
        """For every query position: gram count, history total, history types, plus the dense
        gram index / history index of the query (for leave-one-out grouping)."""
        uniq, inv = np.unique(keys, return_inverse=True)
        inv = inv.ravel()
        c = self._lookup(self.keys, self.counts, uniq)
        hist = uniq >> _BITS
        total = self._lookup(self.hist_keys, self.hist_total, hist)
        types = self._lookup(self.hist_keys, self.hist_types, hist)
        h_rank, n_hist = _dense(hist)
        return c[inv], total[inv], types[inv], inv, len(uniq), h_rank[inv], n_hist


class NGramScorer:
    """Interpolated absolute-discounting word n-gram model (order 1..3) on the corpus itself.

    ``p_k(w|h) = (max(c(h,w) - D_k, 0) + D_k * T(h) * p_{k-1}(w|h')) / c(h)`` with ``T(h)`` the
    number of distinct words seen after ``h``, ``D_k`` Ney's estimate, and a uniform floor over
    the vocabulary. Sentences are padded with ``<s>`` and scored including ``</s>``.
    """

    def __init__(self, vocab: Sequence[str], tables: Sequence[_OrderTable], order: int) -> None:
        self.order = int(order)
        self.vocab = list(vocab)
        self._ids = {w: i for i, w in enumerate(self.vocab)}
        self._tables = list(tables)
        self.name = f"ngram{self.order}"

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        sentences: Iterable[str],
        order: int = 3,
        min_count: int = 1,
        max_vocab: int = _MAX_VOCAB - len(_SPECIALS),
    ) -> NGramScorer:
        """Count n-grams of ``sentences``. Words seen fewer than ``min_count`` times (or beyond
        the ``max_vocab`` most frequent) become ``<unk>``."""
        tokenised = [ngram_tokens(s) for s in sentences if isinstance(s, str)]
        model, _ = cls._fit_tokenised(tokenised, order, min_count, max_vocab)
        return model

    @classmethod
    def fit_perplexity(
        cls, sentences: Sequence[str], order: int = 3, min_count: int = 1
    ) -> tuple[NGramScorer, np.ndarray]:
        """Fit on ``sentences`` and score the same sentences leave-one-out, tokenising and
        encoding once — the usual corpus-level use. Returns (model, perplexities)."""
        tokenised = [ngram_tokens(s) if isinstance(s, str) else [] for s in sentences]
        model, encoded = cls._fit_tokenised(
            tokenised, order, min_count, _MAX_VOCAB - len(_SPECIALS)
        )
        return model, model._score_encoded(*encoded, exclude_self=True)

    @classmethod
    def _fit_tokenised(
        cls, tokenised: Sequence[list[str]], order: int, min_count: int, max_vocab: int
    ) -> tuple[NGramScorer, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if order not in (1, 2, 3):
            raise ValueError("order must be 1, 2 or 3")
        freq = Counter(chain.from_iterable(tokenised))
        words = sorted(
            (w for w, c in freq.items() if c >= min_count and w not in _SPECIALS),
            key=lambda w: (-freq[w], w),
        )[: max(0, min(max_vocab, _MAX_VOCAB - len(_SPECIALS)))]
        vocab = list(_SPECIALS) + words
        model = cls(vocab, [], order)
        flat, sid, lengths = model._encode(tokenised)
        for k in range(1, order + 1):
            uniq, counts = np.unique(cls._keys(flat, k), return_counts=True)
            model._tables.append(_OrderTable(uniq, counts.astype(np.int64)))
        return model, (flat, sid, lengths)

    def _encode(self, tokenised: Sequence[Sequence[str]]) -> tuple[np.ndarray, ...]:
        """Padded id sequences, flattened: ``[<s>]*(order-1) + words + [</s>]`` per sentence.
        Returns (flat ids, sentence index per *predicted* position, words per sentence)."""
        order = self.order
        lengths = np.fromiter(map(len, tokenised), dtype=np.int64, count=len(tokenised))
        words = list(chain.from_iterable(tokenised))
        ids = np.fromiter(map(self._ids.get, words, repeat(UNK)), dtype=np.int64, count=len(words))
        seg = lengths + order  # pads + words + </s>
        ends = np.cumsum(seg)
        starts = ends - seg
        flat = np.full(int(ends[-1]) if len(ends) else 0, BOS, dtype=np.int64)
        word_start = np.cumsum(lengths) - lengths
        flat[np.arange(len(ids)) + np.repeat(starts + (order - 1) - word_start, lengths)] = ids
        flat[ends - 1] = EOS
        sid = np.repeat(np.arange(len(tokenised), dtype=np.int64), lengths + 1)
        return flat, sid, lengths

    @staticmethod
    def _keys(flat: np.ndarray, k: int) -> np.ndarray:
        """Key of the order-``k`` gram ending at every predicted (non-pad) position."""
        pos = np.flatnonzero(flat != BOS)
        key = flat[pos].copy()
        for j in range(1, k):
            key |= flat[pos - j] << (_BITS * j)
        return key

    # ------------------------------------------------------------------ scoring

    def perplexity(self, sentences: Sequence[str], exclude_self: bool = False) -> np.ndarray:
        """Perplexity per sentence (float64). NaN for non-strings and sentences without tokens.

        ``exclude_self=True``: leave-one-out — each sentence is scored by the model without its
        own counts. Only meaningful for sentences that were part of ``fit`` (counts are clipped
        at zero otherwise)."""
        tokenised = [ngram_tokens(s) if isinstance(s, str) else [] for s in sentences]
        if not tokenised:
            return np.zeros(0, dtype=np.float64)
        return self._score_encoded(*self._encode(tokenised), exclude_self=exclude_self)

    def _score_encoded(
        self, flat: np.ndarray, sid: np.ndarray, lengths: np.ndarray, exclude_self: bool
    ) -> np.ndarray:
        n = len(lengths)
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        logp = self._log_probs(flat, sid, exclude_self)
        total = np.bincount(sid, weights=logp, minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            ppl = np.exp(-total / (lengths + 1))
        return np.where(lengths > 0, ppl, np.nan)

    def log_probs(self, sentence: str, exclude_self: bool = False) -> np.ndarray:
        """Natural-log probability of every token of one sentence (and ``</s>``)."""
        flat, sid, _ = self._encode([ngram_tokens(sentence)])
        return self._log_probs(flat, sid, exclude_self)

    def _log_probs(self, flat: np.ndarray, sid: np.ndarray, exclude_self: bool) -> np.ndarray:
        vocab_size = len(self.vocab) - 1  # <s> is never predicted
        prob = np.full(len(sid), 1.0 / vocab_size, dtype=np.float64)
        for k, table in enumerate(self._tables, start=1):
            keys = self._keys(flat, k)
            c, total, types, g_idx, n_g, h_idx, n_h = table.stats(keys)
            if k == 1:  # the empty history: every token
                total = np.full(len(keys), int(table.counts.sum()), dtype=np.int64)
                types = np.full(len(keys), len(table.keys), dtype=np.int64)
            if exclude_self:
                loo = self._leave_one_out(sid, g_idx, n_g, h_idx, n_h, c, total, types)
                if k == 1:  # words only this sentence has leave the vocabulary too
                    prob = 1.0 / np.maximum(vocab_size - (types - loo[2]), 1)
                c, total, types = loo
            d = table.discount
            with np.errstate(divide="ignore", invalid="ignore"):
                interp = (np.maximum(c - d, 0.0) + d * types * prob) / total
            prob = np.where(total > 0, interp, prob)
        return np.log(prob)

    @staticmethod
    def _leave_one_out(
        sid: np.ndarray,
        g_idx: np.ndarray,
        n_g: int,
        h_idx: np.ndarray,
        n_h: int,
        c: np.ndarray,
        total: np.ndarray,
        types: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remove each sentence's own contribution from gram counts, history totals and the
        number of distinct continuations (a gram that only this sentence has disappears)."""
        gid, gsize, gfirst = _group_ids(sid, g_idx, n_g)
        hid, hsize, _ = _group_ids(sid, h_idx, n_h)
        vanished = (c[gfirst] <= gsize).astype(np.float64)  # distinct grams seen only here
        lost_types = np.bincount(hid[gfirst], weights=vanished, minlength=len(hsize))
        c2 = np.maximum(c - gsize[gid], 0)
        total2 = np.maximum(total - hsize[hid], 0)
        types2 = np.maximum(types - lost_types[hid].astype(np.int64), 0)
        return c2, total2, types2

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as one ``.npz`` (vocabulary + counts, no pickles), atomically."""
        path = Path(path)
        meta = {"format": _FORMAT, "order": self.order}
        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "vocab": np.frombuffer(
                "\n".join(self.vocab).encode("utf-8", "surrogatepass"), dtype=np.uint8
            ),
        }
        for k, table in enumerate(self._tables, start=1):
            arrays[f"keys{k}"] = table.keys
            arrays[f"counts{k}"] = table.counts
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NGramScorer:
        """Read a model written by ``save``; ValueError for anything else."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                if meta.get("format") != _FORMAT:
                    raise ValueError(f"{path}: not a {_FORMAT} file")
                order = int(meta["order"])
                vocab = bytes(data["vocab"]).decode("utf-8", "surrogatepass").split("\n")
                tables = [
                    _OrderTable(
                        data[f"keys{k}"].astype(np.int64), data[f"counts{k}"].astype(np.int64)
                    )
                    for k in range(1, order + 1)
                ]
        except (OSError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable {_FORMAT} file ({exc})") from exc
        return cls(vocab, tables, order)

    def __repr__(self) -> str:
        grams = ", ".join(str(len(t.keys)) for t in self._tables)
        return f"NGramScorer(order={self.order}, vocab={len(self.vocab)}, grams=[{grams}])"


__all__ = ["NGramScorer", "ngram_tokens"]
