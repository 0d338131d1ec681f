"""Through Dagster: a new shard's sentences are assigned to the kept centroids, re-clustering is
an explicit job, and a switched encoder forces a refit."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from realsyn_assets.core.retrieval.clustering import CENTROIDS, MEMBERS, PROBING
from realsyn_assets.names import Asset, Job
from realsyn_assets.names import SentenceClustersMetrics as M


@pytest.fixture
def two_shard_home(fresh_home):
    layout, make_corpus = fresh_home
    return layout, make_corpus(24, 2, 5).shard_paths


def _prepare_shard(key: str) -> None:
    from realsyn_assets.pipeline import run_stage

    for job in (Job.SHARD_EXTRACT, Job.SHARD_EMBED):
        assert run_stage(job, key).success
    assert run_stage(Job.WORD_STATISTICS, None).success
    assert run_stage(Job.SHARD_SENTENCE_DEDUP, key).success


def _clusters(layout) -> tuple[dict, np.ndarray, dict]:
    out = layout.asset_dir(Asset.SENTENCE_CLUSTERS)
    members = pq.read_table(out / MEMBERS).to_pylist()
    labels = {(m["shard"], m["sentence_id"]): m["cluster"] for m in members}
    return labels, np.load(out / CENTROIDS), json.loads((out / PROBING).read_text())


def _latest_metadata(asset: str) -> dict:
    import dagster as dg

    from realsyn_assets.pipeline import get_instance

    event = get_instance().get_latest_materialization_event(dg.AssetKey(asset))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_new_shard_assigned_to_kept_centroids_then_explicit_recluster(two_shard_home):
    from realsyn_assets.definitions import RECLUSTER_JOB
    from realsyn_assets.pipeline import register, run_stage

    layout, paths = two_shard_home
    (first,) = register(layout, paths[:1])
    _prepare_shard(first)
    report = run_stage(
        Job.SENTENCE_CLUSTERS,
        None,
        {"ops": {Asset.SENTENCE_CLUSTERS: {"config": {"n_clusters": 3}}}},
    )
    assert report.success and not report.checks_failed
    meta = _latest_metadata(Asset.SENTENCE_CLUSTERS)
    assert meta["mode"] == "fit" and meta["fit_reason"] == "no earlier clustering"
    labels_1, centroids_1, probe = _clusters(layout)
    assert probe["margin"] is not None and probe["sample_images"] > 0

    (second,) = register(layout, paths[1:])
    _prepare_shard(second)
    assert run_stage(Job.SENTENCE_CLUSTERS, None).success
    meta = _latest_metadata(Asset.SENTENCE_CLUSTERS)
    labels_2, centroids_2, _ = _clusters(layout)
    assert meta["mode"] == "incremental"
    np.testing.assert_array_equal(centroids_1, centroids_2)  # no retraining
    new = {k: v for k, v in labels_2.items() if k[0] == second}
    assert len(new) > 0 and meta[M.ASSIGNED_NOW] == len(new)
    assert meta[M.SENTENCES] == len(labels_2) and meta[M.FIT_SENTENCES] == len(labels_1)
    for key, label in labels_1.items():  # old shard's assignments unchanged
        assert labels_2[key] == label
    assert isinstance(meta[M.DRIFT], float) and np.isfinite(meta[M.DRIFT])
    # vectors.npy is written in cluster order (contiguous clusters for the memory map)
    order = [
        m["cluster"]
        for m in pq.read_table(
            layout.asset_dir(Asset.SENTENCE_CLUSTERS) / MEMBERS, columns=["cluster"]
        ).to_pylist()
    ]
    assert order == sorted(order)
    for key in (first, second):
        report = run_stage(Job.SHARD_RETRIEVE, key)
        assert report.success, report
        assert not [c for c in report.checks_failed if "recall" in c or "three_texts" in c]

    # an interrupted refit (new centroids, old state) is detected and leads to a clean refit
    cdir = layout.asset_dir(Asset.SENTENCE_CLUSTERS)
    np.save(cdir / CENTROIDS, np.load(cdir / CENTROIDS)[::-1].copy())
    assert run_stage(Job.SENTENCE_CLUSTERS, None).success
    assert _latest_metadata(Asset.SENTENCE_CLUSTERS)["mode"] == "fit"

    report = run_stage(RECLUSTER_JOB, None)
    assert report.success
    meta = _latest_metadata(Asset.SENTENCE_CLUSTERS)
    assert meta["mode"] == "fit" and "requested" in meta["fit_reason"]
    assert meta[M.FIT_SENTENCES] == meta[M.SENTENCES] == len(labels_2)

    # the same action from the command line, followed by re-retrieval of every shard
    from realsyn_assets import cli

    def retrieved_at() -> dict[str, int]:
        return {
            key: layout.partition_file(Asset.RETRIEVED_TEXTS, key).stat().st_mtime_ns
            for key in (first, second)
        }

    before = retrieved_at()
    assert cli.main(["recluster", "--home", str(layout.root)]) == 0
    assert _latest_metadata(Asset.SENTENCE_CLUSTERS)["mode"] == "fit"
    after = retrieved_at()
    assert all(after[key] > before[key] for key in before)


def test_switched_encoder_forces_a_refit(two_shard_home, monkeypatch):
    from realsyn_assets.pipeline import register, run_stage

    layout, paths = two_shard_home
    keys = register(layout, paths)
    for key in keys:
        _prepare_shard(key)
    assert run_stage(Job.SENTENCE_CLUSTERS, None).success
    assert _latest_metadata(Asset.SENTENCE_CLUSTERS)["mode"] == "fit"
    assert run_stage(Job.SENTENCE_CLUSTERS, None).success
    assert _latest_metadata(Asset.SENTENCE_CLUSTERS)["mode"] == "incremental"
    # another encoder (realsyn-tiny with other weights, as a configured checkpoint)
    from realsyn_assets.core.embedding.encoder import ensure_local_weights

    other = ensure_local_weights("realsyn-tiny", layout.root / "other.pt", seed=7)
    for key in keys:
        config = {"resources": {"encoder": {"config": {"checkpoint": str(other)}}}}
        assert run_stage(Job.SHARD_EMBED, key, config).success
    assert run_stage(Job.SHARD_SENTENCE_DEDUP, keys[0]).success
    assert run_stage(Job.SENTENCE_CLUSTERS, None).success
    meta = _latest_metadata(Asset.SENTENCE_CLUSTERS)
    assert meta["mode"] == "fit" and "embedding space changed" in meta["fit_reason"]
