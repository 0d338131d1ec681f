"""The offline captioner learns captions that depend on the image vector, saves and loads
without pickle, and is reproducible; `caption_pairs` picks each image's most similar nearby
sentence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from realsyn_assets.core.generation.offline_captioner import (
    MODEL_PREFIX,
    OFFLINE_CAPTIONER_FILE,
    caption_pairs,
    caption_sample,
    detokenize,
    distinct_share,
    load_offline_captioner,
    noise_vectors,
    text_pairs,
    tokenize,
    train_offline_captioner,
)

COLOURS = ["red", "blue", "green", "yellow", "purple"]
SHAPES = ["circle", "square", "star", "ring"]
TEMPLATES = ["A {c} {s} on the grass.", "Here you can see a {c} {s}.", "One {c} {s} floats by."]
FAST = {
    "min_steps": 0,
    "epochs": 60,
    "hidden_dim": 64,
    "embed_dim": 32,
    "batch_size": 16,
    "lr": 1e-2,
}


@dataclass(frozen=True)
class Item:
    image_path: Path
    vector: np.ndarray | None


def _synthetic_set(n_per_concept: int = 3, dim: int = 32, seed: int = 0):
    """Image "embeddings": a fixed random projection of (colour, shape) one-hots plus noise;
    each paired with a sentence naming both."""
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((len(COLOURS) + len(SHAPES), dim))
    vecs, texts, concepts = [], [], []
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            for k in range(n_per_concept):
                onehot = np.zeros(len(COLOURS) + len(SHAPES))
                onehot[ci] = onehot[len(COLOURS) + si] = 1.0
                v = onehot @ projection + 0.1 * rng.standard_normal(dim)
                vecs.append(v / np.linalg.norm(v))
                texts.append(TEMPLATES[k % len(TEMPLATES)].format(c=colour, s=shape))
                concepts.append((colour, shape))
    return np.asarray(vecs, np.float32), texts, concepts


def _names_rate(captions, concepts) -> float:
    hits = [
        c in tokenize(cap) and s in tokenize(cap)
        for cap, (c, s) in zip(captions, concepts, strict=True)
    ]
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def trained():
    vecs, texts, concepts = _synthetic_set()
    return train_offline_captioner(vecs, texts, seed=0, **FAST), vecs, texts, concepts


def test_trained_captions_name_the_concept_and_beat_random_weights(trained):
    model, vecs, _, concepts = trained
    captions = model.caption_vectors(vecs)
    untrained = train_offline_captioner(
        vecs, [*_synthetic_set()[1]], seed=0, **{**FAST, "epochs": 0}
    )
    assert _names_rate(captions, concepts) >= 0.9
    assert _names_rate(untrained.caption_vectors(vecs), concepts) <= 0.2
    assert distinct_share(captions) >= 0.3  # 20 concepts among 60 images
    assert model.backend == "offline" and model.model.startswith(MODEL_PREFIX)


def test_changing_the_vector_changes_the_caption(trained):
    model, vecs, _, concepts = trained
    red_circle, blue_star = concepts.index(("red", "circle")), concepts.index(("blue", "star"))
    first, second = model.caption(
        [Item(Path("/a.jpg"), vecs[red_circle]), Item(Path("/b.jpg"), vecs[blue_star])]
    )
    assert first != second
    assert "red" in tokenize(first) and "circle" in tokenize(first)
    assert "blue" in tokenize(second) and "star" in tokenize(second)
    noise = model.caption_vectors(noise_vectors(len(vecs), vecs.shape[1], seed=1))
    assert sum(a != b for a, b in zip(model.caption_vectors(vecs), noise, strict=True)) > 30


def test_save_load_round_trip_same_captions_and_bytes(trained, tmp_path):
    model, vecs, _, _ = trained
    path = model.save(tmp_path / OFFLINE_CAPTIONER_FILE)
    blob = torch.load(path, weights_only=True)  # plain tensors and containers, no pickled class
    assert set(blob) == {"format", "meta", "state"}
    loaded = load_offline_captioner(tmp_path)  # the folder works as well as the file
    assert loaded.caption_vectors(vecs) == model.caption_vectors(vecs)
    assert loaded.model == model.model
    loaded.save(tmp_path / "again.pt")
    assert (tmp_path / "again.pt").read_bytes() == path.read_bytes()


def test_same_seed_same_bytes_other_seed_other_model(trained):
    model, vecs, texts, _ = trained
    again = train_offline_captioner(vecs, texts, seed=0, **FAST)
    assert again.to_bytes() == model.to_bytes()
    other = train_offline_captioner(vecs, texts, seed=1, **{**FAST, "epochs": 2})
    assert other.model != model.model


def test_bad_inputs_are_clear_errors(trained, tmp_path):
    model, vecs, texts, _ = trained
    with pytest.raises(ValueError, match="needs the image's embedding"):
        model.caption([Item(Path("/x.jpg"), None)])
    with pytest.raises(ValueError, match="trained on 32-d"):
        model.caption_vectors(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="need n > 0"):
        train_offline_captioner(vecs[:3], texts[:2])
    with pytest.raises(FileNotFoundError, match="materialize image_captioner"):
        load_offline_captioner(tmp_path)
    (tmp_path / OFFLINE_CAPTIONER_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):  # noqa: B017 - torch's own error for a non-archive
        load_offline_captioner(tmp_path)
    assert model.caption([]) == []


def test_tokens_round_trip():
    assert tokenize("Two cherry-red Pyramids, drifting!") == [
        "two",
        "cherry-red",
        "pyramids",
        ",",
        "drifting",
        "!",
    ]
    assert detokenize(["two", "red", "discs", ",", "drifting", "."]) == "Two red discs, drifting."


def test_caption_pairs_keep_the_most_similar_nearby_sentence():
    items = pa.table(
        {
            "doc_id": ["d"] * 4,
            "position": [0, 1, 2, 3],
            "kind": ["text", "image", "text", "image"],
        }
    )
    images = pa.table(
        {
            "image_id": ["img_a", "img_b"],
            "doc_id": ["d", "d"],
            "position": [1, 3],
            "path": ["a.jpg", "b.jpg"],
        }
    )
    sentences = pa.table(
        {
            "doc_id": ["d", "d", "d"],
            "position": [0, 2, 2],
            "text": ["A red circle.", "A blue star.", "Nothing to see."],
        }
    )
    e = np.eye(3, dtype=np.float32)
    image_vecs = np.stack([e[0], e[1]])  # a ~ "red circle", b ~ "blue star"
    sentence_vecs = e  # each sentence its own direction
    vecs, texts, ids = caption_pairs(items, images, image_vecs, sentences, sentence_vecs)
    assert ids == ["img_a", "img_b"]
    assert texts == ["A red circle.", "A blue star."]
    assert np.array_equal(vecs, image_vecs)
    extra_vecs, extra = text_pairs(sentences, sentence_vecs, limit=2, seed=0)
    assert len(extra) == 2 and len(set(extra)) == 2 and extra_vecs.shape == (2, 3)
    assert text_pairs(sentences, sentence_vecs, limit=0, seed=0)[1] == []


def test_caption_sample_is_spread_and_stable():
    ids = [f"i{k}" for k in range(10)]
    picked, rows = caption_sample(ids, 4)
    assert picked == ["i0", "i3", "i6", "i9"] and list(rows) == [0, 3, 6, 9]
    assert caption_sample(ids, 50)[0] == ids
    assert caption_sample([], 5)[0] == []
