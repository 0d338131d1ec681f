"""A sensor that registers shard files dropped into <home>/inbox as `shard` partitions.

It launches nothing itself: a new partition is missing, so the automation conditions
(realsyn_assets/automation.py) take it through the per-shard chain and refresh the corpus assets.
`realsyn ingest --extract` runs SHARD_INGEST_JOB for shards registered from the command line.
"""

import dagster as dg

from realsyn_assets.names import Job
from realsyn_assets.partitions import SHARDS
from realsyn_assets.resources import StorageResource
from realsyn_assets.resources.home import is_shard_file

SHARD_INGEST_JOB = Job.SHARD_INGEST
INBOX_SENSOR = "inbox_sensor"


def _inbox(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
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
    existing = set(context.instance.get_dynamic_partitions(SHARDS))
    keys = [e.key for e in entries if e.key not in existing]
    return dg.SensorResult(
        dynamic_partitions_requests=[
            dg.AddDynamicPartitionsRequest(partitions_def_name=SHARDS, partition_keys=keys)
        ],
    )


def make_inbox_sensor(minimum_interval_seconds: int = 30) -> dg.SensorDefinition:
    """The inbox sensor, looking every `minimum_interval_seconds`."""
    return dg.sensor(
        name=INBOX_SENSOR,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Registers new shard files in <home>/inbox as shard partitions; the "
        "automation sensor then materializes them (extract, embed, dedup, retrieve, synthesize) "
        "and refreshes the corpus-wide assets. An unreadable file (truncated parquet or gzip, "
        "wrong format) is not registered and is named in the skip reason.",
    )(_inbox)


inbox_sensor = make_inbox_sensor()
