"""The whole graph materialized through Dagster on a small demo corpus (via `realsyn demo`)."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import lancedb
import numpy as np
import pyarrow.parquet as pq
import pytest

from realsyn_assets.assets import ALL_ASSETS, ALL_CHECKS
from realsyn_assets.demo.corpus import load_ground_truth
from realsyn_assets.partitions import SCALES
from realsyn_assets_tests.conftest import run_cli


def test_demo_prints_summary_and_passes_every_check(demo_home):
    out = (demo_home / "demo_stdout.txt").read_text()
    assert "0 failed" in out.splitlines()[-1], out[-3000:]
    assert "FAILED" not in out


def test_every_asset_and_partition_is_materialized(dagster_instance, demo_home):
    shards = dagster_instance.get_dynamic_partitions("shard")
    assert len(shards) == 3
    for assets_def in ALL_ASSETS:
        if assets_def.partitions_def is None:
            assert dagster_instance.get_latest_materialization_event(assets_def.key), assets_def.key
        else:
            expected = (
                set(shards)
                if isinstance(assets_def.partitions_def, dg.DynamicPartitionsDefinition)
                else set(SCALES)
            )
            assert dagster_instance.get_materialized_partitions(assets_def.key) == expected


# The 48-document test demo holds out only a few images per scale (4 for 15M, 8 for 30M) and
# trains on a few dozen pairs: one image moves a recall by 1/n, too coarse to show a gain, so
# `evaluation_valid` may warn there (seen: gains 0.042 on 4 images, -0.042 on 8). The 240-document
# `realsyn demo` holds out 16 per scale and passes. Every other check must pass.
TOO_FEW_TO_JUDGE_GAIN = 16


def _tolerated(evaluation) -> bool:
    images = evaluation.metadata.get("eval_images")
    return (
        evaluation.check_name == "evaluation_valid"
        and evaluation.severity == dg.AssetCheckSeverity.WARN
        and images is not None
        and images.value < TOO_FEW_TO_JUDGE_GAIN
    )


def test_every_check_ran_and_passed(dagster_instance):
    for check in ALL_CHECKS:
        for key in check.check_keys:
            records = dagster_instance.event_log_storage.get_asset_check_execution_history(
                key, limit=50
            )
            assert records, f"{key} never ran"
            evaluations = [r.event.dagster_event.event_specific_data for r in records if r.event]
            assert evaluations, key
            failed = [e for e in evaluations if not e.passed and not _tolerated(e)]
            assert not failed, failed


def test_outputs_on_disk(demo_home):
    db = lancedb.connect(str(demo_home / "lancedb"))
    images = db.open_table("images").to_arrow()
    sentences = db.open_table("sentences").to_arrow()
    assert images.num_rows > 50 and sentences.num_rows > 200
    # one row per (shard, id): no duplicates from reruns
    pairs = list(
        zip(images.column("shard").to_pylist(), images.column("image_id").to_pylist(), strict=True)
    )
    assert len(pairs) == len(set(pairs))
    con = duckdb.connect(str(demo_home / "metrics.duckdb"), read_only=True)
    stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM stage_counts").fetchall()}
    con.close()
    assert {a.key.to_user_string() for a in ALL_ASSETS} - {"quality_report"} <= stages
    sizes = {}
    for scale in SCALES:
        folder = demo_home / "data" / "balanced_subset" / scale
        table = pq.read_table(folder / "realsyn.parquet")
        sizes[scale] = table.num_rows
        for column in (
            "raw_image_url",
            "text1",
            "text2",
            "text3",
            "syn_text",
            "image_doc_id",
            "text1_doc_id",
            "text1_position",
        ):
            assert column in table.column_names
        assert all(table.column("syn_text").to_pylist())
        export = demo_home / "data" / "subset_export" / scale
        assert list((export / "webdataset" / "train").glob("*.tar"))
        assert (export / "DATA_CARD.md").exists() and (export / "eval.parquet").exists()
        assert (demo_home / "data" / "clip_checkpoint" / scale / "checkpoint.pt").exists()
        metrics = json.loads(
            (demo_home / "data" / "clip_evaluation" / scale / "metrics.json").read_text()
        )
        assert 0.0 <= metrics["trained"]["i2t_R@5"] <= 1.0
    assert sizes["15M"] <= sizes["30M"] <= sizes["100M"]
    assert (demo_home / "data" / "quality_report" / "report.md").exists()


def test_report_precision_equals_scoring_every_retrieved_text1(demo_home):
    """The report's corpus figure, recomputed from the retrieved_texts files and ground truth."""
    truth = load_ground_truth(demo_home / "demo_corpus")
    folder = demo_home / "data" / "retrieved_texts"
    rows = [
        row
        for path in sorted(folder.glob("shard-*.parquet"))
        if "rejected" not in path.name
        for row in pq.read_table(path, columns=["image_id", "text1_id"]).to_pylist()
    ]
    hits = [
        truth.describes(r["image_id"], r["text1_id"])
        for r in rows
        if truth.image_concept(r["image_id"]) is not None
    ]
    from realsyn_assets.names import RetrievedTextsMetrics as M

    report = json.loads((demo_home / "data" / "quality_report" / "report.json").read_text())
    precision = report["retrieval_precision"]
    assert precision[M.GT_IMAGES_SCORED] == len(hits) > 50
    assert precision[M.GT_PRECISION_TEXT1] == pytest.approx(sum(hits) / len(hits))
    markdown = (demo_home / "data" / "quality_report" / "report.md").read_text()
    assert f"| text1 | {precision[M.GT_PRECISION_TEXT1]:.3f} |" in markdown


