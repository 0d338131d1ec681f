"""clip_checkpoint through Dagster on a small balanced subset: it trains, records the loss drop
and passes `training_lowered_loss`; a run that cannot learn (lr 0) fails the check; a second
materialization with the same config resumes from the finished run instead of training again;
a run too short to judge only warns."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pytest

from realsyn_assets.core.io import write_table
from realsyn_assets.names import Asset
from realsyn_assets.names import ClipCheckpointMetrics as TM
from realsyn_assets_tests.core.training.test_clip import make_shapes

SCALE = "15M"
CHECK = "training_lowered_loss"


def _home(root):
    """A home holding only a balanced subset of 24 train + 4 eval rows (shapes and colours)."""
    samples = make_shapes(root / "images", n=28)
    rows = {
        "image_path": [s.image_path for s in samples],
        "text1": [s.texts[0] for s in samples],
        "text2": [s.texts[1] for s in samples],
        "text3": [s.texts[2] for s in samples],
        "syn_text": [s.texts[3] for s in samples],
        "split": ["train"] * 24 + ["eval"] * 4,
    }
    write_table(pa.table(rows), root / "data" / Asset.BALANCED_SUBSET / SCALE / "realsyn.parquet")


def _materialize(root, **config):
    from realsyn_assets.assets.train import clip_checkpoint, training_lowered_loss
    from realsyn_assets.resources import (
        EncoderResource,
        HomeResource,
        MetricsResource,
        StorageResource,
    )

    home = HomeResource(path=str(root))
    base = {"model_name": "realsyn-tiny", "epochs": 14, "batch_size": 8, "max_steps": 40}
    result = dg.materialize(
        [clip_checkpoint, training_lowered_loss],
        partition_key=SCALE,
        resources={
            "storage": StorageResource(home=home),
            "metrics": MetricsResource(home=home),
            "encoder": EncoderResource(home=home, device="cpu"),
        },
        run_config={"ops": {Asset.CLIP_CHECKPOINT: {"config": {**base, **config}}}},
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    (materialization,) = result.asset_materializations_for_node(Asset.CLIP_CHECKPOINT)
    meta = {k: v.value for k, v in materialization.metadata.items()}
    return evaluation, meta


@pytest.mark.slow
def test_clip_checkpoint_trains_resumes_and_its_check_fails_without_learning(tmp_path):
    _home(tmp_path)
    evaluation, meta = _materialize(tmp_path)
    assert evaluation.check_name == CHECK and evaluation.passed, evaluation.description
    assert meta[TM.STEPS] == 40 and meta[TM.RESUMED_FROM_STEP] == 0 and meta[TM.PROCESSES] == 1
    assert meta[TM.LOSS_DROP] >= 0.03
    checks = {k: v.value for k, v in evaluation.metadata.items()}
    assert checks["loss_drop"] == pytest.approx(meta[TM.LOSS_DROP])
    assert checks["min_loss_drop"] == 0.03
    out = tmp_path / "data" / Asset.CLIP_CHECKPOINT / SCALE
    assert (out / "checkpoint.pt").exists() and (out / "resume.pt").exists()

    # the same config again: the finished run is found and nothing is retrained
    again, meta_again = _materialize(tmp_path)
    assert again.passed and meta_again[TM.RESUMED_FROM_STEP] == 40
    assert meta_again[TM.LOSS_DROP] == pytest.approx(meta[TM.LOSS_DROP])

    # lr 0: the weights never move, the loss stays at chance, the blocking check fails
    failed, meta_failed = _materialize(tmp_path, lr=0.0)
    assert meta_failed[TM.RESUMED_FROM_STEP] == 0  # another config: started over
    assert not failed.passed, failed.description
    assert abs(meta_failed[TM.LOSS_DROP]) < 0.03
    assert "needs 3%" in failed.description
    assert failed.severity == dg.AssetCheckSeverity.ERROR

    # too few steps to tell learning from noise: missing the drop only warns
    short, meta_short = _materialize(tmp_path, lr=0.0, max_steps=4)
    assert meta_short[TM.STEPS] == 4 and not short.passed
    assert short.severity == dg.AssetCheckSeverity.WARN, short.description
    assert "too few to judge" in short.description
