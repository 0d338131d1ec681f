"""The one Definitions object: assets, checks, resources, jobs, sensors.

Two ways to drive the same graph:
* declaratively: every asset carries the automation condition of realsyn_assets/automation.py
  and the `realsyn_automation` sensor (running by default) launches what is due, so a shard file
  dropped into <home>/inbox goes through the per-shard chain and refreshes the corpus assets;
* imperatively: stages alternate between per-shard work and corpus-wide steps (word statistics,
  clusters), so the pipeline is also a sequence of jobs, derived from the asset graph
  (realsyn_assets/stages.py): `realsyn run`/`realsyn demo` run them in order, the UI can run any
  of them or an asset backfill across all of them.
"""

from __future__ import annotations

import dagster as dg

from realsyn_assets import automation
from realsyn_assets.assets import ALL_ASSETS, ALL_CHECKS
from realsyn_assets.names import Asset, Job
from realsyn_assets.resources import (
    CaptionerResource,
    EncoderResource,
    EngineResource,
    GeneratorResource,
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets.resources.settings import build, load_resource_settings, settings_path
from realsyn_assets.sensors import make_inbox_sensor
from realsyn_assets.stages import Stage, asset_nodes, derive_stages, new_shard_assets

_NODES = asset_nodes(ALL_ASSETS)

# The jobs of `realsyn run`/`realsyn demo`, in execution order.
STAGES: list[Stage] = derive_stages(_NODES)

# A new shard on its own (sensor, `realsyn ingest --extract`): every per-shard step up to dedup,
# embedded with the encoder as it is (the bootstrap encoder is not retrained).
SHARD_INGEST_ASSETS: list[str] = new_shard_assets(_NODES, STAGES)

# The explicit re-clustering action: sentence_clusters normally keeps its centroids and only
# assigns new sentences (reporting drift); this job fits k-means again on every kept sentence.
RECLUSTER_JOB = Job.RECLUSTER_SENTENCES
RECLUSTER_CONFIG = {"ops": {Asset.SENTENCE_CLUSTERS: {"config": {"recluster": True}}}}


def _stage_description(number: int, stage: Stage) -> str:
    runs = {"shard": "once per shard", "scale": "once per dataset scale"}.get(
        stage.partitions, "once"
    )
    return f"Stage {number} of `realsyn run` ({runs}): {', '.join(stage.assets)}."


JOBS = [
    dg.define_asset_job(
        stage.job,
        selection=dg.AssetSelection.assets(*stage.assets),
        description=_stage_description(number, stage),
    )
    for number, stage in enumerate(STAGES, start=1)
] + [
    dg.define_asset_job(
        Job.SHARD_INGEST,
        selection=dg.AssetSelection.assets(*SHARD_INGEST_ASSETS),
        description="A newly registered shard (inbox sensor, `realsyn ingest --extract`): "
        "extracted, embedded with the current encoder and image-deduplicated.",
    ),
    dg.define_asset_job(
        RECLUSTER_JOB,
        selection=dg.AssetSelection.assets(Asset.SENTENCE_CLUSTERS),
        config=RECLUSTER_CONFIG,
        description="Fit the sentence k-means again on every kept sentence (drift or growth "
        "made it due); afterwards re-run shard_retrieve_job for every shard.",
    ),
]


def make_resources(home: str = "") -> dict:
    """Resources for one REALSYN_HOME (empty = $REALSYN_HOME or ./realsyn_home at run time).

    The home is the top-level resource `home`, set at launch, that the others nest: changing it
    in the launchpad moves every path at once. The others start from the home's resources.yaml
    (resources/settings.py), so CLI, UI and daemon runs use the same models and backends.
    """
    home_resource = HomeResource.configure_at_launch(path=home)
    source = settings_path(home or None)  # <home>/resources.yaml
    settings = load_resource_settings(home or None)
    homed = {
        "storage": StorageResource,
        "metrics": MetricsResource,
        "vectors": VectorStoreResource,
        "encoder": EncoderResource,
        "engine": EngineResource,
    }
    made = {
        name: build(name, cls, settings, source, home=home_resource) for name, cls in homed.items()
    }
    made["generator"] = build("generator", GeneratorResource, settings, source)
    made["captioner"] = build("captioner", CaptionerResource, settings, source)
    return {"home": home_resource, **made}


# The user-set part of the automation policy (<home>/automation.yaml, REALSYN_AUTOMATION_*).
AUTOMATION = automation.load_settings()

defs = dg.Definitions(
    assets=automation.apply(ALL_ASSETS, _NODES, AUTOMATION),
    asset_checks=ALL_CHECKS,
    jobs=JOBS,
    sensors=[
        make_inbox_sensor(AUTOMATION.interval_seconds),
        automation.automation_sensor(AUTOMATION),
    ],
    resources=make_resources(),
)
