"""ingest: one shard file -> normalised documents table."""

import dagster as dg

from realsyn_assets.assets._checks import Result, funnel_check, shard_check
from realsyn_assets.assets._common import rejection_counts, stage_metadata
from realsyn_assets.core.ingest.documents import read_shard
from realsyn_assets.core.io import write_table
from realsyn_assets.names import Asset, Group, RawDocumentsMetrics
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource


@dg.asset(
    group_name=Group.INGEST,
    partitions_def=shard_partitions,
    description="Normalised interleaved documents of one shard (OBELICS / MMC4 / demo layout): "
    "one row per text block or image slot in page order; malformed documents are rejected with "
    "file, row and reason.",
)
def raw_documents(
    context: dg.AssetExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> dg.MaterializeResult:
    home = storage.layout
    shard = home.shard(context.partition_key)
    context.log.info(f"reading shard {shard.key} from {shard.path}")
    tables = read_shard(shard.path, shard.format)
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
    }
    reasons = rejection_counts(tables.rejections.column("reason").to_pylist())
    return dg.MaterializeResult(
        metadata=stage_metadata(
            metrics, Asset.RAW_DOCUMENTS, shard.key, counts, reasons, tables.items, out
        )
    )


@shard_check(Asset.RAW_DOCUMENTS, "documents_parsed", "Most documents parse; none silently lost.")
def documents_parsed(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    M = RawDocumentsMetrics
    funnel = (M.DOCUMENTS_IN, M.DOCUMENTS_KEPT, M.DOCUMENTS_REJECTED)
    return funnel_check(metrics, Asset.RAW_DOCUMENTS, context.partition_key, *funnel)
