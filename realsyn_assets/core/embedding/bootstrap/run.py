"""One whole bootstrap run, as the ``bootstrap_encoder`` asset does it: mined pairs in; a
checkpoint, its loss curve and retrieval scores of the trained model and of random weights out.

Retrieval is scored on a fixed random sample of images, exactly (top 3 over every kept
sentence): without ground truth by how often the top sentence comes from the image's own
document; a ``score`` callback (ground truth on the demo corpus) can add its own figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from realsyn_assets.core.embedding.bootstrap.pairs import subsample_pairs
from realsyn_assets.core.embedding.bootstrap.rounds import RoundPlan, RoundResult, run_rounds
from realsyn_assets.core.embedding.bootstrap.trainer import BootstrapTrainer
from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec
from realsyn_assets.core.embedding.runtime import checkpoint_bytes
from realsyn_assets.core.io import ensure_free_space
from realsyn_assets.core.retrieval.search import retrieve_exact
from realsyn_assets.core.training.clip import (
    CHECKPOINT_NAME,
    LOSS_PLOT_NAME,
    TrainConfig,
    TrainSample,
    save_loss_plot,
)

# Fewer mined pairs than this cannot train a contrastive model.
MIN_PAIRS = 8

Score = Callable[[list[str], list[list[str | None]]], dict[str, float]]
"""(image ids, retrieved sentence ids per image; None = no sentence) -> named scores."""


def sample_rows(rows: Sequence[dict], n: int, seed: int) -> list[dict]:
    """``n`` rows drawn without replacement (all of them when fewer), in their original order."""
    rng = np.random.default_rng(seed)
    return [rows[i] for i in sorted(rng.choice(len(rows), min(n, len(rows)), replace=False))]


def evaluate_retrieval(
    encoder, image_rows: Sequence[dict], sentences: pa.Table, score: Score | None = None
) -> dict[str, float]:
    """Top-1..3 exact retrieval over every kept sentence for a sample of images.

    ``top1_same_document``: share of images whose top sentence comes from their own document;
    with ``score``, also what it says about the retrieved sentence ids.
    """
    texts = sentences.column("text").to_pylist()
    ids = sentences.column("sentence_id").to_pylist()
    doc_ids = sentences.column("doc_id").to_pylist()
    image_vecs = encoder.encode_images([r["path"] for r in image_rows])
    result = retrieve_exact(image_vecs, encoder.encode_texts(texts), k=3)
    same_doc = float(
        np.mean(
            [
                doc_ids[i] == r["doc_id"]
                for i, r in zip(result.indices[:, 0], image_rows, strict=True)
            ]
        )
    )
    scores = {"top1_same_document": same_doc}
    if score is not None:
        retrieved = [[ids[i] if i >= 0 else None for i in row] for row in result.indices]
        scores.update(score([r["image_id"] for r in image_rows], retrieved))
    return scores


@dataclass
class BootstrapRun:
    """What a bootstrap run trained on, what it wrote, and the scores of its intermediate models."""

    samples: list[TrainSample]  # the mined pairs it trained on (after subsampling)
    eval_rows: list[dict]  # the images retrieval is scored on (image_id, doc_id, path)
    results: list[RoundResult]
    round_scores: dict[int, dict[str, float]]  # round -> score of its model (all but the last)
    checkpoint: Path
    loss_plot: Path

    @property
    def losses(self) -> list[float]:
        return [x for r in self.results for x in r.losses]

    @property
    def seconds(self) -> float:
        return float(sum(r.seconds for r in self.results))

    def first_round_loss(self) -> tuple[float, float]:
        """Mean loss over the first and the last tenth of round 1's steps: the contrastive
        objective on the raw mined pairs, before any re-selection."""
        losses = self.losses
        first_round = np.asarray(losses[: len(self.results[0].losses)] or losses)
        tenth = max(1, len(first_round) // 10)
        return float(first_round[:tenth].mean()), float(first_round[-tenth:].mean())


def train_bootstrap(
    samples: Sequence[TrainSample],
    images: pa.Table,
    sentences: pa.Table,
    plans: Sequence[RoundPlan],
    config: TrainConfig,
    out_dir: Path,
    *,
    augment: str,
    max_pairs: int,
    eval_images: int,
    log: Callable[[str], None],
    score: Score | None = None,
) -> BootstrapRun:
    """Train on the mined ``samples`` round after round; write checkpoint.pt and loss.png.

    ``images`` (image_id, doc_id, path) and ``sentences`` (sentence_id, doc_id, text): the kept
    ones; ``eval_images`` of the images are scored, and the trainer decodes them next to the
    training images. With ``score``, the model after each round but the last is scored too.
    """
    samples = subsample_pairs(samples, max_pairs, config.seed)
    rows = sample_rows(images.to_pylist(), eval_images, config.seed)
    paths = list(dict.fromkeys([s.image_path for s in samples] + [r["path"] for r in rows]))
    trainer = BootstrapTrainer(paths, config, augment=augment)
    ensure_free_space(Path(out_dir) / CHECKPOINT_NAME, checkpoint_bytes(trainer.model))
    round_scores: dict[int, dict[str, float]] = {}

    def after_round(index: int, result: RoundResult) -> None:
        log(
            f"round {index}: {len(result.pairs)} pairs, {len(result.losses)} steps in "
            f"{result.seconds:.0f}s, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}"
        )
        if score is not None and index < len(plans):
            round_scores[index] = evaluate_retrieval(trainer, rows, sentences, score)

    results = run_rounds(
        trainer,
        samples,
        plans,
        corpus_texts=sentences.column("text").to_pylist(),
        log=log,
        after_round=after_round,
    )
    losses = [x for r in results for x in r.losses]
    checkpoint = trainer.save(out_dir, losses)
    title = f"{config.model_name}: {len(plans)} rounds, {len(losses)} steps"
    loss_plot = save_loss_plot(losses, Path(out_dir) / LOSS_PLOT_NAME, title)
    return BootstrapRun(samples, rows, results, round_scores, checkpoint, loss_plot)


def evaluate_against_random(
    run: BootstrapRun,
    config: TrainConfig,
    weights_dir: Path,
    sentences: pa.Table,
    score: Score | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Retrieval scores of the saved checkpoint and of random weights of the same model, loaded
    the way the encoder resource loads them."""
    random_spec = EncoderSpec(model_name=config.model_name, device=config.device)
    trained = Encoder(replace(random_spec, checkpoint=str(run.checkpoint)), weights_dir)
    random = Encoder(random_spec, weights_dir)
    after = evaluate_retrieval(trained, run.eval_rows, sentences, score)
    before = evaluate_retrieval(random, run.eval_rows, sentences, score)
    return after, before
