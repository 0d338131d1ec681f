"""embed: L2-normalised image and sentence embeddings of one shard into LanceDB."""

import hashlib
from dataclasses import dataclass

import dagster as dg
import numpy as np

from realsyn_assets.assets._checks import Result, check_result, shard_check, zero_rows_result
from realsyn_assets.assets._common import code_version, stage_metadata
from realsyn_assets.core.io import read_table
from realsyn_assets.names import (
    Asset,
    ExtractedImagesMetrics,
    ExtractedSentencesMetrics,
    Group,
    ImageEmbeddingsMetrics,
    Kind,
    SentenceEmbeddingsMetrics,
)
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    EncoderResource,
    EngineResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.resources.encoder import encode_with
from realsyn_assets.resources.engine import task_name
from realsyn_assets.resources.vectors import table_vectors, vectors_column

# |norm - 1| above this is "not unit-norm" (float32 normalisation is exact to ~1e-6)
NORM_TOLERANCE = 1e-3

# The encoder settings that change embeddings; device, precision (rounding only), batch size
# and loader workers do not.
ENCODER_CODE_VERSION = code_version(
    "1",
    EncoderResource,
    exclude=("home", "device", "precision", "batch_size", "num_workers"),
)


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
    engine: EngineResource,
) -> dg.MaterializeResult:
    """Encode one shard's items, replace the shard's rows in LanceDB, record the counts."""
    key = context.partition_key
    items = read_table(storage.layout.partition_file(spec.source, key), columns=list(spec.columns))
    enc = encoder.get()
    context.log.info(f"{key}: embedding {items.num_rows} {spec.table} with {enc.source}")
    values = items.column(spec.encoded_column).to_pylist()
    if spec is IMAGES:  # image paths are stored relative to the home
        values = [storage.layout.resolve(p) for p in values]
    # the worker (this process, or a Ray task) loads the model from the spec, once per process
    args = (enc.spec, str(enc.weights_dir), spec.encode, values)
    vecs = engine.run(encode_with, *args, progress=True, name=task_name(spec.asset, key), gpu=True)
    _refuse_non_finite(vecs, key, spec.table, enc.identity)
    table = items.append_column("vector", vectors_column(vecs.reshape(-1, enc.dim)))
    version = vectors.replace_shard(spec.table, key, table)
    data_version = _data_version(enc.identity, items.column(spec.id_column).to_pylist())
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
    return dg.MaterializeResult(metadata=meta, data_version=data_version)


def _refuse_non_finite(vecs: np.ndarray, key: str, noun: str, identity: str) -> None:
    """LanceDB refuses NaN vectors with an Arrow error; say what happened instead, before the
    shard's old rows are deleted (a NaN from the encoder is a model or precision problem)."""
    bad = int((~np.isfinite(vecs)).any(axis=1).sum()) if vecs.size else 0
    if bad:
        raise dg.Failure(
            f"{key}: {bad} of {len(vecs)} {noun} vectors from encoder {identity} are not finite "
            "(NaN or inf); nothing written. Check the model weights and the precision setting."
        )


def _data_version(identity: str, ids: list[str]) -> dg.DataVersion:
    """The encoder identity (model + weights) and the content-addressed ids it encoded: exactly
    what determines the vectors, so a new encoder or new items give a new data version (and
    stale downstream assets) while a rerun of the same gives the same one."""
    digest = hashlib.sha256("\n".join([identity, *ids]).encode()).hexdigest()[:16]
    return dg.DataVersion(f"{identity}|{digest}")


def _embedding_asset(spec: _Embedding, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.asset,
        group_name=Group.EMBED,
        partitions_def=shard_partitions,
        deps=[spec.source, Asset.BOOTSTRAP_ENCODER],
        pool="encoder",
        code_version=ENCODER_CODE_VERSION,
        kinds={Kind.PYTORCH, Kind.LANCEDB},
        description=description,
    )
    def embeddings(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        metrics: MetricsResource,
        vectors: VectorStoreResource,
        encoder: EncoderResource,
        engine: EngineResource,
    ) -> dg.MaterializeResult:
        return _embed_shard(spec, context, storage, metrics, vectors, encoder, engine)

    return embeddings


