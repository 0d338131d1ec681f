"""training_lowered_loss, ablations_trained and evaluation_valid by their functions on recorded
metrics and files (no training): each fails on the bad case with the severity it documents."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from realsyn_assets.assets import evaluate, train
from realsyn_assets.core.training import ablations as ab
from realsyn_assets.core.training import clip as clip_core
from realsyn_assets.core.training.evaluate import RECALLS
from realsyn_assets.names import Asset
from realsyn_assets.names import ClipAblationsMetrics as AM
from realsyn_assets.names import ClipCheckpointMetrics as TM
from realsyn_assets.names import ClipEvaluationMetrics as EM
from realsyn_assets.resources import HomeResource, MetricsResource, StorageResource

SCALE = "15M"
ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def _resources(root):
    home = HomeResource(path=str(root))
    return StorageResource(home=home), MetricsResource(home=home)


def _trained(root, drop: float, steps: int, checkpoint: bool = True):
    storage, metrics = _resources(root)
    if checkpoint:
        folder = storage.layout.asset_dir(Asset.CLIP_CHECKPOINT) / SCALE
        folder.mkdir(parents=True, exist_ok=True)
        (folder / clip_core.CHECKPOINT_NAME).write_bytes(b"x")
    counts = {TM.LOSS_FIRST: 3.4, TM.LOSS_LAST: 3.4 * (1 - drop), TM.LOSS_DROP: drop}
    metrics.record(Asset.CLIP_CHECKPOINT, SCALE, {**counts, TM.STEPS: steps})
    return train.loss_lowered(storage, metrics, SCALE)


def test_training_lowered_loss_fails_when_the_loss_stayed_at_chance(tmp_path):
    assert _trained(tmp_path / "ok", drop=0.4, steps=100).passed
    result = _trained(tmp_path / "flat", drop=0.01, steps=100)
    assert result.passed is False and result.severity == ERROR
    assert result.metadata["loss_drop"].value == pytest.approx(0.01)
    assert result.metadata["min_loss_drop"].value == clip_core.MIN_LOSS_DROP
    # too few steps to judge: the same miss only warns
    short = _trained(tmp_path / "short", drop=0.01, steps=clip_core.MIN_JUDGED_STEPS - 1)
    assert short.passed is False and short.severity == WARN


def test_training_lowered_loss_fails_without_a_checkpoint(tmp_path):
    result = _trained(tmp_path, drop=0.4, steps=100, checkpoint=False)
    assert result.passed is False and result.severity == ERROR
    assert result.metadata["checkpoint_exists"].value is False


def test_ablations_trained_fails_when_a_variant_barely_moved(tmp_path):
    """A loss that fell, but by less than training_lowered_loss asks of the recipe, in enough
    steps to judge: an ERROR (clip_evaluation would score a model that learned nothing)."""
    storage, metrics = _resources(tmp_path)
    folder = storage.layout.asset_dir(Asset.CLIP_ABLATIONS) / SCALE
    (folder / ab.SYNTHETIC_ONLY).mkdir(parents=True)
    (folder / ab.SYNTHETIC_ONLY / "checkpoint.pt").write_bytes(b"x")
    entry = {"checkpoint": f"{ab.SYNTHETIC_ONLY}/checkpoint.pt"}
    (folder / evaluate.ABLATIONS_FILE).write_text(
        json.dumps({"variants": {ab.SYNTHETIC_ONLY: entry}})
    )
    prefix = evaluate.TRAIN_PREFIX[ab.SYNTHETIC_ONLY]
    counts = {AM.VARIANTS_TRAINED: 1, prefix + TM.LOSS_FIRST: 3.0, prefix + TM.STEPS: 100}
    metrics.record(Asset.CLIP_ABLATIONS, SCALE, {**counts, prefix + TM.LOSS_LAST: 1.5})
    assert evaluate._ablations_ok(storage, metrics, SCALE).passed
    metrics.record(Asset.CLIP_ABLATIONS, SCALE, {**counts, prefix + TM.LOSS_LAST: 2.97})
    result = evaluate._ablations_ok(storage, metrics, SCALE)
    assert result.passed is False and result.severity == ERROR
    assert result.metadata["min_loss_drop_seen"].value == pytest.approx(0.01)
    assert "fell 1.0% (needs 3%)" in result.description


def _evaluated(root, trained: float, untrained: float, images: int):
    _, metrics = _resources(root)
    counts = {EM.EVAL_IMAGES: images}
    counts.update({k: trained for k in RECALLS})
    counts.update({f"{EM.UNTRAINED_PREFIX}{k}": untrained for k in RECALLS})
    metrics.record(Asset.CLIP_EVALUATION, SCALE, counts)
    return evaluate._evaluation_ok(metrics, SCALE)


def test_evaluation_valid_fails_on_a_small_eval_set_without_a_real_gain(tmp_path):
    """16 held-out images (the demo's): a gain of 0.05 is less than one image's worth (1/16),
    so it is judged, and fails, as a WARN; a gain of 0.15 passes."""
    assert _evaluated(tmp_path / "good", 0.45, 0.3, images=16).passed
    result = _evaluated(tmp_path / "flat", 0.35, 0.3, images=16)
    assert result.passed is False and result.severity == WARN
    assert result.metadata["min_recall_gain"].value == pytest.approx(1 / 16)
    assert result.metadata["mean_recall_gain"].value == pytest.approx(0.05)
    assert evaluate.min_recall_gain(400) == evaluate.MIN_RECALL_GAIN


def test_evaluation_valid_fails_when_the_untrained_scores_are_missing(tmp_path):
    _, metrics = _resources(tmp_path)
    counts = {EM.EVAL_IMAGES: 40, **dict.fromkeys(RECALLS, 0.5)}
    metrics.record(Asset.CLIP_EVALUATION, SCALE, counts)
    result = evaluate._evaluation_ok(metrics, SCALE)
    assert result.passed is False and result.severity == ERROR
    assert "recalls are missing" in result.description


def test_evaluation_valid_fails_on_a_score_outside_0_1(tmp_path):
    result = _evaluated(tmp_path, 1.2, 0.3, images=40)
    assert result.passed is False and result.severity == ERROR
    assert result.metadata["scores_out_of_range"].value == len(RECALLS)
