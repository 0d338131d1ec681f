"""Pair mining from page order, re-selection, and ground-truth retrieval precision."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from realsyn_assets.core.embedding.bootstrap.pairs import mine_pairs, reselect_pairs
from realsyn_assets.core.training.clip import TrainSample
from realsyn_assets.demo.scoring import label_precision, retrieval_precision


def _tables():
    items = pa.table(
        {
            "doc_id": ["d1"] * 6 + ["d2"] * 2,
            "position": [0, 1, 2, 3, 4, 5, 0, 1],
            "kind": ["text", "image", "image", "text", "text", "image", "image", "text"],
        }
    )
    images = pa.table(
        {
            "image_id": ["a", "b", "c", "e"],
            "doc_id": ["d1", "d1", "d1", "d2"],
            "position": [1, 2, 5, 0],
            "path": ["a.jpg", "b.jpg", "c.jpg", "e.jpg"],
        }
    )
    sentences = pa.table(
        {
            "doc_id": ["d1", "d1", "d1", "d1"],
            "position": [0, 3, 3, 4],
            "text": ["zero", "three-a", "three-b", "four"],
        }
    )
    return items, images, sentences


def test_mine_pairs_uses_nearest_text_blocks_skipping_images():
    items, images, sentences = _tables()
    pairs = {s.image_path: s.texts for s in mine_pairs(items, images, sentences, window=1)}
    # image at 1: text 0 (distance 1) then text 3 (distance 2); image at 2: text 3 then text 0
    assert pairs["a.jpg"] == ["zero", "three-a", "three-b"]
    assert pairs["b.jpg"] == ["three-a", "three-b", "zero"]
    # image at 5: only a text before it (4)
    assert pairs["c.jpg"] == ["four"]
    # d2's text block has no kept sentence: no pair
    assert "e.jpg" not in pairs
    wider = {s.image_path: s.texts for s in mine_pairs(items, images, sentences, window=2)}
    assert wider["c.jpg"] == ["four", "three-a", "three-b"]


class _FakeEncoder:
    """Image i points along axis i; a text points along the axis named by its first char."""

    def encode_images(self, paths):
        return np.eye(4, dtype=np.float32)[[int(p[0]) for p in paths]]

    def encode_texts(self, texts):
        return np.eye(4, dtype=np.float32)[[int(t[0]) for t in texts]]


def test_reselect_keeps_the_best_matching_candidate():
    samples = [TrainSample("0.jpg", ["1 x", "0 y", "2 z"]), TrainSample("3.jpg", ["3 w", "1 v"])]
    chosen = reselect_pairs(_FakeEncoder(), samples, keep=1)
    assert [s.texts for s in chosen] == [["0 y"], ["3 w"]]
    assert [s.image_path for s in chosen] == ["0.jpg", "3.jpg"]


def test_precision_counts_only_labelled_images_and_missing_texts_as_misses():
    concept = {"i1": "red", "i2": "blue", "i3": None}
    sentence = {"s_red": "red", "s_blue": "blue"}

    def describes(image, text):
        return sentence.get(text) == concept[image] and concept[image] is not None

    def labelled(image):
        return concept[image] is not None

    scores = retrieval_precision(
        ["i1", "i2", "i3"],
        [["s_red", "s_blue"], ["s_red", None], ["s_red", "s_red"]],
        describes,
        labelled,
    )
    assert scores["images_scored"] == 2
    assert scores["precision_text1"] == 0.5 and scores["precision_text2"] == 0.0
    assert scores["precision_all"] == 0.25
    samples = [TrainSample("p1", ["s_red", "s_blue"]), TrainSample("p2", ["s_blue"])]
    paths = {"p1": "i1", "p2": "i2"}
    assert label_precision(samples, paths.__getitem__, describes, labelled, lambda t: t) == 2 / 3


def test_trimmed_text_encoding_equals_full_context():
    import open_clip
    import torch

    from realsyn_assets.core.embedding.configs import register_model_configs
    from realsyn_assets.core.embedding.encoder import encode_text_trimmed

    register_model_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("realsyn-tiny").eval()
    tokens = open_clip.get_tokenizer("realsyn-tiny")(
        ["a red circle.", "two blue squares on the sand."]
    )
    with torch.no_grad():
        full = model.encode_text(tokens)
        short = encode_text_trimmed(model, tokens)
    assert torch.allclose(full, short, atol=1e-5)


def test_mil_loss_is_clip_loss_with_one_candidate_and_prefers_a_matching_candidate():
    import open_clip
    import torch

    from realsyn_assets.core.embedding.bootstrap.trainer import mil_nce_loss

    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    logits = 10.0 * img @ txt.T
    clip = open_clip.ClipLoss()(img, txt, torch.tensor(10.0))
    assert torch.allclose(mil_nce_loss(logits, torch.eye(6, dtype=torch.bool)), clip, atol=1e-5)
    # image 0 gets a second candidate: a copy of its own vector (a text that describes it)
    extra = torch.cat([txt, img[:1]])
    member = torch.cat([torch.eye(6, dtype=torch.bool), torch.zeros(6, 1, dtype=torch.bool)], 1)
    member[0, 6] = True
    with_match = mil_nce_loss(10.0 * img @ extra.T, member)
    # the same bag, but the extra candidate points away from image 0
    away = torch.cat([txt, -img[:1]])
    with_noise = mil_nce_loss(10.0 * img @ away.T, member)
    assert with_match < with_noise


class _FakeTrainer(_FakeEncoder):
    """Records what each round trains on."""

    def __init__(self):
        self.seen = []

    def fit(self, pairs, epochs, objective="mil", log=None):
        self.seen.append([list(s.texts) for s in pairs])
        return [1.0, 0.5]


def test_rounds_train_on_mined_then_reselected_or_retrieved_pairs():
    from realsyn_assets.core.embedding.bootstrap.rounds import RoundPlan, run_rounds

    samples = [TrainSample("0.jpg", ["1 x", "0 y"]), TrainSample("3.jpg", ["3 w", "1 v"])]
    corpus = ["2 a", "0 b", "3 c"]
    trainer = _FakeTrainer()
    results = run_rounds(
        trainer,
        samples,
        [
            RoundPlan(epochs=2),
            RoundPlan(epochs=1, select="reselect"),
            RoundPlan(epochs=1, select="retrieved"),
            RoundPlan(epochs=1, select="reselect+retrieved"),
        ],
        corpus_texts=corpus,
    )
    assert trainer.seen[0] == [["1 x", "0 y"], ["3 w", "1 v"]]
    assert trainer.seen[1] == [["0 y"], ["3 w"]]
    assert trainer.seen[2] == [["0 b"], ["3 c"]]
    assert trainer.seen[3] == [["0 y", "0 b"], ["3 w", "3 c"]]
    assert [len(r.losses) for r in results] == [2, 2, 2, 2]


def test_round_plans_and_subsampled_pairs():
    from realsyn_assets.core.embedding.bootstrap.pairs import subsample_pairs
    from realsyn_assets.core.embedding.bootstrap.rounds import RoundPlan, round_plans

    assert round_plans(80, "mil", rounds=0) == [RoundPlan(80, "mil")]
    assert round_plans(80, "sample", 3, 30, "retrieved", 2) == [
        RoundPlan(80, "sample"),
        RoundPlan(30, "sample", "retrieved", 2),
        RoundPlan(30, "sample", "retrieved", 2),
    ]
    samples = [TrainSample(f"{i}.jpg", [f"t{i}"]) for i in range(10)]
    assert subsample_pairs(samples, 0, seed=0) == samples
    assert subsample_pairs(samples, 20, seed=0) == samples
    subset = subsample_pairs(samples, 4, seed=0)
    assert len(subset) == 4 and subset == sorted(subset, key=samples.index)
    assert subset == subsample_pairs(samples, 4, seed=0)


def test_in_document_baseline_and_retrieval_scores():
    from realsyn_assets.core.embedding.bootstrap.pairs import nearest_sentence_ids
    from realsyn_assets.core.embedding.bootstrap.run import evaluate_retrieval
    from realsyn_assets.core.ids import sentence_id

    samples = [TrainSample("0.jpg", ["1 x", "0 y"])]
    assert nearest_sentence_ids(samples, ["0.jpg", "3.jpg"]) == [[sentence_id("1 x")], [None]]
    sentences = pa.table(
        {
            "sentence_id": ["s0", "s1", "s2", "s3"],
            "doc_id": ["d0", "d1", "d0", "d3"],
            "text": ["0 a", "1 b", "2 c", "3 d"],
        }
    )
    rows = [
        {"image_id": "i0", "doc_id": "d0", "path": "0.jpg"},
        {"image_id": "i3", "doc_id": "d9", "path": "3.jpg"},
    ]
    seen = []

    def score(image_ids, retrieved):
        seen.append((image_ids, [r[0] for r in retrieved]))
        return {"precision_text1": 0.5}

    scores = evaluate_retrieval(_FakeEncoder(), rows, sentences, score)
    assert scores == {"top1_same_document": 0.5, "precision_text1": 0.5}
    assert seen == [(["i0", "i3"], ["s0", "s3"])]
    assert evaluate_retrieval(_FakeEncoder(), rows, sentences) == {"top1_same_document": 0.5}
