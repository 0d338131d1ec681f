"""Blocking checks stop bad vectors from flowing downstream (issue 17's acceptance): a shard whose
image vectors are corrupted makes `image_vectors_valid` fail with ERROR severity, and
`image_dedup`, which reads those vectors, is not materialized in that run. Run on a tiny home
(one shard of 8 demo documents, random encoder weights) through the real jobs and instance."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from realsyn_assets.names import Asset, Job
from realsyn_assets_tests.assets.tiny_home_c import (
    latest_check_evaluation,
    materialization_count,
    tiny_home,
)

pytestmark = pytest.mark.slow  # builds a small home through Dagster (~20 s a test)

CHECK = "image_vectors_valid"


@pytest.fixture
def home(tmp_path, monkeypatch):
    with tiny_home(tmp_path, monkeypatch) as made:
        yield made


def _extract(key):
    from realsyn_assets.pipeline import run_stage

    report = run_stage(Job.SHARD_EXTRACT, key)
    assert not report.checks_failed, report.checks_failed


def _assert_check_failed_and_dedup_blocked(instance, key, success: bool, dedup_before: int):
    assert not success  # the blocking check's failure fails the run
    evaluation = latest_check_evaluation(instance, Asset.IMAGE_EMBEDDINGS, CHECK, key)
    assert evaluation is not None and evaluation.passed is False
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert materialization_count(instance, Asset.IMAGE_DEDUP, key) == dedup_before


def test_image_vectors_valid_fails_on_unnormalised_vectors_and_blocks_image_dedup(
    home, monkeypatch
):
    """An encoder that returns vectors that are not unit-norm (LanceDB stores them): the
    shard_embed_job run embeds, the blocking check fails, image_dedup never runs."""
    from realsyn_assets.core.embedding.encoder import Encoder
    from realsyn_assets.pipeline import run_stage

    layout, key, instance = home
    _extract(key)
    original = Encoder.encode_images

    def unnormalised(self, paths, **kwargs):
        return original(self, paths, **kwargs) * 3.0

    monkeypatch.setattr(Encoder, "encode_images", unnormalised)
    report = run_stage(Job.SHARD_EMBED, key, raise_on_failure=False)
    assert materialization_count(instance, Asset.IMAGE_EMBEDDINGS, key) == 1
    assert [f for f in report.checks_failed if CHECK in f], report.checks_failed
    _assert_check_failed_and_dedup_blocked(instance, key, report.success, dedup_before=0)
    evaluation = latest_check_evaluation(instance, Asset.IMAGE_EMBEDDINGS, CHECK, key)
    assert evaluation.metadata["value"].value == pytest.approx(2.0, abs=1e-3)

    # the same shard with a working encoder goes through
    monkeypatch.setattr(Encoder, "encode_images", original)
    report = run_stage(Job.SHARD_EMBED, key, raise_on_failure=False)
    assert report.success and not report.checks_failed, report
    assert materialization_count(instance, Asset.IMAGE_DEDUP, key) == 1


def test_image_vectors_valid_fails_on_nan_rows_in_lancedb_and_blocks_image_dedup(home):
    """NaN written into the shard's LanceDB rows after a good run (LanceDB itself refuses NaN,
    so they come through `lance`, as from a foreign writer or a damaged file): a run of the check
    and image_dedup fails the check and leaves image_dedup at its earlier materialization."""
    import lance

    from realsyn_assets.pipeline import run_stage
    from realsyn_assets.resources import HomeResource, VectorStoreResource
    from realsyn_assets.resources.vectors import table_vectors, vectors_column

    layout, key, instance = home
    _extract(key)
    report = run_stage(Job.SHARD_EMBED, key)
    assert report.success and not report.checks_failed, report
    assert materialization_count(instance, Asset.IMAGE_DEDUP, key) == 1

    vectors = VectorStoreResource(home=HomeResource(path=str(layout.root)))
    rows = vectors.read("images")
    matrix = table_vectors(rows)
    matrix[0, :] = np.nan
    uri = vectors.connect().open_table("images").to_lance().uri
    corrupt = rows.set_column(
        rows.schema.get_field_index("vector"), "vector", vectors_column(matrix)
    )
    lance.write_dataset(corrupt, uri, mode="overwrite")

    from realsyn_assets.definitions import defs

    job = dg.define_asset_job(
        "vectors_then_dedup",
        selection=dg.AssetSelection.checks(
            dg.AssetCheckKey(dg.AssetKey(Asset.IMAGE_EMBEDDINGS), CHECK)
        )
        | dg.AssetSelection.assets(Asset.IMAGE_DEDUP),
    )
    local = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    result = local.resolve_job_def("vectors_then_dedup").execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False
    )
    _assert_check_failed_and_dedup_blocked(instance, key, result.success, dedup_before=1)
    evaluation = latest_check_evaluation(instance, Asset.IMAGE_EMBEDDINGS, CHECK, key)
    assert evaluation.metadata["non_finite"].value == 1


def test_nan_from_the_encoder_fails_image_embeddings_clearly_and_nothing_downstream_runs(
    home, monkeypatch
):
    """An encoder emitting NaN (fp16 overflow, broken weights): LanceDB would refuse the rows
    with an Arrow error, so the asset fails first with a message that says what happened, the
    shard's earlier rows stay, and image_dedup does not run."""
    from realsyn_assets.core.embedding.encoder import Encoder
    from realsyn_assets.pipeline import run_stage

    layout, key, instance = home
    _extract(key)
    original = Encoder.encode_images

    def with_nan(self, paths, **kwargs):
        vecs = original(self, paths, **kwargs)
        vecs[0, 0] = np.nan
        return vecs

    monkeypatch.setattr(Encoder, "encode_images", with_nan)
    report = run_stage(Job.SHARD_EMBED, key, raise_on_failure=False)
    assert not report.success
    assert "1 of" in report.error and "not finite" in report.error, report.error
    assert materialization_count(instance, Asset.IMAGE_EMBEDDINGS, key) == 0
    assert materialization_count(instance, Asset.IMAGE_DEDUP, key) == 0
