"""extract: images and sentences out of the documents, with quality filters (paper §3.1)."""

import dagster as dg
from pydantic import Field

from realsyn_assets.assets._checks import Result, funnel_check, shard_check
from realsyn_assets.assets._common import code_version, rejection_counts, stage_metadata
from realsyn_assets.core.images import shard as image_shard
from realsyn_assets.core.images.extract import ImageFilterConfig
from realsyn_assets.core.ingest.download import downloaded_images, shard_store
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.core.text import shard as sentence_shard
from realsyn_assets.core.text.sentences import SentenceFilterConfig
from realsyn_assets.names import (
    Asset,
    ExtractedImagesMetrics,
    ExtractedSentencesMetrics,
    Group,
    Kind,
)
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import EngineResource, MetricsResource, StorageResource
from realsyn_assets.resources.engine import task_name


class ImageExtractConfig(dg.Config):
    min_side: int = Field(100, description="Shorter side in pixels at least this (paper: 100).")
    max_aspect: float = Field(
        3.0,
        description="Long side / short side at most this (paper: 3, i.e. aspect in [1/3, 3]).",
    )
    output_max_side: int = Field(
        512,
        description="Longest side of the saved JPEG copy; smaller images are never upscaled.",
    )


class SentenceExtractConfig(dg.Config):
    min_words: int = Field(3, description="Fewest words a kept sentence has (paper: 3).")
    max_words: int = Field(81, description="Most words a kept sentence has (paper: 81).")
    cat_filter: bool = Field(
        True,
        description="Apply the CAT caption filter (paper: caption complexity >= C1 and an action).",
    )
    min_complexity: int = Field(
        1, description="Lowest CAT complexity level kept (0..4), when cat_filter is on."
    )
    require_action: bool = Field(
        True,
        description="Keep only sentences with an action (a lexical verb), when cat_filter is on.",
    )
    max_block_chars: int = Field(
        sentence_shard.MAX_BLOCK_CHARS,
        description="A text block with more characters than this is rejected whole as too_long, "
        "before sentence splitting (one rejected row with a detail); 0 = no limit.",
    )


@dg.asset(
    group_name=Group.EXTRACT,
    partitions_def=shard_partitions,
    deps=[Asset.RAW_DOCUMENTS, Asset.IMAGE_DOWNLOADS],
    # which images can be read (size cap, allowed folders) changes what is kept
    code_version=code_version(
        "1", ImageExtractConfig, StorageResource, exclude=("home", "workers")
    ),
    kinds={Kind.PARQUET, Kind.PYTHON},
    description="Decoded, quality-filtered images of one shard (shorter side >= 100 px, aspect in "
    "[1/3, 3], paper §3.1), saved as normalised JPEG files under `images/` and listed in "
    "`data/extracted_images/<shard>.parquet` (content-addressed id, pHash, lineage); every "
    "rejected slot is in `<shard>.rejected.parquet` with its reason. A rerun rewrites both.",
)
def extracted_images(
    context: dg.AssetExecutionContext,
    config: ImageExtractConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    engine: EngineResource,
) -> dg.MaterializeResult:
    home = storage.layout
    key = context.partition_key
    docs = read_table(home.partition_file(Asset.RAW_DOCUMENTS, key))
    base_dir, allowed_roots = storage.image_roots(key)
    downloads = downloaded_images(
        home.partition_file(Asset.IMAGE_DOWNLOADS, key), shard_store(home.root, key)
    )
    fetched = image_shard.fetch_slots(
        docs,
        key,
        base_dir=base_dir,
        allowed_roots=allowed_roots,
        downloads=downloads,
        max_bytes=storage.max_image_bytes,
    )
    workers = engine.task_workers(storage.cpu_workers())
    context.log.info(f"{key}: decoding {len(fetched.unique)} unique images with {workers} workers")
    filter_config = ImageFilterConfig(
        min_side=config.min_side,
        max_aspect=config.max_aspect,
        output_max_side=config.output_max_side,
    )
    tables = engine.run(
        image_shard.filter_images,
        fetched,
        home.image_path,
        filter_config,
        workers=workers,
        root=home.root,
        name=task_name(Asset.EXTRACTED_IMAGES, key),
    )
    M = ExtractedImagesMetrics
    counts = {
        M.IMAGES_IN: fetched.slots,
        M.IMAGES_KEPT: tables.kept.num_rows,
        M.IMAGES_REJECTED: tables.rejected.num_rows,
    }
    return _save_shard(storage, metrics, Asset.EXTRACTED_IMAGES, key, tables, counts)


