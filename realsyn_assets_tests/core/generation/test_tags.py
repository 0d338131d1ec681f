"""Tests for core/generation/tags.py: the mined tag vocabulary, tag selection and its cache."""

from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.generation.tags import cached_tag_vocabulary, select_tags, tag_vocabulary


def test_tag_vocabulary_counts_content_words():
    sentences = [
        "The dog runs on the beach.",
        "A dog and a cat!",
        "The dog's ball is red; dog dog dog.",
        "Cat naps on the sofa",
        "An ox is big",  # 'ox' too short
        "Don't go to the beach",  # contraction fragment "don" must not appear
        "",
    ]
    vocab = tag_vocabulary(sentences, size=10, min_count=2)
    # dog in 3 sentences (counted once per sentence), beach 2, cat 2; sorted by count then word
    assert vocab == ["dog", "beach", "cat"]
    assert tag_vocabulary(sentences, size=1, min_count=2) == ["dog"]
    one = tag_vocabulary(sentences, size=100, min_count=1)
    assert "ball" in one and "the" not in one and "ox" not in one and "don" not in one
    assert "sofa" in one and all(w.isalpha() and w.islower() for w in one)
    assert tag_vocabulary(sentences, min_count=1, stopwords=frozenset()) != one


def test_select_tags_ranks_by_similarity():
    words = ["cat", "dog", "car", "tree"]
    tag_vecs = np.eye(4, dtype=np.float32)
    images = np.array(
        [
            [0.9, 0.1, 0.0, 0.4],  # cat > tree > dog
            [0.0, 0.0, 2.0, 0.0],  # unnormalised: car only positive
        ],
        dtype=np.float32,
    )
    assert select_tags(images, tag_vecs, words, k=3) == [
        ["cat", "tree", "dog"],
        ["car", "cat", "dog"],
    ]
    assert select_tags(images, tag_vecs, words, k=2, min_score=0.3) == [["cat", "tree"], ["car"]]
    assert select_tags(images[0], tag_vecs, words, k=10)[0][:2] == ["cat", "tree"]
    assert select_tags(images, tag_vecs, words, k=0) == [[], []]
    assert select_tags(np.zeros((0, 4)), tag_vecs, words) == []


def test_select_tags_ties_and_validation():
    words = ["b", "a", "c"]
    tag_vecs = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    assert select_tags(np.array([[1.0, 0.0]]), tag_vecs, words, k=1) == [["b"]]  # vocab order
    with pytest.raises(ValueError):
        select_tags(np.ones((1, 2)), tag_vecs, ["only-two", "words"])
    with pytest.raises(ValueError):
        select_tags(np.ones((1, 3)), tag_vecs, words)


def test_select_tags_batches_match_single_pass():
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(37, 8)).astype(np.float32)
    tags = rng.normal(size=(20, 8)).astype(np.float32)
    words = [f"t{i}" for i in range(20)]
    assert select_tags(imgs, tags, words, k=4, batch_size=5) == select_tags(imgs, tags, words, k=4)


class _CountingEncoder:
    """A stand-in text encoder: one-hot on the prompt's length, counting its calls."""

    dim = 4

    def __init__(self, identity: str = "enc-a"):
        self.identity = identity
        self.calls = 0

    def encode_texts(self, texts):
        self.calls += 1
        return np.eye(self.dim, dtype=np.float32)[[len(t) % self.dim for t in texts]]


def test_cached_tag_vocabulary_encodes_once_per_key(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sentences = tmp_path / "members.parquet"
    pq.write_table(
        pa.table({"text": ["a dog on a beach", "dog and cat", "a cat on a beach"]}), sentences
    )
    cache = tmp_path / "cache"
    enc = _CountingEncoder()
    vocab, vecs = cached_tag_vocabulary(sentences, cache, enc, "a photo of {}", 10)
    assert vocab == tag_vocabulary(["a dog on a beach", "dog and cat", "a cat on a beach"], 10)
    assert vecs.shape == (len(vocab), 4) and vecs.dtype == np.float32
    again = cached_tag_vocabulary(sentences, cache, enc, "a photo of {}", 10)
    assert enc.calls == 1 and again[0] == vocab
    np.testing.assert_array_equal(again[1], vecs)
    assert len(list(cache.glob("tags-*"))) == 2  # words (.json) and vectors (.npy)
    # another encoder identity: a new key, and the earlier cache is removed
    other = _CountingEncoder("enc-b")
    cached_tag_vocabulary(sentences, cache, other, "a photo of {}", 10)
    assert other.calls == 1 and len(list(cache.glob("tags-*"))) == 2
    # an empty vocabulary is not encoded at all
    empty, empty_vecs = cached_tag_vocabulary(sentences, cache, other, "a photo of {}", 0)
    assert empty == [] and empty_vecs.shape == (0, 4) and other.calls == 1
