"""ingest: one shard file -> normalised documents table."""

import dagster as dg

from realsyn_assets.assets._checks import Result, funnel_check, shard_check
from realsyn_assets.assets._common import stage_metadata
from realsyn_assets.core.ingest.documents import read_shard
from realsyn_assets.core.io import write_table
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource


@dg.asset(
    group_name="ingest",
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
    out = write_table(tables.items, home.partition_file("raw_documents", shard.key))
    write_table(
        tables.rejections, home.partition_file("raw_documents", shard.key, ".rejected.parquet")
    )
    kinds = tables.items.column("kind").to_pylist()
    reasons: dict[str, int] = {}
    for reason in tables.rejections.column("reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    if tables.rejections.num_rows:
        first = tables.rejections.slice(0, 3).to_pylist()
        context.log.warning(f"{tables.rejections.num_rows} malformed documents, e.g. {first}")
    counts = {
        "documents_in": tables.documents_read,
        "documents_kept": tables.documents_kept,
        "documents_rejected": tables.rejections.num_rows,
        "text_blocks": kinds.count("text"),
        "image_slots": kinds.count("image"),
    }
    return dg.MaterializeResult(
        metadata=stage_metadata(
            metrics, "raw_documents", shard.key, counts, reasons, tables.items, out
        )
    )


@shard_check("raw_documents", "documents_parsed", "Most documents parse; none silently lost.")
def documents_parsed(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return funnel_check(
        metrics,
        "raw_documents",
        context.partition_key,
        "documents_in",
        "documents_kept",
        "documents_rejected",
    )