image_embeddings = _embedding_asset(
    IMAGES,
    "L2-normalised image embeddings of one shard's kept images (paper §3.2), encoded by the "
    "encoder resource (pretrained model, checkpoint or the bootstrap encoder) and stored in the "
    "LanceDB table `images` (id, shard, lineage, vector); a rerun replaces the shard's rows. "
    "The data version is the encoder identity plus the encoded ids, so a new encoder marks "
    "everything downstream stale.",
)
sentence_embeddings = _embedding_asset(
    SENTENCES,
    "L2-normalised sentence embeddings of one shard's kept sentences (paper §3.2), encoded by "
    "the encoder resource and stored in the LanceDB table `sentences` (id, shard, lineage, "
    "text, vector); a rerun replaces the shard's rows. The data version is the encoder "
    "identity plus the encoded ids.",
)


def _vectors_ok(
    spec: _Embedding, vectors: VectorStoreResource, metrics: MetricsResource, key: str
) -> Result:
    """Finite, unit-norm (within NORM_TOLERANCE), one row per kept item, no duplicate id: what
    dedup, clustering and retrieval assume of every vector. Metadata: `value` = the largest
    |norm - 1| (NaN counts as infinite), `threshold` = NORM_TOLERANCE."""
    rows = vectors.read(spec.table, shards=[key], columns=[spec.id_column, "vector"])
    expected = int(metrics.counts(spec.source, key).get(spec.source_kept, -1))
    if rows.num_rows == 0 and expected == 0:
        return zero_rows_result(f"{key} has no kept {spec.table} to embed", rows=0, expected=0)
    matrix = table_vectors(rows)
    non_finite = int((~np.isfinite(matrix)).any(axis=1).sum()) if len(matrix) else 0
    norms = np.linalg.norm(matrix, axis=1) if len(matrix) else np.ones(0)
    errors = np.nan_to_num(np.abs(norms - 1), nan=np.inf)
    norm_error = float(errors.max()) if len(errors) else 0.0
    unique = len(set(rows.column(spec.id_column).to_pylist())) == rows.num_rows
    problems = [
        p
        for p, bad in (
            (f"{non_finite} vectors with non-finite values", non_finite > 0),
            (f"not unit-norm (|norm - 1| up to {norm_error:.3g})", norm_error > NORM_TOLERANCE),
            (f"{rows.num_rows} rows != {expected} kept items", rows.num_rows != expected),
            ("duplicate ids", not unique),
        )
        if bad
    ]
    finite_norms = norms[np.isfinite(norms)]
    return check_result(
        not problems,
        "; ".join(problems) or "finite, unit-norm, one row per item",
        rows=rows.num_rows,
        expected=expected,
        non_finite=non_finite,
        value=norm_error if np.isfinite(norm_error) else 1e30,
        threshold=NORM_TOLERANCE,
        norm_min=float(finite_norms.min()) if len(finite_norms) else 0.0,
        norm_max=float(finite_norms.max()) if len(finite_norms) else 0.0,
    )


def _vectors_check(spec: _Embedding, name: str, noun: str) -> dg.AssetChecksDefinition:
    @shard_check(
        spec.asset,
        name,
        f"Every {noun} vector is finite and unit-norm, one row per kept {noun}, no id twice "
        "(ERROR, blocking: dedup, clustering and retrieval read these vectors); a shard with "
        f"no kept {noun} is a '0 rows' WARN.",
        blocking=True,
    )
    def vectors_valid(
        context: dg.AssetCheckExecutionContext,
        vectors: VectorStoreResource,
        metrics: MetricsResource,
    ) -> Result:
        return _vectors_ok(spec, vectors, metrics, context.partition_key)

    return vectors_valid


image_vectors_valid = _vectors_check(IMAGES, "image_vectors_valid", "image")
sentence_vectors_valid = _vectors_check(SENTENCES, "sentence_vectors_valid", "sentence")
