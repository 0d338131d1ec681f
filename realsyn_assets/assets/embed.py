"""embed: L2-normalised image and sentence embeddings of one shard into LanceDB."""

import dagster as dg
import numpy as np

from realsyn_assets.assets._checks import Result, check_result, shard_check
from realsyn_assets.assets._common import stage_metadata
from realsyn_assets.core.io import read_table
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.resources.vectors import vectors_column


def _embedding_metadata(resource, encoder, vectors: np.ndarray, version: int) -> dict:
    norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.ones(1)
    return {
        "encoder": encoder.identity,
        "encoder_kind": resource.kind(),
        "encoder_source": encoder.source,
        "dim": int(encoder.dim),
        "lancedb_table_version": version,
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
    }


@dg.asset(
    group_name="embed",
    partitions_def=shard_partitions,
    deps=["extracted_images", "bootstrap_encoder"],
    pool="encoder",
    description="Image embeddings of one shard's kept images in the LanceDB table `images` "
    "(id, shard, lineage, vector); a rerun replaces the shard's rows.",
)
def image_embeddings(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    key = context.partition_key
    images = read_table(
        storage.layout.partition_file("extracted_images", key),
        columns=["image_id", "shard", "doc_id", "position", "path"],
    )
    enc = encoder.get()
    context.log.info(f"{key}: embedding {images.num_rows} images with {enc.source}")
    vecs = enc.encode_images(images.column("path").to_pylist(), progress=True)
    table = images.append_column("vector", vectors_column(vecs.reshape(-1, enc.dim)))
    version = vectors.replace_shard("images", key, table)
    counts = {"images_embedded": table.num_rows}
    meta = stage_metadata(metrics, "image_embeddings", key, counts)
    meta.update(_embedding_metadata(encoder, enc, vecs, version))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name="embed",
    partitions_def=shard_partitions,
    deps=["extracted_sentences", "bootstrap_encoder"],
    pool="encoder",
    description="Sentence embeddings of one shard's kept sentences in the LanceDB table "
    "`sentences` (id, shard, lineage, text, vector); a rerun replaces the shard's rows.",
)
def sentence_embeddings(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    key = context.partition_key
    sentences = read_table(
        storage.layout.partition_file("extracted_sentences", key),
        columns=["sentence_id", "shard", "doc_id", "position", "sent_index", "text"],
    )
    enc = encoder.get()
    context.log.info(f"{key}: embedding {sentences.num_rows} sentences with {enc.source}")
    vecs = enc.encode_texts(sentences.column("text").to_pylist(), progress=True)
    table = sentences.append_column("vector", vectors_column(vecs.reshape(-1, enc.dim)))
    version = vectors.replace_shard("sentences", key, table)
    counts = {"sentences_embedded": table.num_rows}
    meta = stage_metadata(metrics, "sentence_embeddings", key, counts)
    meta.update(_embedding_metadata(encoder, enc, vecs, version))
    return dg.MaterializeResult(metadata=meta)


def _vectors_ok(
    vectors: VectorStoreResource,
    metrics: MetricsResource,
    table: str,
    key: str,
    source_stage: str,
    source_metric: str,
    id_column: str,
) -> Result:
    from realsyn_assets.resources.vectors import table_vectors

    rows = vectors.read(table, shards=[key], columns=[id_column, "vector"])
    matrix = table_vectors(rows)
    expected = int(metrics.counts(source_stage, key).get(source_metric, -1))
    norms = np.linalg.norm(matrix, axis=1) if len(matrix) else np.ones(0)
    finite = bool(np.isfinite(matrix).all())
    unit = bool(np.all(np.abs(norms - 1) < 1e-3))
    unique = len(set(rows.column(id_column).to_pylist())) == rows.num_rows
    problems = [
        p
        for p, bad in (
            ("non-finite values", not finite),
            ("not unit-norm", not unit),
            (f"{rows.num_rows} rows != {expected} kept items", rows.num_rows != expected),
            ("duplicate ids", not unique),
        )
        if bad
    ]
    return check_result(
        not problems,
        "; ".join(problems) or "finite, unit-norm, one row per item",
        rows=rows.num_rows,
        norm_min=float(norms.min()) if len(norms) else 1.0,
        norm_max=float(norms.max()) if len(norms) else 1.0,
    )


@shard_check(
    "image_embeddings", "image_vectors_valid", "Finite, unit-norm, one row per kept image."
)
def image_vectors_valid(
    context: dg.AssetCheckExecutionContext, vectors: VectorStoreResource, metrics: MetricsResource
) -> Result:
    return _vectors_ok(
        vectors,
        metrics,
        "images",
        context.partition_key,
        "extracted_images",
        "images_kept",
        "image_id",
    )


@shard_check(
    "sentence_embeddings", "sentence_vectors_valid", "Finite, unit-norm, one row per kept sentence."
)
def sentence_vectors_valid(
    context: dg.AssetCheckExecutionContext, vectors: VectorStoreResource, metrics: MetricsResource
) -> Result:
    return _vectors_ok(
        vectors,
        metrics,
        "sentences",
        context.partition_key,
        "extracted_sentences",
        "sentences_kept",
        "sentence_id",
    )
