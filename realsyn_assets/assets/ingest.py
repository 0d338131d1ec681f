"""ingest: one shard file -> normalised documents table."""

import dagster as dg
from pydantic import Field

from realsyn_assets.assets._checks import ERROR, Result, funnel_check, shard_check
from realsyn_assets.assets._common import code_version, rejection_counts, stage_metadata
from realsyn_assets.core.ingest.documents import MAX_DOCUMENT_CHARS, read_shard
from realsyn_assets.core.ingest.shard_file import READ_ERRORS, explain_read_error
from realsyn_assets.core.io import write_table
from realsyn_assets.names import Asset, Group, Kind, RawDocumentsMetrics
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource


class RawDocumentsConfig(dg.Config):
    max_document_chars: int = Field(
        MAX_DOCUMENT_CHARS,
        description="A document with more characters of text than this is rejected as too_long "
        "(so no single document dominates a shard's time); 0 = no limit.",
    )


@dg.asset(
    group_name=Group.INGEST,
    partitions_def=shard_partitions,
    code_version=code_version("1", RawDocumentsConfig),
    kinds={Kind.PARQUET, Kind.DUCKDB},
    description="Normalised interleaved documents of one registered shard file (OBELICS, MMC4 or "
    "demo layout): one row per text block or image slot in page order, stored in "
    "`data/raw_documents/<shard>.parquet`; malformed documents go to "
    "`<shard>.rejected.parquet` with file, row and reason, and the counts to DuckDB. An "
    "unreadable shard file (truncated parquet or gzip, wrong format) fails this shard's "
    "partition with an error naming the file and the cause. A rerun rewrites both files.",
)
def raw_documents(
    context: dg.AssetExecutionContext,
    config: RawDocumentsConfig,
    storage: StorageResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    home = storage.layout
    shard = home.shard(context.partition_key)
    context.log.info(f"reading shard {shard.key} from {shard.path}")
    try:
        tables = read_shard(shard.path, shard.format, config.max_document_chars)
    except READ_ERRORS as exc:  # this shard's partition fails alone, naming the file and cause
        error = explain_read_error(shard.path, exc)
        raise dg.Failure(description=f"shard {shard.key}: cannot read {error}") from exc
    out = write_table(tables.items, home.partition_file(Asset.RAW_DOCUMENTS, shard.key))
    write_table(
        tables.rejections,
        home.partition_file(Asset.RAW_DOCUMENTS, shard.key, ".rejected.parquet"),
    )
    if tables.rejections.num_rows:
        first = tables.rejections.slice(0, 3).to_pylist()
        context.log.warning(f"{tables.rejections.num_rows} malformed documents, e.g. {first}")
    kinds = tables.items.column("kind").to_pylist()
    M = RawDocumentsMetrics
    counts = {
        M.DOCUMENTS_IN: tables.documents_read,
        M.DOCUMENTS_KEPT: tables.documents_kept,
        M.DOCUMENTS_REJECTED: tables.rejections.num_rows,
        M.TEXT_BLOCKS: kinds.count("text"),
        M.IMAGE_SLOTS: kinds.count("image"),
        M.INVALID_UTF8_LINES: tables.invalid_utf8_lines,
    }
    reasons = rejection_counts(tables.rejections.column("reason").to_pylist())
    return dg.MaterializeResult(
        metadata=stage_metadata(
            metrics, Asset.RAW_DOCUMENTS, shard.key, counts, reasons, tables.items, out
        )
    )


@shard_check(
    Asset.RAW_DOCUMENTS,
    "documents_parsed",
    "Documents read = kept + rejected and the rejection reasons add up; one reason (invalid "
    "JSON, missing fields, too long) rejecting more than 90% of the documents means a broken or "
    "mislabelled shard file. Both are ERRORs, so `realsyn ingest`/`run` exit 1, but not "
    "blocking: the documents kept are well-formed and extraction may go on. A shard with no "
    "document at all is a '0 rows' WARN.",
)
def documents_parsed(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    M = RawDocumentsMetrics
    funnel = (M.DOCUMENTS_IN, M.DOCUMENTS_KEPT, M.DOCUMENTS_REJECTED)
    return funnel_check(
        metrics, Asset.RAW_DOCUMENTS, context.partition_key, *funnel, dominance=ERROR
    )
