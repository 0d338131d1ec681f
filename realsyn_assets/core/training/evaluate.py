"""Held-out evaluation of a trained CLIP checkpoint against the same architecture untrained
(paper §4): image<->text retrieval recall and, where images carry a concept, zero-shot accuracy.

Comparing with the untrained model shows what training on the subset bought, independent of the
eval set's size and difficulty.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec
from realsyn_assets.core.embedding.runtime import load_checkpoint
from realsyn_assets.core.evaluation import retrieval_recall, zero_shot_accuracy
from realsyn_assets.names import ClipEvaluationMetrics

RECALL_KS = (1, 5, 10)
# The recall scores `evaluate_encoder` returns (`retrieval_recall` names at RECALL_KS).
RECALLS = (
    ClipEvaluationMetrics.I2T_R_AT_1,
    ClipEvaluationMetrics.I2T_R_AT_5,
    ClipEvaluationMetrics.I2T_R_AT_10,
    ClipEvaluationMetrics.T2I_R_AT_1,
    ClipEvaluationMetrics.T2I_R_AT_5,
    ClipEvaluationMetrics.T2I_R_AT_10,
)


def evaluate_encoder(
    encoder,
    paths: Sequence[str],
    texts: Sequence[str],
    concepts: Sequence[str | None],
    class_names: Sequence[str],
) -> dict[str, float]:
    """Recall@1/5/10 of image i against text i; zero-shot accuracy over `class_names`.

    `concepts[i]` is image i's class (None when unknown); zero-shot accuracy is reported only
    when some image's concept is one of `class_names`, with the prompt "a photo of a <class>".
    """
    class_names = list(class_names)
    image_emb = encoder.encode_images(paths)
    text_emb = encoder.encode_texts(texts)
    scores = retrieval_recall(image_emb, text_emb, np.arange(len(paths)), ks=RECALL_KS)
    if class_names:
        labelled = [i for i, c in enumerate(concepts) if c in class_names]
        if labelled:
            class_emb = encoder.encode_texts([f"a photo of a {c}" for c in class_names])
            labels = np.array([class_names.index(concepts[i]) for i in labelled])
            scores[ClipEvaluationMetrics.ZERO_SHOT_ACCURACY] = zero_shot_accuracy(
                image_emb[labelled], class_emb, labels
            )
    return scores


def checkpoint_model_name(checkpoint: Path) -> str:
    """The open_clip model name a `train_clip` checkpoint was trained with."""
    return load_checkpoint(checkpoint).get("model_name")


def evaluate_checkpoint(
    checkpoint: Path,
    models_dir: Path,
    device: str,
    paths: Sequence[str],
    texts: Sequence[str],
    concepts: Sequence[str | None],
    class_names: Sequence[str],
) -> tuple[dict[str, float], dict[str, float]]:
    """(trained, untrained) scores of `evaluate_encoder`: the checkpoint, then the same model
    with its seeded random initialisation."""
    model_name = checkpoint_model_name(checkpoint)
    trained = Encoder(
        EncoderSpec(model_name=model_name, checkpoint=str(checkpoint), device=device), models_dir
    )
    untrained = Encoder(EncoderSpec(model_name=model_name, device=device), models_dir)
    after = evaluate_encoder(trained, paths, texts, concepts, class_names)
    before = evaluate_encoder(untrained, paths, texts, concepts, class_names)
    return after, before
