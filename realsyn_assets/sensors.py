"""A sensor that registers shard files dropped into <home>/inbox as `shard` partitions."""

import dagster as dg

from realsyn_assets.names import Job
from realsyn_assets.partitions import SHARDS
from realsyn_assets.resources import StorageResource
from realsyn_assets.resources.home import is_shard_file

SHARD_INGEST_JOB = Job.SHARD_INGEST


@dg.sensor(
    job_name=SHARD_INGEST_JOB,
    minimum_interval_seconds=30,
    description="Registers new shard files in <home>/inbox as shard partitions and runs "
    "shard_ingest_job on each (extract, embed, image dedup); an unreadable file (truncated "
    "parquet or gzip, wrong format) is not registered and is named in the skip reason.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
    home = storage.layout
    home.inbox.mkdir(parents=True, exist_ok=True)
    known = {entry.path for entry in home.shards().values()}
    files = sorted(p.resolve() for p in home.inbox.iterdir() if is_shard_file(p))
    new = [p for p in files if str(p) not in known]
    refused: list = []
    entries = home.register_shards(new, refused=refused) if new else []
    for error in refused:  # checked again next time: a file still being copied is complete later
        context.log.warning(f"not registered: {error}")
    if not entries:
        reason = f"no new shard files in {home.inbox}"
        if refused:
            reason = f"{len(refused)} unreadable shard file(s) in {home.inbox}: " + "; ".join(
                str(error) for error in refused
            )
        return dg.SensorResult(skip_reason=reason)
    keys = [e.key for e in entries]
    existing = set(context.instance.get_dynamic_partitions(SHARDS))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=k, run_key=f"{k}:{e.path}")
            for k, e in zip(keys, entries, strict=True)
        ],
        dynamic_partitions_requests=[
            dg.AddDynamicPartitionsRequest(
                partitions_def_name=SHARDS, partition_keys=[k for k in keys if k not in existing]
            )
        ],
    )
