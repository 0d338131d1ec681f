"""dedup: the redundancy filter (paper §3.1), exact, perceptual and semantic near-duplicates
across ALL shards.

Incremental by registration order: a shard is compared with every item of the shards registered
before it (their stored hashes, signatures and vectors, nothing recomputed), so earlier shards'
decisions never change when a shard is added and reruns give the same answer. The decision
itself is `core/dedup/incremental.py`.
"""

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from realsyn_assets.assets._checks import (
    Result,
    check_result,
    funnel_check,
    shard_check,
    zero_rows_result,
)
from realsyn_assets.assets._common import code_version, rejection_counts, stage_metadata
from realsyn_assets.core.dedup.incremental import (
    Stage,
    decide,
    duplicate_of,
    exact_stage,
    merge_reasons,
    near_text_stage,
    perceptual_stage,
    phash_values,
    row_index,
    semantic_stage,
    shards_before,
    text_signatures,
)
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.core.semantic_filter.sentence_filter import score_summary
from realsyn_assets.names import (
    Asset,
    Group,
    ImageDedupMetrics,
    Kind,
    SemanticFilterMetrics,
    SentenceDedupMetrics,
)
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)

IMAGE_COLUMNS = ["image_id", "shard", "doc_id", "position", "path", "phash"]
SENTENCE_COLUMNS = ["sentence_id", "shard", "doc_id", "position", "sent_index", "text"]


class SemanticDedupConfig(dg.Config):
    semantic_threshold: float = Field(
        0.95, description="Embedding cosine at or above which two items are semantic duplicates."
    )
    semantic_with_weak_encoder: bool = Field(
        False,
        description="Run the semantic stage with random or bootstrap encoder weights too (their "
        "cosine does not mean 'same content'); by default only a pretrained model or checkpoint.",
    )


class ImageDedupConfig(SemanticDedupConfig):
    phash_max_distance: int = Field(
        12,
        description="Largest Hamming distance of two 64-bit pHashes that are perceptual "
        "duplicates; max recall at precision >= 0.99 in `realsyn bench calibrate-dedup` "
        "(calibration/dedup_thresholds.json).",
    )


class SentenceDedupConfig(SemanticDedupConfig):
    text_near_duplicate_threshold: float = Field(
        0.65,
        description="MinHash Jaccard of character 4-grams at or above which two sentences are "
        "near-duplicates. Lower values find more generated near-duplicates, but templated yet "
        "different sentences share about half their 4-grams; 0.65 keeps precision first.",
    )


def _earlier(storage: StorageResource, asset: str, key: str, columns: list[str]) -> pa.Table:
    """Rows of every shard registered before `key` (an empty table when there is none)."""
    before = shards_before(storage.layout.shard_order(), key)
    if storage.shard_files(asset, before):
        return storage.read_shards(asset, before, columns=columns)
    return pa.table({column: pa.array([]) for column in columns})


def _semantic_stages(
    context: dg.AssetExecutionContext,
    config: SemanticDedupConfig,
    encoder: EncoderResource,
    vectors: VectorStoreResource,
    table_name: str,
    id_column: str,
    rows: list[tuple[str, str]],
    n_earlier: int,
) -> tuple[bool, list[Stage]]:
    """(enabled, the semantic stage if the shard has items) for (shard, id) rows, earlier first.

    Cosine means "same content" only under a configured pretrained model or checkpoint; random
    and bootstrap weights need `semantic_with_weak_encoder`.
    """
    enabled = config.semantic_with_weak_encoder or encoder.kind() in ("pretrained", "checkpoint")
    if not enabled:
        context.log.info(
            f"semantic {table_name} dedup skipped: encoder has random weights "
            "(configure a pretrained model or checkpoint, or force it in config)"
        )
    if not enabled or len(rows) == n_earlier:
        return enabled, []
    stored, matrix = vectors.shard_matrix(table_name, sorted({shard for shard, _ in rows}))
    stored_ids = stored.column(id_column).to_pylist()
    index = row_index(list(zip(stored.column("shard").to_pylist(), stored_ids, strict=True)), rows)
    if (index < 0).any():
        raise dg.Failure(
            f"{table_name} embeddings missing for {int((index < 0).sum())} rows: materialize "
            f"the embeddings of {context.partition_key} and of all earlier shards first"
        )
    return True, [semantic_stage(matrix[index], n_earlier, config.semantic_threshold)]


