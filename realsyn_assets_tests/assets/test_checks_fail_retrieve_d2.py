"""The retrieval checks fail on bad data: a broken stored clustering, stale centroids, images
without three distinct texts, retrieval that misses the exact neighbours or records no recall;
and the blocking `three_texts_per_image` keeps the shard's downstream asset from running."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from realsyn_assets.assets import retrieve
from realsyn_assets.core.io import write_table
from realsyn_assets.core.retrieval.clustering import CENTROIDS, MEMBERS, VECTORS
from realsyn_assets.names import (
    CORPUS,
    Asset,
    RetrievedTextsMetrics,
    SentenceClustersMetrics,
    SentenceDedupMetrics,
)
from realsyn_assets.partitions import SHARDS, shard_partitions
from realsyn_assets.resources import HomeResource, MetricsResource, StorageResource

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
SHARD = "shard-000"


@pytest.fixture
def home(tmp_path):
    resource = HomeResource(path=str(tmp_path))
    return StorageResource(home=resource), MetricsResource(home=resource)


def _meta(result) -> dict:
    return {k: v.value for k, v in result.metadata.items()}


def _write_clustering(storage, labels, centroids, vector_rows=None) -> None:
    n = len(labels)
    out = storage.layout.asset_dir(Asset.SENTENCE_CLUSTERS)
    out.mkdir(parents=True, exist_ok=True)
    members = pa.table(
        {
            "sentence_id": [f"snt_{i}" for i in range(n)],
            "shard": [SHARD] * n,
            "cluster": pa.array(labels, pa.int64()),
        }
    )
    write_table(members, out / MEMBERS)
    rows = n if vector_rows is None else vector_rows
    np.save(out / VECTORS, np.ones((rows, 4), np.float32))
    np.save(out / CENTROIDS, np.asarray(centroids, np.float32))


def test_clusters_cover_sentences_fails_on_a_broken_stored_clustering(home):
    storage, metrics = home
    missing = retrieve.cluster_cover_result(storage, metrics)  # nothing stored yet
    assert not missing.passed and missing.severity == ERROR
    metrics.record(Asset.SENTENCE_DEDUP, SHARD, {SentenceDedupMetrics.SENTENCES_KEPT: 6})
    good = ([0, 0, 1, 1, 2, 2], np.eye(3, 4))
    _write_clustering(storage, *good)
    assert retrieve.cluster_cover_result(storage, metrics).passed

    broken = {
        "a sentence more than dedup kept": ([0, 0, 1, 1, 2, 2, 2], np.eye(3, 4)),
        "a label outside 0..k-1": ([0, 0, 1, 1, 2, 7], np.eye(3, 4)),
        "NaN centroids": ([0, 0, 1, 1, 2, 2], np.full((3, 4), np.nan)),
        "most clusters empty": ([0, 0, 0, 0, 0, 0], np.eye(3, 4)),
    }
    for why, (labels, centroids) in broken.items():
        _write_clustering(storage, labels, centroids)
        result = retrieve.cluster_cover_result(storage, metrics)
        assert not result.passed and result.severity == ERROR, why
    _write_clustering(storage, *good, vector_rows=5)  # vectors.npy lost a row
    result = retrieve.cluster_cover_result(storage, metrics)
    assert not result.passed and _meta(result)["vector_rows"] == 5
    assert _meta(result)["max_empty_share"] == retrieve.MAX_EMPTY_CLUSTER_SHARE


def test_clusters_current_fails_when_reclustering_is_due_or_nothing_was_recorded(home):
    _, metrics = home
    M = SentenceClustersMetrics
    nothing = retrieve.clusters_current_result(metrics)
    assert not nothing.passed and nothing.severity == WARN
    fit = {M.SENTENCES: 100, M.FIT_SENTENCES: 100, M.DRIFT_THRESHOLD: 0.05}
    metrics.record(Asset.SENTENCE_CLUSTERS, CORPUS, {**fit, M.DRIFT: 0.01, M.RECLUSTER_DUE: 0})
    assert retrieve.clusters_current_result(metrics).passed
    metrics.record(Asset.SENTENCE_CLUSTERS, CORPUS, {**fit, M.DRIFT: 0.2, M.RECLUSTER_DUE: 1})
    due = retrieve.clusters_current_result(metrics)
    assert not due.passed and due.severity == WARN
    assert _meta(due)["drift"] == 0.2 and _meta(due)["drift_threshold"] == 0.05


def _write_retrieved(storage, rows: list[tuple], kept: list[str]) -> None:
    """rows: (image_id, (id1, id2, id3), (score1, score2, score3))."""
    layout = storage.layout
    dedup = pa.table({"image_id": kept, "shard": [SHARD] * len(kept), "kept": [True] * len(kept)})
    write_table(dedup, layout.partition_file(Asset.IMAGE_DEDUP, SHARD))
    columns: dict = {"image_id": [r[0] for r in rows]}
    for j in range(3):
        columns[f"text{j + 1}_id"] = pa.array([r[1][j] for r in rows], pa.string())
        columns[f"text{j + 1}_score"] = pa.array([r[2][j] for r in rows], pa.float32())
    write_table(pa.table(columns), layout.partition_file(Asset.RETRIEVED_TEXTS, SHARD))


GOOD_ROWS = [
    ("img_a", ("s1", "s2", "s3"), (0.9, 0.8, 0.7)),
    ("img_b", ("s4", "s5", "s6"), (0.6, 0.6, 0.1)),
]


def test_three_texts_per_image_fails_on_repeated_texts_missing_images_or_bad_scores(home):
    storage, _ = home
    _write_retrieved(storage, GOOD_ROWS, ["img_a", "img_b"])
    assert retrieve._three_texts_ok(storage, SHARD).passed
    bad = {
        "missing_images": (GOOD_ROWS, ["img_a", "img_b", "img_c"]),
        "repeated_texts": ([GOOD_ROWS[0], ("img_b", ("s4", "s4", "s6"), (0.6, 0.5, 0.1))], None),
        "missing_texts": ([GOOD_ROWS[0], ("img_b", ("s4", "s5", None), (0.6, 0.5, 0.1))], None),
        "unordered_scores": ([GOOD_ROWS[0], ("img_b", ("s4", "s5", "s6"), (0.1, 0.5, 0.6))], None),
        "unexpected_images": (GOOD_ROWS + [GOOD_ROWS[1]], None),
    }
    for key, (rows, kept) in bad.items():
        _write_retrieved(storage, rows, kept or ["img_a", "img_b"])
        result = retrieve._three_texts_ok(storage, SHARD)
        assert not result.passed and result.severity == ERROR, key
        assert _meta(result)[key] >= 1 and _meta(result)["threshold"] == 0, key
    nan = [GOOD_ROWS[0], ("img_b", ("s4", "s5", "s6"), (float("nan"), 0.5, 0.1))]
    _write_retrieved(storage, nan, ["img_a", "img_b"])
    assert _meta(retrieve._three_texts_ok(storage, SHARD))["unordered_scores"] == 1


def test_hierarchical_recall_vs_exact_fails_below_the_minimum_or_without_a_recall(home):
    _, metrics = home
    R = RetrievedTextsMetrics
    metrics.record(Asset.RETRIEVED_TEXTS, SHARD, {R.IMAGES: 5})
    absent = retrieve._recall_ok(metrics, SHARD)  # the old check passed here
    assert not absent.passed and absent.severity == WARN
    metrics.record(Asset.RETRIEVED_TEXTS, SHARD, {R.IMAGES: 5, R.recall_vs_exact(3): 0.5})
    low = retrieve._recall_ok(metrics, SHARD)
    assert not low.passed and low.severity == WARN
    assert _meta(low) == {"recall": 0.5, "threshold": retrieve.MIN_RECALL_VS_EXACT}
    metrics.record(Asset.RETRIEVED_TEXTS, SHARD, {R.IMAGES: 5, R.recall_vs_exact(3): 0.95})
    assert retrieve._recall_ok(metrics, SHARD).passed
    # exact search is its own reference: it records recall 1 instead of nothing
    exact = retrieve.RetrievalConfig(mode="exact")
    assert retrieve._recall_vs_exact(exact, None, None, None, None) == 1.0


def test_three_texts_per_image_fails_and_blocks_the_shards_synthetic_texts(home):
    """The real blocking check between a retrieved_texts that writes an image with a repeated
    text and a stand-in synthetic_texts: the check fails with ERROR and the downstream asset of
    the same run never materializes."""
    storage, _ = home
    ran = []

    @dg.asset(name=Asset.RETRIEVED_TEXTS, partitions_def=shard_partitions)
    def corrupted_retrieved_texts() -> None:
        bad = ("img_b", ("s4", "s4", "s6"), (0.6, 0.5, 0.1))
        _write_retrieved(storage, [GOOD_ROWS[0], bad], ["img_a", "img_b"])

    @dg.asset(
        name=Asset.SYNTHETIC_TEXTS, partitions_def=shard_partitions, deps=[Asset.RETRIEVED_TEXTS]
    )
    def downstream() -> None:
        ran.append(True)

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS, [SHARD])
    result = dg.materialize(
        [corrupted_retrieved_texts, downstream, retrieve.three_texts_per_image],
        partition_key=SHARD,
        instance=instance,
        resources={"storage": storage},
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "three_texts_per_image"
    assert not evaluation.passed and evaluation.severity == ERROR
    assert evaluation.metadata["repeated_texts"].value == 1
    assert not ran
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {Asset.RETRIEVED_TEXTS}
