from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.core.evaluation import (
    chance_recall,
    chance_recall_t2i,
    retrieval_recall,
    zero_shot_accuracy,
)


def _hand_case():
    images = np.eye(3, dtype=np.float32)
    texts = np.array(
        [
            [1.0, 0.0, 0.0],  # text 0 -> image 0
            [0.8, 0.6, 0.0],  # text 1 -> image 1 (closer to image 0 than to image 1)
            [0.0, 0.6, 0.8],  # text 2 -> image 2
            [0.6, 0.0, 0.8],  # text 3 -> image 2
        ],
        dtype=np.float32,
    )
    owner = np.array([0, 1, 2, 2])
    return images, texts, owner


def test_retrieval_recall_hand_computed():
    images, texts, owner = _hand_case()
    r = retrieval_recall(images, texts, owner, ks=(1, 2))
    # i2t: image 1's own text scores 0.6, tied with text 2 -> rank 1 (ties count against).
    assert r["i2t_R@1"] == pytest.approx(2 / 3)
    assert r["i2t_R@2"] == pytest.approx(1.0)
    # t2i: text 1 prefers image 0 (0.8) over its own image 1 (0.6).
    assert r["t2i_R@1"] == pytest.approx(3 / 4)
    assert r["t2i_R@2"] == pytest.approx(1.0)
    assert set(r) == {"i2t_R@1", "i2t_R@2", "t2i_R@1", "t2i_R@2"}


def test_images_without_texts_are_left_out_of_i2t():
    images = np.eye(3, dtype=np.float32)
    texts = np.eye(3, dtype=np.float32)[:2]
    r = retrieval_recall(images, texts, np.array([0, 1]), ks=(1,))
    assert r["i2t_R@1"] == 1.0  # image 2 has no text and is not counted as a miss
    assert r["t2i_R@1"] == 1.0


def test_collapsed_embeddings_score_zero_not_perfect():
    images = np.ones((4, 8), dtype=np.float32)
    texts = np.ones((4, 8), dtype=np.float32)
    r = retrieval_recall(images, texts, np.arange(4), ks=(1, 3, 4))
    assert r["i2t_R@1"] == 0.0 and r["t2i_R@1"] == 0.0
    assert r["i2t_R@3"] == 0.0 and r["t2i_R@3"] == 0.0
    assert r["i2t_R@4"] == 1.0 and r["t2i_R@4"] == 1.0  # k >= candidates always hits


def _naive(images, texts, owner, k):
    sims = images @ texts.T
    i2t = np.mean(
        [
            np.isin(np.argsort(-sims[i])[:k], np.where(owner == i)[0]).any()
            for i in range(len(images))
        ]
    )
    t2i = np.mean([owner[j] in np.argsort(-sims[:, j])[:k] for j in range(len(texts))])
    return i2t, t2i


def test_chunked_computation_matches_naive_ranking():
    rng = np.random.default_rng(1)
    n = 1100  # more than one chunk of 1024
    images = rng.normal(size=(n, 16)).astype(np.float32)
    owner = np.repeat(np.arange(n), 2)
    texts = (images[owner] + rng.normal(scale=2.0, size=(2 * n, 16))).astype(np.float32)
    r = retrieval_recall(images, texts, owner, ks=(1, 5))
    for k in (1, 5):
        i2t, t2i = _naive(images, texts, owner, k)
        assert r[f"i2t_R@{k}"] == pytest.approx(i2t)
        assert r[f"t2i_R@{k}"] == pytest.approx(t2i)
    assert 0.05 < r["t2i_R@5"] < 0.95  # a non-trivial case


def test_random_embeddings_give_chance_recall():
    # averaged over 20 draws so the tolerance can be tight relative to chance itself
    n, m, draws = 100, 2, 20
    owner = np.repeat(np.arange(n), m)
    totals: dict[str, float] = {}
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        images = rng.normal(size=(n, 32)).astype(np.float32)
        texts = rng.normal(size=(n * m, 32)).astype(np.float32)
        for key, v in retrieval_recall(images, texts, owner, ks=(1, 5, 10)).items():
            totals[key] = totals.get(key, 0.0) + v / draws
    for k in (1, 5, 10):
        i2t_chance, t2i_chance = chance_recall(n, m, k), chance_recall_t2i(n, k)
        assert abs(totals[f"i2t_R@{k}"] - i2t_chance) < 0.3 * i2t_chance + 0.002
        assert abs(totals[f"t2i_R@{k}"] - t2i_chance) < 0.3 * t2i_chance + 0.002
    # and a real signal is far above chance
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, 32)).astype(np.float32)
    aligned = retrieval_recall(images, images[owner], owner)
    assert aligned["i2t_R@1"] == 1.0 and aligned["t2i_R@1"] == 1.0


def test_chance_recall_hand_values():
    assert chance_recall(10, 1, 1) == pytest.approx(0.1)
    assert chance_recall(10, 1, 10) == 1.0
    assert chance_recall(2, 2, 1) == pytest.approx(0.5)  # 2 of 4 texts are the image's
    assert chance_recall(2, 2, 2) == pytest.approx(1 - (2 / 4) * (1 / 3))
    assert chance_recall(2, 2, 3) == 1.0
    values = [chance_recall(100, 5, k) for k in (1, 5, 10)]
    assert values == sorted(values) and values[0] == pytest.approx(5 / 500)
    assert chance_recall_t2i(100, 5) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        chance_recall(0, 1, 1)


def test_i2t_recall_is_an_own_text_among_the_exact_top_k():
    """The caption benchmark's reading of i2t R@k: one of the image's own texts is among its k
    nearest texts (exact search)."""
    from realsyn_assets.core.retrieval.search import retrieve_exact

    rng = np.random.default_rng(7)
    n, m = 60, 5
    owner = np.repeat(np.arange(n), m)
    images = rng.normal(size=(n, 16)).astype(np.float32)
    texts = rng.normal(size=(n * m, 16)).astype(np.float32) + 0.8 * images[owner]
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    recall = retrieval_recall(images, texts, owner, ks=(1, 5, 10))
    for k in (1, 5, 10):
        top = retrieve_exact(images, texts, k=k).indices
        own = (owner[top] == np.arange(n)[:, None]).any(axis=1)
        assert recall[f"i2t_R@{k}"] == float(own.mean())
    assert 0.0 < recall["i2t_R@1"] < recall["i2t_R@10"] < 1.0  # a non-trivial case


def test_zero_shot_accuracy():
    classes = np.eye(3, dtype=np.float32)
    images = np.array([[1, 0.1, 0], [0.2, 0.9, 0], [0, 1, 0.5], [0.1, 0, 0.8]], dtype=np.float32)
    assert zero_shot_accuracy(images, classes, np.array([0, 1, 1, 2])) == 1.0
    assert zero_shot_accuracy(images, classes, np.array([0, 1, 2, 2])) == pytest.approx(0.75)
    assert zero_shot_accuracy(images, classes, np.array([1, 0, 2, 0])) == 0.0


def test_shape_errors_are_clear():
    images, texts, owner = _hand_case()
    with pytest.raises(ValueError, match="text_to_image"):
        retrieval_recall(images, texts, owner[:3])
    with pytest.raises(ValueError, match="outside"):
        retrieval_recall(images, texts, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="dims"):
        retrieval_recall(images, texts[:, :2], owner)
    with pytest.raises(ValueError, match="labels"):
        zero_shot_accuracy(images, np.eye(3), np.array([0, 1]))