def _with_decision(table: pa.Table, keep, reasons: list, representatives: list) -> pa.Table:
    return (
        table.append_column("kept", pa.array(keep))
        .append_column("reason", pa.array(reasons, pa.string()))
        .append_column("duplicate_of", pa.array(representatives, pa.string()))
    )


@dg.asset(
    group_name=Group.DEDUP,
    partitions_def=shard_partitions,
    deps=[Asset.EXTRACTED_IMAGES, Asset.IMAGE_EMBEDDINGS],
    code_version=code_version("1", ImageDedupConfig),
    kinds={Kind.PARQUET, Kind.LANCEDB},
    description="Redundancy filter for one shard's images against every earlier shard (paper "
    "§3.1): exact (same bytes), perceptual (pHash Hamming <= phash_max_distance) and semantic "
    "(embedding cosine from LanceDB) duplicates, grouped with union-find; one deterministic "
    "representative per group. One row per image with kept, reason and duplicate_of in "
    "`data/image_dedup/<shard>.parquet`; a rerun gives the same decisions.",
)
def image_dedup(
    context: dg.AssetExecutionContext,
    config: ImageDedupConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    key = context.partition_key
    current = read_table(
        storage.layout.partition_file(Asset.EXTRACTED_IMAGES, key), columns=IMAGE_COLUMNS
    )
    earlier = _earlier(storage, Asset.EXTRACTED_IMAGES, key, ["image_id", "shard", "phash"])
    e_ids = earlier.column("image_id").to_pylist()
    c_ids = current.column("image_id").to_pylist()
    hashes = np.concatenate([phash_values(earlier), phash_values(current)])
    stages = [
        exact_stage(e_ids, c_ids),
        perceptual_stage(hashes, len(e_ids), config.phash_max_distance),
    ]
    e_shards = earlier.column("shard").to_pylist()
    rows = list(zip(e_shards + [key] * len(c_ids), e_ids + c_ids, strict=True))
    semantic, more = _semantic_stages(
        context, config, encoder, vectors, "images", "image_id", rows, len(e_ids)
    )
    keep, reasons, rep = decide(len(e_ids), len(c_ids), stages + more)
    out_table = _with_decision(
        current.drop_columns(["phash"]), keep, reasons, duplicate_of(e_ids + c_ids, keep, rep)
    )
    out = write_table(out_table, storage.layout.partition_file(Asset.IMAGE_DEDUP, key))
    M = ImageDedupMetrics
    counts = {
        M.IMAGES_IN: len(c_ids),
        M.IMAGES_KEPT: int(keep.sum()),
        M.IMAGES_REMOVED: int((~keep).sum()),
        M.COMPARED_WITH_EARLIER: len(e_ids),
        M.SEMANTIC_ENABLED: int(semantic),
    }
    rejections = rejection_counts(reasons)
    return dg.MaterializeResult(
        metadata=stage_metadata(metrics, Asset.IMAGE_DEDUP, key, counts, rejections, out_table, out)
    )


def _semantic_filter_result(
    storage: StorageResource, metrics: MetricsResource, key: str, ids: list[str]
) -> tuple[pa.Table, bool]:
    """The shard's semantic_filter rows (aligned with `ids`) and whether its scores were reused."""
    table = read_table(storage.layout.partition_file(Asset.SEMANTIC_FILTER, key))
    if table.column("sentence_id").to_pylist() != ids:
        raise dg.Failure(
            f"semantic_filter of {key} does not match its extracted_sentences: "
            "materialize semantic_filter for this shard first"
        )
    recorded = metrics.counts(Asset.SEMANTIC_FILTER, key)
    return table, bool(recorded.get(SemanticFilterMetrics.SCORES_FROM_WORD_STATISTICS, 0))


def _signatures(storage: StorageResource, shards: list[str], key: str, texts: list[str]):
    """MinHash signatures of the earlier shards (stored, or made once) and of this shard."""
    home = storage.layout

    def stored(shard: str, texts: list[str] | None = None) -> np.ndarray:
        source = home.partition_file(Asset.EXTRACTED_SENTENCES, shard)
        return text_signatures(
            home.partition_file(Asset.SENTENCE_DEDUP, shard, ".minhash.npy"),
            texts,
            lambda: read_table(source, columns=["text"]).column("text").to_pylist(),
        )

    if not texts:
        return np.zeros((0, 64), np.uint64)
    return np.concatenate([stored(s) for s in dict.fromkeys(shards)] + [stored(key, texts)])


@dg.asset(
    group_name=Group.DEDUP,
    partitions_def=shard_partitions,
    deps=[Asset.EXTRACTED_SENTENCES, Asset.SENTENCE_EMBEDDINGS, Asset.SEMANTIC_FILTER],
    code_version=code_version("1", SentenceDedupConfig),
    kinds={Kind.PARQUET, Kind.LANCEDB},
    description="Redundancy filter for one shard's sentences after the semantic filter (paper "
    "§3.1): exact (normalised text), near-duplicate (MinHash) and semantic (embedding cosine "
    "from LanceDB) duplicates against every earlier shard; semantic_filter's rejections are "
    "carried over first. One row per sentence with scores, kept, reason and duplicate_of in "
    "`data/sentence_dedup/<shard>.parquet` (MinHash signatures beside it); a rerun gives the "
    "same decisions.",
)
def sentence_dedup(
    context: dg.AssetExecutionContext,
    config: SentenceDedupConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    key = context.partition_key
    current = read_table(
        storage.layout.partition_file(Asset.EXTRACTED_SENTENCES, key), columns=SENTENCE_COLUMNS
    )
    texts = current.column("text").to_pylist()
    c_ids = current.column("sentence_id").to_pylist()
    scores, reused = _semantic_filter_result(storage, metrics, key, c_ids)
    earlier = _earlier(storage, Asset.EXTRACTED_SENTENCES, key, ["sentence_id", "shard"])
    e_ids, e_shards = earlier.column("sentence_id").to_pylist(), earlier.column("shard").to_pylist()
    signatures = _signatures(storage, e_shards, key, texts)
    stages = [
        exact_stage(e_ids, c_ids),
        near_text_stage(signatures, len(e_ids), config.text_near_duplicate_threshold),
    ]
    rows = list(zip(e_shards + [key] * len(c_ids), e_ids + c_ids, strict=True))
    semantic, more = _semantic_stages(
        context, config, encoder, vectors, "sentences", "sentence_id", rows, len(e_ids)
    )
    keep, reasons, rep = decide(len(e_ids), len(c_ids), stages + more)
    semantic_reasons = scores.column("reason").to_pylist()
    final_keep, final_reasons = merge_reasons(semantic_reasons, reasons)
    entropy, perplexity = scores.column("entropy"), scores.column("perplexity")
    out_table = _with_decision(
        current.append_column("entropy", entropy).append_column("perplexity", perplexity),
        final_keep,
        final_reasons,
        duplicate_of(e_ids + c_ids, keep, rep),
    )
    out = write_table(out_table, storage.layout.partition_file(Asset.SENTENCE_DEDUP, key))
    entropy_mean, perplexity_median = score_summary(entropy.to_numpy(), perplexity.to_numpy())
    M = SentenceDedupMetrics
    counts = {
        M.SENTENCES_IN: len(c_ids),
        M.SENTENCES_KEPT: int(final_keep.sum()),
        M.SENTENCES_REMOVED: int((~final_keep).sum()),
        M.AFTER_SEMANTIC_FILTER: int(sum(r is None for r in semantic_reasons)),
        M.COMPARED_WITH_EARLIER: len(e_ids),
        M.SEMANTIC_ENABLED: int(semantic),
        M.SCORES_FROM_WORD_STATISTICS: int(reused),
        M.ENTROPY_MEAN: entropy_mean,
        M.PERPLEXITY_MEDIAN: perplexity_median,
    }
    rejections = rejection_counts(final_reasons)
    meta = stage_metadata(metrics, Asset.SENTENCE_DEDUP, key, counts, rejections, out_table, out)
    return dg.MaterializeResult(metadata=meta)


def _no_duplicate_survivors(
    storage: StorageResource, asset: str, id_column: str, key: str
) -> Result:
    """No id survives twice across all shards; a shard with no survivor is a "0 rows" WARN."""
    import duckdb

    files = [str(p) for p in storage.shard_files(asset)]
    con = duckdb.connect()
    dupes, kept, here = con.execute(
        f"SELECT count(*) - count(DISTINCT {id_column}), count(*), "
        "count(*) FILTER (WHERE filename = ?) FROM read_parquet(?, filename = true) WHERE kept",
        [str(storage.layout.partition_file(asset, key)), files],
    ).fetchone()
    con.close()
    description = f"{dupes} duplicate ids among {kept} survivors across {len(files)} shards"
    metadata = {
        "value": int(dupes),
        "threshold": 0,
        "survivors": int(kept),
        "shard_survivors": int(here),
    }
    if dupes == 0 and here == 0:
        return zero_rows_result(f"no {id_column} of {key} survives; {description}", **metadata)
    return check_result(dupes == 0 and kept > 0, description, **metadata)


@shard_check(
    Asset.IMAGE_DEDUP,
    "unique_image_survivors",
    "No image id survives twice across all shards (ERROR, blocking: retrieval, synthesis and "
    "the balanced subset would carry the image twice); a shard with no survivor is a '0 rows' "
    "WARN. Metadata: `value` = duplicate ids, `threshold` = 0.",
    blocking=True,
)
def unique_image_survivors(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return _no_duplicate_survivors(storage, Asset.IMAGE_DEDUP, "image_id", context.partition_key)


@shard_check(
    Asset.IMAGE_DEDUP,
    "image_dedup_funnel",
    "Images in = kept + removed and the reasons add up (ERROR, blocking); one duplicate reason "
    "removing more than 90% is a WARN; a shard that keeps nothing is a '0 rows' WARN.",
    blocking=True,
)
def image_dedup_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    M = ImageDedupMetrics
    return funnel_check(
        metrics,
        Asset.IMAGE_DEDUP,
        context.partition_key,
        M.IMAGES_IN,
        M.IMAGES_KEPT,
        M.IMAGES_REMOVED,
    )


@shard_check(
    Asset.SENTENCE_DEDUP,
    "unique_sentence_survivors",
    "No sentence id survives twice across all shards (ERROR, blocking: clustering and retrieval "
    "would return it twice); a shard with no survivor is a '0 rows' WARN. Metadata: `value` = "
    "duplicate ids, `threshold` = 0.",
    blocking=True,
)
def unique_sentence_survivors(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return _no_duplicate_survivors(
        storage, Asset.SENTENCE_DEDUP, "sentence_id", context.partition_key
    )


@shard_check(
    Asset.SENTENCE_DEDUP,
    "sentence_dedup_funnel",
    "Sentences in = kept + removed (semantic filter and redundancy) and the reasons add up "
    "(ERROR, blocking); one reason removing more than 90% is a WARN; a shard that keeps nothing "
    "is a '0 rows' WARN.",
    blocking=True,
)
def sentence_dedup_funnel(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    M = SentenceDedupMetrics
    return funnel_check(
        metrics,
        Asset.SENTENCE_DEDUP,
        context.partition_key,
        M.SENTENCES_IN,
        M.SENTENCES_KEPT,
        M.SENTENCES_REMOVED,
    )
