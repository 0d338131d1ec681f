"""Sentence perplexity (paper Eq. 2) and the perplexity window filter (spec §2, semantic stage).

RealSyn keeps sentences with ``30 <= PPL <= 200`` under GPT-2 large, where

    PPL(x) = exp( -(1/t) * sum_i log p(x_i | x_<i) ),   t = number of tokens.

Very low perplexity catches repetitive boilerplate (templated lines that occur again and
again); very high perplexity catches garbled text, lists of names and number soup. Two scorers implement one protocol:

* ``GPT2Scorer`` — the paper's model via ``transformers`` (optional extra ``lm``); imported
  lazily, loads a local path or hub name, batched, any torch device.
* ``NGramScorer`` — offline: an interpolated absolute-discounting word n-gram model (order 3 by
  default) estimated on the corpus itself. Fully vectorised with numpy (n-grams are packed into
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
``exclude_self=False`` for new text. It equals refitting without the sentence (tested); on the
Wikipedia sample the in-sample median PPL is 6.2 against 57.6 leave-one-out, and the
leave-one-out distribution is close to a genuine 80/20 hold-out (median 56 vs 67 on the same
sentences; the hold-out model has 20 % less data).

**Window for another scorer.** 30–200 is calibrated for GPT-2 large. The n-gram model's scale is
different (corpus size, vocabulary), so ``calibrate_window`` maps the window by *keeping the same
fraction* of sentences (quantiles of the scores). The paper does not report what fraction its
window keeps on its own; the only number it gives is for the whole semantic stage, entropy plus
perplexity: 1.82B -> 1.16B sentences, i.e. 63.7 % kept (``PAPER_SEMANTIC_KEEP_FRACTION``). That is
the default target. If the entropy filter runs first and keeps a fraction ``e``, target
``perplexity_keep_fraction(e)`` = 0.637 / e for the perplexity filter so the stage as a whole
matches the paper. The removed mass is split between the two tails (``low_tail_share``, default
one half, since the paper gives no split). On the Wikipedia sample (4,974 sentences after the
rule filter) the n-gram leave-one-out PPL has percentiles 5/25/50/75/95 = 3.5/9.2/58/245/1274
(the paper's 30-200 applied as-is would keep 31 %); the default calibration gives the window
(7.0, 388). The lowest scores are templated lines (track listings, "All songs written by Ray
Charles except as indicated."); the highest are rare-word fragments and garbled text —
word-shuffled or character-noised sentences land above the window 94 % / 90 % of the time. On a
corpus this small the high end also catches fluent sentences with rare vocabulary; that
improves with corpus size (or use GPT2Scorer).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

PAPER_PPL_WINDOW = (30.0, 200.0)
PAPER_SEMANTIC_KEEP_FRACTION = 1.16 / 1.82  # entropy + perplexity stage [v3 §3.1]

REJECT_PERPLEXITY_LOW = "perplexity_low"
REJECT_PERPLEXITY_HIGH = "perplexity_high"
REJECT_REASONS = (REJECT_PERPLEXITY_LOW, REJECT_PERPLEXITY_HIGH)

LM_EXTRA_HINT = "pip install realsyn_assets[lm]"


@runtime_checkable
class PerplexityScorer(Protocol):
    """Anything that turns sentences into one perplexity each (float64, NaN = nothing to score)."""

    name: str

    def perplexity(self, sentences: Sequence[str]) -> np.ndarray: ...


# --------------------------------------------------------------------------- window


def perplexity_keep_fraction(entropy_keep_fraction: float = 1.0) -> float:
    """Fraction the perplexity filter should keep so that entropy + perplexity together keep the
    paper's 1.16/1.82 of their input (capped at 1)."""
    if not 0.0 < entropy_keep_fraction <= 1.0:
        raise ValueError("entropy_keep_fraction must be in (0, 1]")
    return min(1.0, PAPER_SEMANTIC_KEEP_FRACTION / entropy_keep_fraction)


