"""Declarative automation with a real daemon: a shard file dropped into <home>/inbox of a
materialized home becomes, with no other action, that shard's `synthetic_texts` and refreshed
corpus-wide assets (`dg dev`: webserver, daemon and code server; the inbox sensor registers the
partition, the automation sensor launches the rest)."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from realsyn_assets.demo.corpus import generate_demo_corpus
from realsyn_assets.names import Asset
from realsyn_assets.partitions import SHARDS
from realsyn_assets_tests.e2e.dg_helpers import copy_home, dg_dev

NEW_SHARD = "arrivals"
CORPUS_ASSETS = (Asset.WORD_STATISTICS, Asset.SENTENCE_CLUSTERS, Asset.IMAGE_CLUSTERS)
DEADLINE_S = 600


def _new_shard_file(tmp_path: Path, inbox: Path) -> Path:
    """A shard the home has never seen: another seed, document ids of its own, images inline;
    written under a hidden name and renamed, as a copy into the inbox should be."""
    corpus = generate_demo_corpus(tmp_path / "arrivals", n_docs=16, n_shards=1, seed=11)
    table = pq.read_table(corpus.shard_paths[0])
    ids = pc.binary_join_element_wise(
        pa.array(["arrival"] * table.num_rows), table.column("id"), "-"
    )
    table = table.set_column(table.schema.get_field_index("id"), "id", ids)
    inbox.mkdir(parents=True, exist_ok=True)
    hidden = inbox / f".{NEW_SHARD}.parquet"
    pq.write_table(table, hidden)
    return hidden.rename(inbox / f"{NEW_SHARD}.parquet")


def _latest(instance: dg.DagsterInstance, asset: str, partition: str | None = None):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    return records[0].storage_id if records else None


def _wait_for_idle(instance: dg.DagsterInstance, until: float) -> None:
    """Until no run is queued or running (bounded), so stopping the daemon cuts nothing."""
    status = dg.DagsterRunStatus
    unfinished = dg.RunsFilter(
        statuses=[status.QUEUED, status.NOT_STARTED, status.STARTING, status.STARTED]
    )
    while instance.get_runs_count(unfinished) and time.monotonic() < until:
        time.sleep(5)


@pytest.mark.slow
def test_a_shard_dropped_into_the_inbox_reaches_synthetic_texts(demo_home, tmp_path, monkeypatch):
    home = copy_home(demo_home, tmp_path / "home")
    monkeypatch.setenv("REALSYN_AUTOMATION_INTERVAL", "5")  # the sensors look every 5 s
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))  # the instance this test reads
    instance = dg.DagsterInstance.get()
    old_shards = instance.get_dynamic_partitions(SHARDS)
    before = {
        asset: _latest(instance, asset) for asset in (*CORPUS_ASSETS, Asset.BOOTSTRAP_ENCODER)
    }
    old_synthetic = {s: _latest(instance, Asset.SYNTHETIC_TEXTS, s) for s in old_shards}
    try:
        with dg_dev(home):
            started = time.monotonic()
            _new_shard_file(tmp_path, home / "inbox")
            elapsed = _wait_for_flow(instance, before, started, home / "dg-dev.log")
            print(f"inbox -> synthetic_texts and corpus refresh in {elapsed:.0f}s")
            _wait_for_idle(instance, started + DEADLINE_S + 120)  # e.g. quality_report
        runs = instance.get_run_records()
        assert not [r for r in runs if r.dagster_run.status == dg.DagsterRunStatus.FAILURE]
        assert NEW_SHARD in instance.get_dynamic_partitions(SHARDS)
        # incremental: old shards were not redone and the encoder was not retrained
        assert {s: _latest(instance, Asset.SYNTHETIC_TEXTS, s) for s in old_shards} == old_synthetic
        assert _latest(instance, Asset.BOOTSTRAP_ENCODER) == before[Asset.BOOTSTRAP_ENCODER]
    finally:
        instance.dispose()


def _wait_for_flow(instance: dg.DagsterInstance, before: dict, started: float, log: Path) -> float:
    """Seconds until the new shard's synthetic_texts exist and every corpus asset has a newer
    materialization than `before` (fails after DEADLINE_S)."""
    while time.monotonic() - started < DEADLINE_S:
        refreshed = all(_latest(instance, a) != before[a] for a in CORPUS_ASSETS)
        if refreshed and _latest(instance, Asset.SYNTHETIC_TEXTS, NEW_SHARD):
            return time.monotonic() - started
        time.sleep(5)
    raise AssertionError(
        f"after {DEADLINE_S}s: new shard synthetic_texts="
        f"{_latest(instance, Asset.SYNTHETIC_TEXTS, NEW_SHARD)}, corpus refreshed "
        f"{[(a, _latest(instance, a) != before[a]) for a in CORPUS_ASSETS]}\n"
        + log.read_text()[-4000:]
    )
