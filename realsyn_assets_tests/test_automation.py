"""The automation policy (realsyn_assets/automation.py), evaluated tick by tick on a real
instance with `dg.evaluate_automation_conditions`: materializations and check results are
reported to the instance as a run would, in-progress work is a started run of the real job."""

from __future__ import annotations

import datetime
import uuid

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME
from dagster._core.storage.dagster_run import DagsterRunStatus

from realsyn_assets import automation
from realsyn_assets.assets import ALL_ASSETS, ALL_CHECKS
from realsyn_assets.definitions import _NODES, SHARD_INGEST_ASSETS, defs, make_resources
from realsyn_assets.names import Asset, Job
from realsyn_assets.partitions import SHARDS
from realsyn_assets.stages import REUSED_BY_NEW_SHARDS, SHARD

OLD = ["shard-a", "shard-b"]
INGEST = set(SHARD_INGEST_ASSETS)


def _defs(**policies: str) -> dg.Definitions:
    settings = automation.Settings({**automation.DEFAULTS, **policies})
    return dg.Definitions(
        assets=automation.apply(ALL_ASSETS, _NODES, settings),
        asset_checks=ALL_CHECKS,
        resources=make_resources(),
    )


class Instance:
    """An instance seen by the automation sensor; `tick()` returns what it requests."""

    def __init__(self, definitions: dg.Definitions = defs, shards=OLD, materialize=tuple(Asset)):
        self.defs = definitions
        self.graph = definitions.resolve_asset_graph()
        self.instance = dg.DagsterInstance.ephemeral()
        self.instance.add_dynamic_partitions(SHARDS, list(shards))
        self.cursor = None
        for asset in materialize:
            self.materialize(asset)

    def partitions(self, asset: str) -> list[str | None]:
        partitions_def = self.graph.get(dg.AssetKey(asset)).partitions_def
        if partitions_def is None:
            return [None]
        return list(partitions_def.get_partition_keys(dynamic_partitions_store=self.instance))

    def _report(self, event, run_id: str) -> None:
        if isinstance(event, dg.AssetMaterialization):
            kind, data = DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(event)
        else:
            kind, data = DagsterEventType.ASSET_CHECK_EVALUATION, event
        self.instance.report_dagster_event(
            DagsterEvent(kind.value, job_name=RUNLESS_JOB_NAME, event_specific_data=data),
            run_id=run_id,
        )

    def materialize(self, asset: str, partitions=None, failed_checks=()) -> None:
        """A materialization and its checks' results, each check aimed at it, as a run writes
        them (one made-up run id per partition: a check result is stored once per run)."""
        key = dg.AssetKey(asset)
        for partition in self.partitions(asset) if partitions is None else partitions:
            run_id = str(uuid.uuid4())
            self._report(dg.AssetMaterialization(asset_key=key, partition=partition), run_id)
            records = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=key, asset_partitions=[partition] if partition else None
                ),
                limit=1,
            ).records
            target = AssetCheckEvaluationTargetMaterializationData(
                storage_id=records[0].storage_id, run_id=run_id, timestamp=records[0].timestamp
            )
            for check in self.graph.get_check_keys_for_assets({key}):
                evaluation = dg.AssetCheckEvaluation(
                    asset_key=key,
                    check_name=check.name,
                    passed=check.name not in failed_checks,
                    partition=partition,
                    target_materialization_data=target,
                )
                self._report(evaluation, run_id)

    def complete(self, requested: dict) -> None:
        """Every requested asset partition materialized, checks passed, upstream first."""
        for asset in Asset:
            if asset in requested:
                partitions = requested[asset]
                self.materialize(asset, None if partitions == [None] else partitions)

    def start_run(self, job: str, partition: str):
        """A run of a real job that has started and not finished (its assets are in progress)."""
        return self.instance.create_run_for_job(
            job_def=self.defs.resolve_job_def(job),
            tags={"dagster/partition": partition},
            status=DagsterRunStatus.STARTED,
        )

    def tick(self, when: datetime.datetime | None = None) -> dict[str, list]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=when
        )
        self.cursor = result.cursor
        requested = {}
        for asset_result in result.results:
            subset = asset_result.true_subset
            if subset.size:
                keys = (
                    subset.expensively_compute_partition_keys() if subset.is_partitioned else [None]
                )
                requested[asset_result.key.to_user_string()] = sorted(keys, key=str)
        return requested


