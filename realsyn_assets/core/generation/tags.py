"""Open-set tags, a stand-in for RAM++: a tag vocabulary mined from the sentence corpus and
similarity-ranked tag selection from image and tag-prompt embeddings."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from realsyn_assets.core.io import atomic_write_bytes, read_table, save_npy

# Lowercase words, with an optional apostrophe part ("dog's", "don't").
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")

# Function words plus very common words that make poor visual tags.
DEFAULT_STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all almost along also although always am among an and
    another any anyone anything are around as at away back be because been before being below
    between both but by can cannot could did didn do does doesn doing don done down during each
    either else enough even ever every few for from further get gets getting got had hadn has
    hasn have haven having he her here hers herself him himself his how however i if in into is
    isn it its itself just least less let like made make makes many may me might mine more most
    much must my myself near need never new next no nor not now of off often on once one only
    onto or other others our ours ourselves out over own per perhaps please quite rather really
    said same say says see seen shall she should shouldn since so some something sometimes still
    such than that the their theirs them themselves then there these they thing things this
    those though through thus to too toward towards under until up upon us use used using very
    via was wasn way we well were weren what whatever when where whether which while who whom
    whose why will with within without won would wouldn yet you your yours yourself yourselves
    ll ve re aren couldn mustn needn shan
    also amp nbsp http https www com html click read today yesterday tomorrow year years day days
    time times week weeks month months lot lots part first last good great best better
    """.split()
)


def tag_vocabulary(
    sentences: Iterable[str],
    size: int = 8000,
    min_count: int = 2,
    stopwords: frozenset[str] = DEFAULT_STOPWORDS,
) -> list[str]:
    """Most frequent content words of a corpus, as an open-set tag vocabulary.

    The paper widens RAM++'s 4,000 tags with 4,000 more "derived from real-world sentences"
    (method unstated). Here the whole vocabulary is mined from the sentence corpus: lowercase
    alphabetic words of length >= 3, not stopwords, counted once per sentence (so one rambling
    sentence cannot promote a word), seen in >= `min_count` sentences, ties broken alphabetically
    so the result is deterministic.
    """
    counts: Counter[str] = Counter()
    for sentence in sentences:
        if not sentence:
            continue
        words = set()
        for word in WORD.findall(str(sentence).lower()):
            if "'" in word:
                if not word.endswith("'s"):
                    continue  # contraction fragment
                word = word[:-2]
            if len(word) >= 3 and word not in stopwords:
                words.add(word)
        counts.update(words)
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ranked[: max(0, size)]


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def select_tags(
    image_vecs: np.ndarray,
    tag_vecs: np.ndarray,
    tag_words: Sequence[str],
    k: int = 5,
    min_score: float | None = None,
    *,
    batch_size: int = 4096,
) -> list[list[str]]:
    """Top-k tags per image by cosine similarity between image and tag-text embeddings.

    An open-set tagger stand-in for RAM++: embed each vocabulary word with the text tower once,
    then rank per image. Vectors are (re-)normalised so cosine == dot; ties break by vocabulary
    order; `min_score` drops weak tags (an image may get fewer than k, or none).
    """
    img = np.asarray(image_vecs, dtype=np.float32)
    if img.ndim == 1:
        img = img[None, :]
    tv = np.asarray(tag_vecs, dtype=np.float32)
    if tv.ndim != 2 or tv.shape[0] != len(tag_words):
        raise ValueError(f"tag_vecs has shape {tv.shape} but there are {len(tag_words)} tag words")
    if img.shape[0] == 0:
        return []
    if tv.shape[0] == 0 or k <= 0:
        return [[] for _ in range(img.shape[0])]
    if img.shape[1] != tv.shape[1]:
        raise ValueError(f"dimension mismatch: images {img.shape[1]} vs tags {tv.shape[1]}")
    tv = _l2(tv)
    k_eff = min(k, tv.shape[0])
    out: list[list[str]] = []
    for start in range(0, img.shape[0], batch_size):
        sims = _l2(img[start : start + batch_size]) @ tv.T
        # k-th best score per row; every tag scoring at least that is a candidate, so ties at
        # the cut are resolved by vocabulary order rather than by argpartition's whim.
        kth = -np.partition(-sims, k_eff - 1, axis=1)[:, k_eff - 1]
        for row, cut in zip(sims, kth, strict=True):
            cand = np.flatnonzero(row >= cut)
            order = cand[np.lexsort((cand, -row[cand]))][:k_eff]
            if min_score is not None:
                order = order[row[order] >= min_score]
            out.append([tag_words[j] for j in order])
    return out


class TextEncoder(Protocol):
    """What the tag vocabulary needs of an encoder: its identity, width and text tower."""

    @property
    def identity(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def cached_tag_vocabulary(
    sentences_file: Path,
    cache_dir: Path,
    encoder: TextEncoder,
    prompt: str,
    size: int,
    user_tags: Sequence[str] = (),
) -> tuple[list[str], np.ndarray]:
    """The tag vocabulary mined from the `text` column of `sentences_file` (parquet) and the
    embeddings of its prompts (`prompt.format(tag)`).

    Identical for every shard of one clustering and encoder, and encoding up to 8,000 prompts
    costs more than tagging a shard: computed once and cached in `cache_dir` under a key of
    (sentences file hash, encoder identity, prompt, size, user tags); caches of earlier keys
    are removed. `user_tags` (a user's list, e.g. RAM++'s) come first, mined words fill the rest.
    """
    from realsyn_assets.core.embedding.encoder import file_sha1
    from realsyn_assets.core.generation.tagging import merge_vocabulary

    ident = f"{file_sha1(sentences_file)}|{encoder.identity}|{prompt}|{size}"
    if user_tags:
        ident += "|" + json.dumps(list(user_tags))
    key = hashlib.sha1(ident.encode()).hexdigest()[:16]
    cache = cache_dir / f"tags-{key}"
    words_file, vecs_file = cache.with_suffix(".json"), cache.with_suffix(".npy")
    if words_file.is_file() and vecs_file.is_file():
        return json.loads(words_file.read_text()), np.load(vecs_file)
    members = read_table(sentences_file, columns=["text"])
    mined = tag_vocabulary(members.column("text").to_pylist(), size=size)
    vocab = merge_vocabulary(user_tags, mined, size)
    vecs = (
        encoder.encode_texts([prompt.format(w) for w in vocab])
        if vocab
        else np.zeros((0, encoder.dim), np.float32)
    )
    save_npy(np.asarray(vecs, np.float32), vecs_file)
    atomic_write_bytes(words_file, json.dumps(vocab).encode())
    for stale in cache.parent.glob("tags-*"):  # earlier clusterings / encoders
        if stale.stem != cache.name:
            stale.unlink(missing_ok=True)
    return vocab, vecs