def calibrate_window(
    ppl: np.ndarray | Sequence[float],
    reference_keep_fraction: float = PAPER_SEMANTIC_KEEP_FRACTION,
    low_tail_share: float = 0.5,
) -> tuple[float, float]:
    """``(low, high)`` such that ``low <= ppl <= high`` keeps ``reference_keep_fraction`` of the
    finite scores; ``low_tail_share`` of the removed mass comes from the low (boilerplate) end."""
    if not 0.0 < reference_keep_fraction <= 1.0:
        raise ValueError("reference_keep_fraction must be in (0, 1]")
    if not 0.0 <= low_tail_share <= 1.0:
        raise ValueError("low_tail_share must be in [0, 1]")
    values = np.asarray(ppl, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite perplexities to calibrate on")
    drop = 1.0 - reference_keep_fraction
    low = float(np.quantile(values, drop * low_tail_share))
    high = float(np.quantile(values, 1.0 - drop * (1.0 - low_tail_share)))
    return low, high


def window_rejection(ppl: float, low: float, high: float) -> str | None:
    """``"perplexity_low"`` / ``"perplexity_high"`` / None (keep; bounds inclusive). NaN — a
    sentence with nothing to score — counts as ``"perplexity_high"`` (not fluent text)."""
    if ppl < low:
        return REJECT_PERPLEXITY_LOW
    if ppl > high or ppl != ppl:
        return REJECT_PERPLEXITY_HIGH
    return None


def window_rejections(
    ppl: np.ndarray | Sequence[float], low: float, high: float
) -> list[str | None]:
    """``window_rejection`` for an array of perplexities."""
    values = np.asarray(ppl, dtype=np.float64).ravel()
    out: list[str | None] = [None] * len(values)
    for i in np.flatnonzero(values < low).tolist():
        out[i] = REJECT_PERPLEXITY_LOW
    for i in np.flatnonzero(~(values <= high) & ~(values < low)).tolist():
        out[i] = REJECT_PERPLEXITY_HIGH
    return out


# --------------------------------------------------------------------------- n-gram model

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
        path.parent.mkdir(parents=True, exist_ok=True)
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
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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


# --------------------------------------------------------------------------- GPT-2

TokenLogProbs = Callable[[list[list[int]]], list[np.ndarray]]


def perplexities_from_logprobs(token_logprobs: Sequence[np.ndarray]) -> np.ndarray:
    """Eq. 2 per sentence: ``exp(-mean(log p))``; NaN for a sentence with no tokens."""
    out = np.full(len(token_logprobs), np.nan, dtype=np.float64)
    for i, lp in enumerate(token_logprobs):
        lp = np.asarray(lp, dtype=np.float64)
        if lp.size:
            out[i] = math.exp(-float(lp.mean()))
    return out


def batched_perplexity(
    sentences: Sequence[str],
    tokenize: Callable[[str], list[int]],
    token_logprobs: TokenLogProbs,
    batch_size: int = 16,
    bos_id: int | None = None,
    max_tokens: int = 1024,
) -> np.ndarray:
    """Tokenise, batch by similar length, score, and compute Eq. 2 per sentence.

    ``token_logprobs(batch)`` receives id lists that start with the context token ``bos_id``
    (when given, so the first real token is predicted too) and returns, per sequence, the log
    probability of every token after the first. Order of the output = order of ``sentences``."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    ids: list[list[int]] = []
    for s in sentences:
        toks = list(tokenize(s)) if isinstance(s, str) and s.strip() else []
        limit = max_tokens - (1 if bos_id is not None else 0)
        toks = toks[:limit]
        ids.append(([bos_id] if bos_id is not None and toks else []) + toks)
    logprobs: list[np.ndarray] = [np.zeros(0)] * len(ids)
    scorable = [i for i, seq in enumerate(ids) if len(seq) >= 2]
    scorable.sort(key=lambda i: -len(ids[i]))  # long first: padding stays small, OOM shows early
    for b in range(0, len(scorable), batch_size):
        chunk = scorable[b : b + batch_size]
        results = token_logprobs([ids[i] for i in chunk])
        if len(results) != len(chunk):
            raise ValueError("token_logprobs returned a wrong number of sequences")
        for i, lp in zip(chunk, results, strict=True):
            lp = np.asarray(lp, dtype=np.float64)
            if lp.shape != (len(ids[i]) - 1,):
                raise ValueError(f"expected {len(ids[i]) - 1} log-probs, got {lp.shape}")
            logprobs[i] = lp
    return perplexities_from_logprobs(logprobs)


def torch_token_logprobs(model, batch: list[list[int]], pad_id: int, device) -> list[np.ndarray]:
    """Log p of tokens 1..n-1 of each sequence under a causal LM (``model(input_ids=...,
    attention_mask=...).logits``), right-padded into one tensor. Padding sits after every real
    token, so a causal model's predictions for real tokens do not depend on it."""
    import torch

    lengths = [len(seq) for seq in batch]
    width = max(lengths)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, seq in enumerate(batch):
        input_ids[r, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[r, : len(seq)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    picked = picked.cpu().numpy().astype(np.float64)
    return [picked[r, : n - 1] for r, n in enumerate(lengths)]


class GPT2Scorer:
    """GPT-2 perplexity (paper: ``gpt2-large``) through ``transformers``, batched.

    ``model`` is a hub name or a local directory; ``local_files_only=True`` (default) never
    touches the network. ``device="auto"`` picks CUDA, then Apple MPS, then CPU. Each sentence is
    scored after GPT-2's ``<|endoftext|>`` token, so all of its t tokens enter Eq. 2.

    ``tokenize`` + ``token_logprobs`` (both or neither) replace the transformers model — for
    tests and for other causal LMs served elsewhere; then nothing is imported.
    """

    def __init__(
        self,
        model: str = "gpt2-large",
        device: str = "auto",
        batch_size: int = 16,
        local_files_only: bool = True,
        *,
        max_tokens: int = 1024,
        tokenize: Callable[[str], list[int]] | None = None,
        token_logprobs: TokenLogProbs | None = None,
        bos_id: int | None = None,
    ) -> None:
        self.model_name = model
        self.batch_size = int(batch_size)
        self.max_tokens = int(max_tokens)
        self.name = f"gpt2:{Path(model).name}" if model else "gpt2"
        if (tokenize is None) != (token_logprobs is None):
            raise ValueError("pass both tokenize and token_logprobs, or neither")
        if tokenize is not None:
            self._tokenize = tokenize
            self._token_logprobs = token_logprobs
            self._bos_id = bos_id
            self.device = device
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "GPT2Scorer needs torch and transformers; install them with "
                f"`{LM_EXTRA_HINT}` (or use NGramScorer offline)"
            ) from exc
        if device == "auto":
            if torch.cuda.is_available():
                device = "cuda"
            elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
                device = "mps"
            else:
                device = "cpu"
        self.device = device
        tok = AutoTokenizer.from_pretrained(model, local_files_only=local_files_only)
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        lm = AutoModelForCausalLM.from_pretrained(
            model, local_files_only=local_files_only, torch_dtype=dtype
        )
        lm.eval().to(device)
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._bos_id = bos
        self.max_tokens = min(self.max_tokens, int(getattr(lm.config, "n_positions", 1024)))

        def tokenize_fn(text: str) -> list[int]:
            return tok(text, add_special_tokens=False)["input_ids"]

        def logprobs_fn(batch: list[list[int]]) -> list[np.ndarray]:
            return torch_token_logprobs(lm, batch, pad, device)

        self._tokenize = tokenize_fn
        self._token_logprobs = logprobs_fn

    def perplexity(self, sentences: Sequence[str]) -> np.ndarray:
        return batched_perplexity(
            sentences,
            self._tokenize,
            self._token_logprobs,
            batch_size=self.batch_size,
            bos_id=self._bos_id,
            max_tokens=self.max_tokens,
        )


__all__ = [
    "GPT2Scorer",
    "LM_EXTRA_HINT",
    "NGramScorer",
    "PAPER_PPL_WINDOW",
    "PAPER_SEMANTIC_KEEP_FRACTION",
    "PerplexityScorer",
    "REJECT_PERPLEXITY_HIGH",
    "REJECT_PERPLEXITY_LOW",
    "REJECT_REASONS",
    "batched_perplexity",
    "calibrate_window",
    "ngram_tokens",
    "perplexities_from_logprobs",
    "perplexity_keep_fraction",
    "torch_token_logprobs",
    "window_rejection",
    "window_rejections",
]
