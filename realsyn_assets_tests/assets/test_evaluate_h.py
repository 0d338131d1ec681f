"""clip_ablations and clip_evaluation: their checks fail when they should, and on a demo home the
scale's models (recipe, ablations, untrained) land in one table, user sets included."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from realsyn_assets.assets import evaluate
from realsyn_assets.core.training import ablations as ab
from realsyn_assets.core.training.evaluate import RECALLS
from realsyn_assets.names import Asset
from realsyn_assets.names import ClipAblationsMetrics as AM
from realsyn_assets.names import ClipCheckpointMetrics as TM
from realsyn_assets.names import ClipEvaluationMetrics as EM
from realsyn_assets.resources import (
    EncoderResource,
    HomeResource,
    MetricsResource,
    StorageResource,
)


def _resources(root):
    home = HomeResource(path=str(root))
    return StorageResource(home=home), MetricsResource(home=home)


def _evaluation(metrics, trained: float, untrained: float, images: int = 40) -> None:
    counts = {EM.EVAL_IMAGES: images, EM.CHANCE_I2T_R_AT_5: 0.25}
    counts.update({k: trained for k in RECALLS})
    counts.update({f"{EM.UNTRAINED_PREFIX}{k}": untrained for k in RECALLS})
    metrics.record(Asset.CLIP_EVALUATION, "100M", counts)


def test_evaluation_check_passes_when_training_beats_the_untrained_model(tmp_path):
    _, metrics = _resources(tmp_path)
    _evaluation(metrics, trained=0.6, untrained=0.3)
    result = evaluate._evaluation_ok(metrics, "100M")
    assert result.passed, result.description
    assert result.metadata["mean_recall_gain"].value == pytest.approx(0.3)
    assert result.metadata["min_recall_gain"].value == evaluate.MIN_RECALL_GAIN


def test_evaluation_valid_fails_when_training_bought_nothing(tmp_path):
    _, metrics = _resources(tmp_path)
    _evaluation(metrics, trained=0.31, untrained=0.3)
    result = evaluate._evaluation_ok(metrics, "100M")
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "mean recall gain 0.010" in result.description


def test_evaluation_check_fails_on_impossible_scores_or_too_few_images(tmp_path):
    _, metrics = _resources(tmp_path)
    _evaluation(metrics, trained=1.5, untrained=0.1, images=1)
    result = evaluate._evaluation_ok(metrics, "100M")
    assert not result.passed
    assert "outside [0, 1]" in result.description and "1 eval images" in result.description
    assert result.severity == dg.AssetCheckSeverity.ERROR
    _, empty = _resources(tmp_path / "empty")
    assert not evaluate._evaluation_ok(empty, "100M").passed


def _manifest(storage, variants: dict) -> None:
    folder = storage.layout.asset_dir(Asset.CLIP_ABLATIONS) / "15M"
    for name in variants:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "checkpoint.pt").write_bytes(b"x")
    entries = {name: {"checkpoint": f"{name}/checkpoint.pt"} for name in variants}
    (folder / evaluate.ABLATIONS_FILE).write_text(json.dumps({"variants": entries}))


def test_ablations_trained_fails_when_a_loss_did_not_fall_or_a_checkpoint_is_gone(tmp_path):
    storage, metrics = _resources(tmp_path)
    names = [ab.REALISTIC_ONLY, ab.SYNTHETIC_ONLY]
    _manifest(storage, dict.fromkeys(names))
    counts = {AM.VARIANTS_TRAINED: 2}
    for name in names:
        prefix = evaluate.TRAIN_PREFIX[name]
        counts.update({prefix + TM.LOSS_FIRST: 3.0, prefix + TM.LOSS_LAST: 1.0})
    metrics.record(Asset.CLIP_ABLATIONS, "15M", counts)
    assert evaluate._ablations_ok(storage, metrics, "15M").passed

    counts[evaluate.TRAIN_PREFIX[ab.SYNTHETIC_ONLY] + TM.LOSS_LAST] = 3.5
    metrics.record(Asset.CLIP_ABLATIONS, "15M", counts)
    result = evaluate._ablations_ok(storage, metrics, "15M")
    assert not result.passed and "synthetic_only: loss 3.000 -> 3.500" in result.description
    assert result.severity == dg.AssetCheckSeverity.WARN  # no steps recorded: too few to judge

    folder = storage.layout.asset_dir(Asset.CLIP_ABLATIONS) / "15M"
    (folder / ab.REALISTIC_ONLY / "checkpoint.pt").unlink()
    result = evaluate._ablations_ok(storage, metrics, "15M")
    assert "realistic_only: checkpoint missing" in result.description
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR

    metrics.record(Asset.CLIP_ABLATIONS, "15M", {**counts, AM.VARIANTS_TRAINED: 3})
    assert "3 configured" in evaluate._ablations_ok(storage, metrics, "15M").description


def test_ablation_config_turns_variants_off():
    assert evaluate.AblationConfig().variants() == [
        ab.REALISTIC_ONLY,
        ab.SYNTHETIC_ONLY,
        ab.RANDOM_SAMPLING,
    ]
    assert evaluate.AblationConfig(synthetic_only=False, realistic_only=False).variants() == [
        ab.RANDOM_SAMPLING
    ]


def _materialize(home, scale: str, config: dict):
    storage, metrics = _resources(home)
    encoder = EncoderResource(home=HomeResource(path=str(home)))
    return dg.materialize(
        [evaluate.clip_evaluation],
        partition_key=scale,
        resources={"storage": storage, "metrics": metrics, "encoder": encoder},
        run_config={"ops": {Asset.CLIP_EVALUATION: {"config": config}}},
        raise_on_error=False,
    )


@pytest.mark.slow
def test_demo_scale_gets_one_table_of_every_model_and_user_sets(demo_home, tmp_path):
    """The demo trained the ablations; clip_evaluation scored them beside the recipe, and scores
    user sets given in its config; a malformed set fails naming file and line."""
    from realsyn_assets_tests.core.training.test_user_sets_h import _captions_set, _shapes_set

    scale = "100M"
    manifest = json.loads(
        (demo_home / "data" / Asset.CLIP_ABLATIONS / scale / evaluate.ABLATIONS_FILE).read_text()
    )
    assert sorted(manifest["variants"]) == sorted(evaluate.AblationConfig().variants())
    table = (demo_home / "data" / Asset.CLIP_EVALUATION / scale / evaluate.TABLE_FILE).read_text()
    for name in (ab.REALSYN, ab.UNTRAINED, *manifest["variants"]):
        assert f"| {name} |" in table

    home = tmp_path / "home"
    shutil.copytree(demo_home, home, ignore=shutil.ignore_patterns("dagster"))
    _captions_set(home / "caps")
    sets = {"captions_sets": ["caps"], "classification_sets": [str(_shapes_set(tmp_path / "s"))]}
    assert _materialize(home, scale, sets).success
    _, metrics = _resources(home)
    counts = metrics.counts(Asset.CLIP_EVALUATION, scale)
    for prefix in ("", EM.UNTRAINED_PREFIX, EM.RANDOM_SAMPLING_PREFIX):
        assert 0.0 <= counts[f"{prefix}{EM.CAPTIONS_SET_PREFIX}caps/i2t_R@1"] <= 1.0
        key = f"{prefix}{EM.CLASSIFICATION_SET_PREFIX}s/{EM.ZERO_SHOT_ACCURACY}"
        assert 0.0 <= counts[key] <= 1.0

    (home / "caps" / "captions.jsonl").write_text('{"image": "images/red.jpg"}\n')
    result = _materialize(home, scale, {"captions_sets": ["caps"]})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "captions.jsonl:1: 'captions' must be" in str(failure.event_specific_data.error)