def test_policy_table_covers_the_graph():
    assert set(automation.POLICY) == set(Asset) == set(_NODES)
    rules = {key: automation.POLICY[key] for key in _NODES}
    for key, node in _NODES.items():
        assert (rules[key] == automation.SHARD_RULE) == (node.partitions == SHARD), key
    assert REUSED_BY_NEW_SHARDS <= {k for k, r in rules.items() if r == automation.REUSED}
    for name in ("realsyn_automation", "inbox_sensor"):  # a home made by realsyn: both on
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def test_new_shard_runs_the_per_shard_chain_and_each_corpus_asset_once():
    home = Instance()
    assert home.tick() == {}  # a materialized home: nothing to do when automation is turned on
    home.instance.add_dynamic_partitions(SHARDS, ["shard-new"])
    steps = []
    for _ in range(10):
        requested = home.tick()
        if not requested:
            break
        steps.append(requested)
        home.complete(requested)
    for step in steps:  # the new shard only, never an old one
        assert all(parts in (["shard-new"], [None]) for parts in step.values()), step
    stages = [set(step) for step in steps]
    assert stages == [
        INGEST,  # one run: extract, embed with the encoder as it is, image dedup
        {Asset.WORD_STATISTICS},  # after the shard's sentences, before its semantic filter
        {Asset.SEMANTIC_FILTER, Asset.SENTENCE_DEDUP},
        {Asset.SENTENCE_CLUSTERS},  # takes in the new sentences before retrieval reads them
        {Asset.RETRIEVED_TEXTS, Asset.SYNTHETIC_TEXTS},
        {Asset.IMAGE_CLUSTERS},
        {Asset.QUALITY_REPORT},
    ]
    assert steps[1][Asset.WORD_STATISTICS] == [None]
    # the new shard's corpus refresh re-ran no old shard, retrained no model, built no subset
    assert home.tick() == {}


def test_corpus_assets_wait_for_missing_and_in_progress_shards_then_run_once():
    home = Instance()
    home.tick()
    home.instance.add_dynamic_partitions(SHARDS, ["shard-c", "shard-d"])
    first = home.tick()
    assert set(first) == INGEST and first[Asset.RAW_DOCUMENTS] == ["shard-c", "shard-d"]
    run = home.start_run(Job.SHARD_INGEST, "shard-d")  # shard-d's run is slow
    home.complete({asset: ["shard-c"] for asset in INGEST})  # shard-d missing and in progress
    assert home.tick() == {}  # nothing re-requested, word_statistics waits
    home.complete({asset: ["shard-d"] for asset in INGEST})  # shard-d's run wrote it, ended
    home.instance.delete_run(run.run_id)  # (its events with it)
    rerun = home.start_run(Job.SHARD_INGEST, "shard-d")  # someone re-runs shard-d
    assert home.tick() == {}  # present but in progress: word_statistics still waits
    home.complete({asset: ["shard-d"] for asset in INGEST})  # the re-run wrote it, ended
    home.instance.delete_run(rerun.run_id)
    assert home.tick() == {Asset.WORD_STATISTICS: [None]}  # once for both shards
    home.complete({Asset.WORD_STATISTICS: [None]})
    assert home.tick() == {
        Asset.SEMANTIC_FILTER: ["shard-c", "shard-d"],
        Asset.SENTENCE_DEDUP: ["shard-c", "shard-d"],
    }


def test_reused_models_are_built_when_missing_and_never_retrained_for_a_shard():
    extracted = [
        Asset.RAW_DOCUMENTS,
        Asset.IMAGE_DOWNLOADS,
        Asset.EXTRACTED_IMAGES,
        Asset.EXTRACTED_SENTENCES,
    ]
    home = Instance(materialize=extracted)  # a new home: shards extracted, nothing trained
    requested = home.tick()
    assert set(requested) == {Asset.BOOTSTRAP_ENCODER, Asset.WORD_STATISTICS}
    home.complete(requested)
    requested = home.tick()
    assert set(requested) == {
        Asset.IMAGE_EMBEDDINGS,
        Asset.SENTENCE_EMBEDDINGS,
        Asset.IMAGE_DEDUP,
        Asset.SEMANTIC_FILTER,
        Asset.SENTENCE_DEDUP,
    }
    assert requested[Asset.IMAGE_EMBEDDINGS] == OLD
    home.complete(requested)
    assert set(home.tick()) == {Asset.IMAGE_CAPTIONER, Asset.SENTENCE_CLUSTERS}
    # a fully built home that gets a new shard: the models are used as they are
    home = Instance()
    home.tick()
    home.instance.add_dynamic_partitions(SHARDS, ["shard-new"])
    seen = set()
    for _ in range(8):
        requested = home.tick()
        seen |= set(requested)
        home.complete(requested)
    assert Asset.SYNTHETIC_TEXTS in seen
    assert not seen & {Asset.BOOTSTRAP_ENCODER, Asset.IMAGE_CAPTIONER}