@dg.asset(
    group_name=Group.EXTRACT,
    partitions_def=shard_partitions,
    deps=[Asset.RAW_DOCUMENTS],
    code_version=code_version("1", SentenceExtractConfig),
    kinds={Kind.PARQUET, Kind.PYTHON},
    description="Sentences of one shard (Punkt-style split) passing the rule filters (no emoji, "
    "no URL, 3..81 words), the CAT caption filter (complexity >= C1 and an action) and the "
    "in-shard duplicate check (paper §3.1), in `data/extracted_sentences/<shard>.parquet`; "
    "every rejected sentence is in `<shard>.rejected.parquet` with its reason. A rerun "
    "rewrites both.",
)
def extracted_sentences(
    context: dg.AssetExecutionContext,
    config: SentenceExtractConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    engine: EngineResource,
) -> dg.MaterializeResult:
    home = storage.layout
    key = context.partition_key
    docs = read_table(
        home.partition_file(Asset.RAW_DOCUMENTS, key), columns=sentence_shard.DOCUMENT_COLUMNS
    )
    rules = SentenceFilterConfig(min_words=config.min_words, max_words=config.max_words)
    cat = (
        sentence_shard.CatFilter(config.min_complexity, config.require_action)
        if config.cat_filter
        else None
    )
    tables = engine.run(
        sentence_shard.extract_sentences,
        *(docs, key, rules, cat, engine.task_workers(storage.cpu_workers())),
        config.max_block_chars,
        name=task_name(Asset.EXTRACTED_SENTENCES, key),
    )
    M = ExtractedSentencesMetrics
    counts = {
        M.TEXT_BLOCKS: tables.text_blocks,
        M.TEXT_BLOCKS_TOO_LONG: tables.blocks_too_long,
        M.SENTENCES_IN: tables.kept.num_rows + tables.rejected.num_rows,
        M.SENTENCES_KEPT: tables.kept.num_rows,
        M.SENTENCES_REJECTED: tables.rejected.num_rows,
    }
    return _save_shard(storage, metrics, Asset.EXTRACTED_SENTENCES, key, tables, counts)


def _save_shard(
    storage: StorageResource,
    metrics: MetricsResource,
    asset: str,
    key: str,
    tables: image_shard.ImageTables | sentence_shard.SentenceTables,
    counts: dict[str, int],
) -> dg.MaterializeResult:
    """Write one shard's kept and rejected tables, record the counts and rejection reasons."""
    home = storage.layout
    out = write_table(tables.kept, home.partition_file(asset, key))
    write_table(tables.rejected, home.partition_file(asset, key, ".rejected.parquet"))
    reasons = rejection_counts(tables.rejected.column("reason").to_pylist())
    return dg.MaterializeResult(
        metadata=stage_metadata(metrics, asset, key, counts, reasons, tables.kept, out)
    )


@shard_check(
    Asset.EXTRACTED_IMAGES,
    "image_funnel",
    "Image slots = kept + rejected and the reasons add up (ERROR, blocking: embeddings and "
    "dedup read this table); one reason rejecting more than 90% of the slots is a WARN; a shard "
    "with no kept image is a '0 rows' WARN.",
    blocking=True,
)
def image_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    M = ExtractedImagesMetrics
    funnel = (M.IMAGES_IN, M.IMAGES_KEPT, M.IMAGES_REJECTED)
    return funnel_check(metrics, Asset.EXTRACTED_IMAGES, context.partition_key, *funnel)


@shard_check(
    Asset.EXTRACTED_SENTENCES,
    "sentence_funnel",
    "Sentences split = kept + rejected and the reasons add up (ERROR, blocking: embeddings, "
    "word statistics and the filters read this table); one reason rejecting more than 90% is a "
    "WARN; a shard with no kept sentence is a '0 rows' WARN.",
    blocking=True,
)
def sentence_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    M = ExtractedSentencesMetrics
    funnel = (M.SENTENCES_IN, M.SENTENCES_KEPT, M.SENTENCES_REJECTED)
    return funnel_check(metrics, Asset.EXTRACTED_SENTENCES, context.partition_key, *funnel)
