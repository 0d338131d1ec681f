"""Evaluation of trained CLIP checkpoints (paper §4, §8): every model of a scale (the RealSyn
recipe, its ablation variants, the same architecture untrained) on the same held-out split and
the same user sets, so their rows compare.

* held-out split: image<->text1 retrieval recall and, where images carry a concept (the demo),
  zero-shot accuracy with the prompt ensemble;
* captions sets: image<->caption R@1/5/10 (Flickr protocol);
* classification sets: zero-shot accuracy with the prompt ensemble.

The untrained row shows what training bought, independent of the eval set's size and difficulty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realsyn_assets.core.embedding.encoder import Encoder, EncoderSpec
from realsyn_assets.core.embedding.runtime import load_checkpoint
from realsyn_assets.core.evaluation import retrieval_recall, zero_shot_accuracy
from realsyn_assets.core.training.user_sets import (
    PROMPT_TEMPLATES,
    RECALL_KS,
    CaptionsSet,
    ClassificationSet,
    UserSetError,
    captions_recall,
    class_embeddings,
    ensemble_zero_shot,
)
from realsyn_assets.names import ClipEvaluationMetrics as EM

# The held-out recall scores `evaluate_encoder` returns (`retrieval_recall` names at RECALL_KS).
RECALLS = (
    EM.I2T_R_AT_1,
    EM.I2T_R_AT_5,
    EM.I2T_R_AT_10,
    EM.T2I_R_AT_1,
    EM.T2I_R_AT_5,
    EM.T2I_R_AT_10,
)


@dataclass(frozen=True)
class HeldOut:
    """The eval split: image i is described by texts[i]; concepts[i] is its class or None."""

    paths: list[str]
    texts: list[str]
    concepts: list[str | None] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UserSets:
    captions: list[CaptionsSet] = field(default_factory=list)
    classification: list[ClassificationSet] = field(default_factory=list)

    def __post_init__(self):
        names = [s.name for s in self.captions] + [s.name for s in self.classification]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UserSetError(f"user sets share a folder name: {twice}; rename one folder")


def evaluate_encoder(encoder, held_out: HeldOut) -> dict[str, float]:
    """Recall@1/5/10 of image i against text i; zero-shot accuracy over `class_names` when some
    image's concept is one of them (prompt ensemble)."""
    image_emb = encoder.encode_images(held_out.paths)
    text_emb = encoder.encode_texts(held_out.texts)
    owners = np.arange(len(held_out.paths))
    scores = retrieval_recall(image_emb, text_emb, owners, ks=RECALL_KS)
    names = list(held_out.class_names)
    labelled = [i for i, c in enumerate(held_out.concepts) if c in names]
    if names and labelled:
        classes = class_embeddings(encoder, names, PROMPT_TEMPLATES)
        labels = np.array([names.index(held_out.concepts[i]) for i in labelled])
        scores[EM.ZERO_SHOT_ACCURACY] = zero_shot_accuracy(image_emb[labelled], classes, labels)
    return scores


def user_set_scores(encoder, user_sets: UserSets) -> dict[str, float]:
    """`captions_set/<folder>/<recall>` and `classification_set/<folder>/zero_shot_accuracy`."""
    scores: dict[str, float] = {}
    for captions in user_sets.captions:
        for key, value in captions_recall(encoder, captions).items():
            scores[f"{EM.CAPTIONS_SET_PREFIX}{captions.name}/{key}"] = value
    for classes in user_sets.classification:
        key = f"{EM.CLASSIFICATION_SET_PREFIX}{classes.name}/{EM.ZERO_SHOT_ACCURACY}"
        scores[key] = ensemble_zero_shot(encoder, classes)
    return scores


def checkpoint_model_name(checkpoint: Path) -> str:
    """The open_clip model name a `train_clip` checkpoint was trained with."""
    return load_checkpoint(checkpoint).get("model_name")


def model_encoders(
    checkpoints: Mapping[str, Path | None], model_name: str, models_dir: Path, device: str
) -> dict[str, Encoder]:
    """An encoder per named model: its checkpoint, or the architecture's seeded random
    initialisation where the checkpoint is None."""
    return {
        name: Encoder(
            EncoderSpec(
                model_name=model_name,
                checkpoint=str(path) if path is not None else None,
                device=device,
            ),
            models_dir,
        )
        for name, path in checkpoints.items()
    }


def evaluate_models(
    encoders: Mapping[str, object], held_out: HeldOut, user_sets: UserSets | None = None
) -> dict[str, dict[str, float]]:
    """model name -> its held-out scores and user-set scores, every model on the same data."""
    user_sets = user_sets or UserSets()
    return {
        name: {**evaluate_encoder(encoder, held_out), **user_set_scores(encoder, user_sets)}
        for name, encoder in encoders.items()
    }


def mean_recall(scores: Mapping[str, float], prefix: str = "") -> float:
    """Mean of the six held-out recalls named `prefix` + recall (NaN when none is present)."""
    values = [scores[prefix + k] for k in RECALLS if prefix + k in scores]
    return float(np.mean(values)) if values else float("nan")


def score_columns(results: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Every score key of `results`: the held-out scores, then each user set's; within a group
    the recalls in `RECALLS` order, then zero-shot accuracy."""
    order = {name: i for i, name in enumerate((*RECALLS, EM.ZERO_SHOT_ACCURACY))}

    def position(key: str) -> tuple:
        group, _, metric = key.rpartition("/")
        return (group != "", group, order.get(metric, len(order)), metric)

    return sorted({k for scores in results.values() for k in scores}, key=position)


def user_set_paths(entries: Sequence[str], home: Path) -> list[Path]:
    """Configured set paths, absolute or relative to the home."""
    return [home / Path(entry).expanduser() for entry in entries]