def test_retrieved_texts_are_distinct_sentences_with_lineage(demo_home):
    table = pq.read_table(demo_home / "data" / "balanced_subset" / "15M" / "realsyn.parquet")
    truth = load_ground_truth(demo_home / "demo_corpus")
    for row in table.to_pylist():
        ids = {row["text1_id"], row["text2_id"], row["text3_id"]}
        assert len(ids) == 3
        assert row["text1_score"] >= row["text2_score"] >= row["text3_score"]
        assert truth.image_noise(row["image_id"]) not in ("tiny", "extreme_aspect", "corrupt")
        assert row["image_doc_id"].startswith("doc_") and row["text1_doc_id"].startswith("doc_")


def test_noise_is_filtered(demo_home):
    """Ground truth: no tiny/extreme/corrupt image and no URL/emoji sentence reaches the subset."""
    truth = load_ground_truth(demo_home / "demo_corpus")
    kept = pq.read_table(demo_home / "data" / "image_dedup").to_pylist()
    for row in kept:
        if row["kept"]:
            assert truth.image_noise(row["image_id"]) not in ("tiny", "extreme_aspect", "corrupt")
    sentences = pq.read_table(demo_home / "data" / "sentence_clusters" / "members.parquet")
    noise = [truth.sentence_noise(s) for s in sentences.column("sentence_id").to_pylist()]
    assert not {"url", "emoji", "too_short", "too_long"} & set(noise)


def test_cli_materialize_after_demo(demo_home):
    """Acceptance: the dagster CLI materializes a scale against the demo's home and instance."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from realsyn_assets_tests.conftest import REPO, cli_env

    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "realsyn_assets.definitions",
            "--select",
            "balanced_subset",
            "--partition",
            "15M",
        ],
        env=cli_env(demo_home),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert os.path.exists(demo_home / "data" / "balanced_subset" / "15M" / "realsyn.parquet")


def test_status_lists_materializations(demo_home):
    result = run_cli(demo_home, "status", "--home", str(demo_home))
    assert result.returncode == 0, result.stderr
    assert "balanced_subset" in result.stdout and "3/3 partitions" in result.stdout


@pytest.mark.parametrize("asset", ["raw_documents", "extracted_images", "image_dedup"])
def test_partition_files_exist_per_shard(demo_home, asset):
    assert len(list((demo_home / "data" / asset).glob("shard-*.parquet"))) >= 3
    assert np.all([p.stat().st_size > 0 for p in (demo_home / "data" / asset).glob("*.parquet")])


def _stage_counts(demo_home, stage: str) -> dict[str, float]:
    con = duckdb.connect(str(demo_home / "metrics.duckdb"), read_only=True)
    rows = con.execute("SELECT metric, value FROM stage_counts WHERE stage=?", [stage]).fetchall()
    con.close()
    return dict(rows)


def test_bootstrap_encoder_lowers_loss_and_beats_random_weights(demo_home):
    from realsyn_assets.names import Asset
    from realsyn_assets.names import BootstrapEncoderMetrics as M

    counts = _stage_counts(demo_home, Asset.BOOTSTRAP_ENCODER)
    assert counts[M.LOSS_LAST] < counts[M.LOSS_FIRST]
    assert counts[M.RANDOM_PRECISION_TEXT1] <= 0.1
    assert counts[M.BOOTSTRAP_PRECISION_TEXT1] >= counts[M.RANDOM_PRECISION_TEXT1] + 0.15
    # the embeddings were computed with the bootstrap checkpoint
    stdout = (demo_home / "demo_stdout.txt").read_text()
    assert "bootstrap_encoder" in stdout


def test_hierarchical_retrieval_matches_exact_on_the_demo(demo_home):
    from realsyn_assets.names import Asset, RetrievedTextsMetrics

    con = duckdb.connect(str(demo_home / "metrics.duckdb"), read_only=True)
    recalls = [
        v
        for (v,) in con.execute(
            "SELECT value FROM stage_counts WHERE stage=? AND metric=?",
            [Asset.RETRIEVED_TEXTS, RetrievedTextsMetrics.RECALL_AT_3_VS_EXACT],
        ).fetchall()
    ]
    con.close()
    assert len(recalls) == 3 and min(recalls) >= 0.8
