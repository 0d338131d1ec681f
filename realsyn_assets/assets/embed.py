"""embed: L2-normalised image and sentence embeddings of one shard into LanceDB."""

from dataclasses import dataclass

import dagster as dg
import numpy as np

from realsyn_assets.assets._checks import Result, check_result, shard_check, zero_rows_result
from realsyn_assets.assets._common import stage_metadata
from realsyn_assets.core.io import read_table
from realsyn_assets.names import (
    Asset,
    ExtractedImagesMetrics,
    ExtractedSentencesMetrics,
    Group,
    ImageEmbeddingsMetrics,
    SentenceEmbeddingsMetrics,
)
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.resources.vectors import table_vectors, vectors_column


@dataclass(frozen=True)
class _Embedding:
    """What one embedding asset reads, encodes and writes."""

    asset: str
    source: str  # the asset of the shard's extracted items
    source_kept: str  # the source's metric: items kept (= rows expected in LanceDB)
    columns: tuple[str, ...]  # lineage columns copied to LanceDB; the first is the id
    encoded_column: str  # "path" (images) or "text" (sentences)
    encode: str  # the encoder's method for that column
    table: str  # LanceDB table, also the noun in log lines
    metric: str  # rows embedded

    @property
    def id_column(self) -> str:
        return self.columns[0]


IMAGES = _Embedding(
    Asset.IMAGE_EMBEDDINGS,
    Asset.EXTRACTED_IMAGES,
    ExtractedImagesMetrics.IMAGES_KEPT,
    ("image_id", "shard", "doc_id", "position", "path"),
    "path",
    "encode_images",
    "images",
    ImageEmbeddingsMetrics.IMAGES_EMBEDDED,
)
SENTENCES = _Embedding(
    Asset.SENTENCE_EMBEDDINGS,
    Asset.EXTRACTED_SENTENCES,
    ExtractedSentencesMetrics.SENTENCES_KEPT,
    ("sentence_id", "shard", "doc_id", "position", "sent_index", "text"),
    "text",
    "encode_texts",
    "sentences",
    SentenceEmbeddingsMetrics.SENTENCES_EMBEDDED,
)


def _embed_shard(
    spec: _Embedding,
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    """Encode one shard's items, replace the shard's rows in LanceDB, record the counts."""
    key = context.partition_key
    items = read_table(storage.layout.partition_file(spec.source, key), columns=list(spec.columns))
    enc = encoder.get()
    context.log.info(f"{key}: embedding {items.num_rows} {spec.table} with {enc.source}")
    encode = getattr(enc, spec.encode)
    values = items.column(spec.encoded_column).to_pylist()
    if spec is IMAGES:  # image paths are stored relative to the home
        values = [storage.layout.resolve(p) for p in values]
    vecs = encode(values, progress=True)
    table = items.append_column("vector", vectors_column(vecs.reshape(-1, enc.dim)))
    version = vectors.replace_shard(spec.table, key, table)
    meta = stage_metadata(metrics, spec.asset, key, {spec.metric: table.num_rows})
    norms = np.linalg.norm(vecs, axis=1) if len(vecs) else np.ones(1)
    meta.update(
        {
            "encoder": enc.identity,
            "encoder_kind": encoder.kind(),
            "encoder_source": enc.source,
            "dim": int(enc.dim),
            "lancedb_table_version": version,
            "norm_min": float(norms.min()),
            "norm_max": float(norms.max()),
        }
    )
    return dg.MaterializeResult(metadata=meta)


def _embedding_asset(spec: _Embedding, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.asset,
        group_name=Group.EMBED,
        partitions_def=shard_partitions,
        deps=[spec.source, Asset.BOOTSTRAP_ENCODER],
        pool="encoder",
        description=description,
    )
    def embeddings(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        metrics: MetricsResource,
        vectors: VectorStoreResource,
        encoder: EncoderResource,
    ) -> dg.MaterializeResult:
        return _embed_shard(spec, context, storage, metrics, vectors, encoder)

    return embeddings


image_embeddings = _embedding_asset(
    IMAGES,
    "Image embeddings of one shard's kept images in the LanceDB table `images` "
    "(id, shard, lineage, vector); a rerun replaces the shard's rows.",
)
sentence_embeddings = _embedding_asset(
    SENTENCES,
    "Sentence embeddings of one shard's kept sentences in the LanceDB table "
    "`sentences` (id, shard, lineage, text, vector); a rerun replaces the shard's rows.",
)


def _vectors_ok(
    spec: _Embedding, vectors: VectorStoreResource, metrics: MetricsResource, key: str
) -> Result:
    rows = vectors.read(spec.table, shards=[key], columns=[spec.id_column, "vector"])
    expected = int(metrics.counts(spec.source, key).get(spec.source_kept, -1))
    if rows.num_rows == 0 and expected == 0:
        return zero_rows_result(f"{key} has no kept {spec.table} to embed", rows=0)
    matrix = table_vectors(rows)
    norms = np.linalg.norm(matrix, axis=1) if len(matrix) else np.ones(0)
    finite = bool(np.isfinite(matrix).all())
    unit = bool(np.all(np.abs(norms - 1) < 1e-3))
    unique = len(set(rows.column(spec.id_column).to_pylist())) == rows.num_rows
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


def _vectors_check(spec: _Embedding, name: str, noun: str) -> dg.AssetChecksDefinition:
    @shard_check(spec.asset, name, f"Finite, unit-norm, one row per kept {noun}.")
    def vectors_valid(
        context: dg.AssetCheckExecutionContext,
        vectors: VectorStoreResource,
        metrics: MetricsResource,
    ) -> Result:
        return _vectors_ok(spec, vectors, metrics, context.partition_key)

    return vectors_valid


image_vectors_valid = _vectors_check(IMAGES, "image_vectors_valid", "image")
sentence_vectors_valid = _vectors_check(SENTENCES, "sentence_vectors_valid", "sentence")
