"""The one Definitions object: assets, checks, resources, jobs, sensor.

Stages alternate between per-shard work and corpus-wide steps (word statistics, clusters), so
the pipeline is a sequence of jobs: `realsyn demo` runs them in order, the UI can run any of them
or an asset backfill across all of them.
"""

from __future__ import annotations

import dagster as dg

from realsyn_assets.assets import ALL_ASSETS, ALL_CHECKS
from realsyn_assets.resources import (
    EncoderResource,
    GeneratorResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.sensors import SHARD_INGEST_JOB, inbox_sensor

# (job name, assets, partitions) in pipeline order.
STAGES: list[tuple[str, list[str], str | None]] = [
    ("shard_extract_job", ["raw_documents", "extracted_images", "extracted_sentences"], "shard"),
    ("bootstrap_encoder_job", ["bootstrap_encoder"], None),
    ("shard_embed_job", ["image_embeddings", "sentence_embeddings", "image_dedup"], "shard"),
    ("word_statistics_job", ["word_statistics"], None),
    ("shard_sentence_dedup_job", ["sentence_dedup"], "shard"),
    ("sentence_clusters_job", ["sentence_clusters"], None),
    ("shard_retrieve_job", ["retrieved_texts", "synthetic_texts"], "shard"),
    ("image_clusters_job", ["image_clusters"], None),
    ("scale_job", ["balanced_subset", "clip_checkpoint", "clip_evaluation"], "scale"),
    ("quality_report_job", ["quality_report"], None),
]

# A new shard on its own (sensor, `realsyn ingest --extract`): every per-shard step up to dedup,
# embedded with the encoder as it is (the bootstrap encoder is not retrained).
SHARD_INGEST_ASSETS = STAGES[0][1] + STAGES[2][1]

# The explicit re-clustering action: sentence_clusters normally keeps its centroids and only
# assigns new sentences (reporting drift); this job fits k-means again on every kept sentence.
RECLUSTER_JOB = "recluster_sentences_job"
RECLUSTER_CONFIG = {"ops": {"sentence_clusters": {"config": {"recluster": True}}}}

JOBS = [
    dg.define_asset_job(name, selection=dg.AssetSelection.assets(*assets))
    for name, assets, _ in STAGES
] + [
    dg.define_asset_job(SHARD_INGEST_JOB, selection=dg.AssetSelection.assets(*SHARD_INGEST_ASSETS)),
    dg.define_asset_job(
        RECLUSTER_JOB,
        selection=dg.AssetSelection.assets("sentence_clusters"),
        config=RECLUSTER_CONFIG,
        description="Fit the sentence k-means again on every kept sentence (drift or growth "
        "made it due); afterwards re-run shard_retrieve_job for every shard.",
    ),
]


def make_resources(home: str = "") -> dict:
    """Resources for one REALSYN_HOME (empty = $REALSYN_HOME or ./realsyn_home at run time)."""
    return {
        "storage": StorageResource(home=home),
        "metrics": MetricsResource(home=home),
        "vectors": VectorStoreResource(home=home),
        "encoder": EncoderResource(home=home),
        "generator": GeneratorResource(),
    }


defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=JOBS,
    sensors=[inbox_sensor],
    resources=make_resources(),
)