def test_a_failed_blocking_check_stops_automation_downstream():
    home = Instance()
    home.tick()
    home.instance.add_dynamic_partitions(SHARDS, ["shard-bad"])
    home.complete(home.tick())
    home.materialize(Asset.EXTRACTED_SENTENCES, ["shard-bad"], failed_checks={"sentence_funnel"})
    assert home.tick() == {}  # neither word_statistics nor the shard's semantic filter
    home.materialize(Asset.EXTRACTED_SENTENCES, ["shard-bad"])  # fixed and re-materialized
    assert home.tick() == {
        Asset.WORD_STATISTICS: [None],
        Asset.SENTENCE_EMBEDDINGS: ["shard-bad"],  # its own shard's upstream changed
    }


def test_scale_and_training_follow_the_user_policy():
    assert automation.DEFAULTS[automation.TRAINING] == automation.MANUAL
    graph = defs.resolve_asset_graph()
    for asset in (Asset.BALANCED_SUBSET, Asset.SUBSET_EXPORT, Asset.CLIP_CHECKPOINT):
        assert graph.get(dg.AssetKey(asset)).automation_condition is None  # manual by default

    cron = "cron:0 3 * * *"
    home = Instance(_defs(scale=automation.ON_CHANGE, training=cron, report=automation.MANUAL))
    night = datetime.datetime(2026, 1, 5, 2, 0, tzinfo=datetime.UTC)
    assert home.tick(night) == {}
    home.complete({Asset.IMAGE_CLUSTERS: [None]})  # the corpus changed
    scales = sorted(home.partitions(Asset.BALANCED_SUBSET))
    assert home.tick(night + datetime.timedelta(minutes=10)) == {
        Asset.BALANCED_SUBSET: scales,
        Asset.SUBSET_EXPORT: scales,  # same scale, same run
    }
    home.complete({Asset.BALANCED_SUBSET: scales, Asset.SUBSET_EXPORT: scales})
    assert home.tick(night + datetime.timedelta(minutes=20)) == {}  # training waits for 03:00
    requested = home.tick(night + datetime.timedelta(hours=1, minutes=1))
    assert requested == {Asset.CLIP_CHECKPOINT: scales, Asset.CLIP_ABLATIONS: scales}
    home.complete(requested)
    requested = home.tick(night + datetime.timedelta(hours=1, minutes=5))
    assert requested == {Asset.CLIP_EVALUATION: scales}  # this cron tick, once trained
    home.complete(requested)
    assert home.tick(night + datetime.timedelta(hours=1, minutes=10)) == {}


def test_settings_from_file_and_environment(tmp_path):
    assert automation.load_settings(tmp_path, environ={}).policies == automation.DEFAULTS
    (tmp_path / automation.POLICY_FILE).write_text(
        "training: 'cron:0 3 * * 0'\nscale: on_change\ninterval_seconds: 5\n"
    )
    settings = automation.load_settings(tmp_path, environ={})
    assert settings.rule(Asset.CLIP_EVALUATION) == "cron:0 3 * * 0"
    assert settings.rule(Asset.SUBSET_EXPORT) == automation.ON_CHANGE
    assert settings.rule(Asset.WORD_STATISTICS) == automation.CORPUS
    assert settings.interval_seconds == 5
    env = {"REALSYN_AUTOMATION_TRAINING": "manual", "REALSYN_AUTOMATION_INTERVAL": "12"}
    settings = automation.load_settings(tmp_path, environ=env)
    assert settings.rule(Asset.CLIP_CHECKPOINT) == automation.MANUAL
    assert settings.interval_seconds == 12
    with pytest.raises(ValueError, match="REALSYN_AUTOMATION_SCALE"):
        automation.load_settings(tmp_path, environ={"REALSYN_AUTOMATION_SCALE": "cron:soon"})
    (tmp_path / automation.POLICY_FILE).write_text("trainig: manual\n")
    with pytest.raises(ValueError, match="unknown keys"):
        automation.load_settings(tmp_path, environ={})
