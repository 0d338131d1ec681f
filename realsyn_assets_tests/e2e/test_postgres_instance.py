"""Issue 19: the demo's per-shard stages against a PostgreSQL-backed Dagster instance.

A server from the Debian package (e2e/postgres_server.py: initdb into a temp folder, a free port
on 127.0.0.1, stopped by PID). `realsyn instance --postgres URL` points a fresh home at it; then
two `realsyn ingest --extract` processes, one shard each, run at the same time (each opens the
instance from the home's dagster.yaml, and their GPU-pool steps claim slots in Postgres). The
runs are then visible through the instance and in the `runs` table itself, and the home holds
no SQLite storage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dagster as dg
import pytest

from realsyn_assets import pipeline
from realsyn_assets.concurrency import (
    GPU_POOL,
    ensure_pool_limit,
    gpu_slots,
    serialize_pool_claims,
)
from realsyn_assets.definitions import SHARD_INGEST_ASSETS
from realsyn_assets.demo.corpus import generate_demo_corpus
from realsyn_assets.names import Asset, Job
from realsyn_assets.resources.home import Home
from realsyn_assets_tests.conftest import REPO, cli_env
from realsyn_assets_tests.e2e.postgres_server import postgres_server, require_bindir

DB = "realsyn_runs"
DEADLINE_S = 600


def _env(home) -> dict[str, str]:
    # the yaml names $REALSYN_PG_PASSWORD; the test server trusts local connections
    return {**cli_env(home), "REALSYN_PG_PASSWORD": "", "OMP_NUM_THREADS": "1"}


def _start(home, log, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "realsyn_assets.cli", *args, "--home", str(home)],
        env=_env(home),
        cwd=str(REPO),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _finish(procs) -> list[int | None]:
    """Exit codes (None: still running at the deadline, then killed with its group)."""
    deadline = time.monotonic() + DEADLINE_S
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
    return codes


def _cli(home, tmp_path, name, *args) -> str:
    with open(tmp_path / f"{name}.log", "w") as log:
        procs = [_start(home, log, *args)]
        try:
            code = _finish(procs)[0]
        finally:
            _finish(procs)
    output = (tmp_path / f"{name}.log").read_text()
    assert code == 0, f"realsyn {' '.join(args)}: exit {code}\n{output[-4000:]}"
    return output


def _run_concurrently(home, tmp_path, commands) -> None:
    logs = [open(tmp_path / f"ingest-{i}.log", "w") for i in range(len(commands))]  # noqa: SIM115
    procs = []
    try:
        for log, command in zip(logs, commands, strict=True):
            procs.append(_start(home, log, *command))
        codes = _finish(procs)
    finally:
        _finish(procs)
        for log in logs:
            log.close()
    for i, code in enumerate(codes):
        output = (tmp_path / f"ingest-{i}.log").read_text()
        assert code == 0, f"{commands[i]}: exit {code}\n{output[-4000:]}"


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 300)
def test_per_shard_stages_on_a_postgres_instance(tmp_path, monkeypatch):
    bindir = require_bindir()
    corpus = generate_demo_corpus(tmp_path / "corpus", n_docs=16, n_shards=2, seed=3)
    home = tmp_path / "home"
    with postgres_server(bindir) as pg:
        pg.create_database(DB)
        out = _cli(home, tmp_path, "instance", "instance", "--postgres", pg.url(DB))
        assert f"postgres: {pg.url(DB)}" in out
        assert "postgres" in _cli(home, tmp_path, "show", "instance")
        conn = pg.connect(DB)
        try:  # the GPU pool's row exists before any step could race to insert it
            with conn.cursor() as cur:
                cur.execute("SELECT concurrency_key FROM concurrency_limits")
                assert [row[0] for row in cur.fetchall()] == [GPU_POOL]
        finally:
            conn.close()

        # two processes, one shard each, at the same time, sharing the instance
        _run_concurrently(
            home, tmp_path, [("ingest", "--extract", str(p)) for p in corpus.shard_paths]
        )

        shards = Home(home).shard_order()
        assert len(shards) == 2
        monkeypatch.setenv("REALSYN_PG_PASSWORD", "")
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        try:
            storage = instance.event_log_storage
            assert type(storage).__module__.startswith("dagster_postgres")
            # no file lock around pool claims on Postgres; the yaml's pool limit is read
            assert (
                getattr(
                    serialize_pool_claims(instance).event_log_storage, "_realsyn_pool_lock", None
                )
                is None
            )
            assert gpu_slots(instance) == 1
            runs = instance.get_runs(dg.RunsFilter(job_name=Job.SHARD_INGEST))
            assert len(runs) == 2
            assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
            assert sorted(r.tags.get("dagster/partition") for r in runs) == sorted(shards)
            assert sorted(instance.get_dynamic_partitions("shard")) == sorted(shards)
            for asset in SHARD_INGEST_ASSETS:
                assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(shards), (
                    asset
                )
            # no step holds a GPU slot any more
            assert not storage.get_concurrency_run_ids()
            run_ids = {r.run_id for r in runs}
        finally:
            instance.dispose()

        conn = pg.connect(DB)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT run_id, status FROM runs WHERE pipeline_name = %s", (Job.SHARD_INGEST,)
                )
                rows = dict(cur.fetchall())
                cur.execute(
                    "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
                )
                materializations = cur.fetchone()[0]
        finally:
            conn.close()
        assert set(rows) == run_ids and set(rows.values()) == {"SUCCESS"}
        assert materializations >= len(SHARD_INGEST_ASSETS) * len(shards)

        # `realsyn status` reads the same instance
        status = _cli(home, tmp_path, "status", "status")
        assert f"{Asset.IMAGE_EMBEDDINGS}" in status and "2/2 partitions" in status

    dagster_home = home / "dagster"
    sqlite_files = sorted(
        str(p.relative_to(dagster_home))
        for p in dagster_home.rglob("*")
        if p.suffix == ".db" or p.name in ("history", "schedules")
    )
    assert sqlite_files == [], sqlite_files


def test_a_lost_race_for_the_gpu_pool_row_does_not_fail_the_process(tmp_path, monkeypatch):
    """Two processes opening a fresh PostgreSQL instance both find no `encoder` pool row. The
    loser's insert fails inside Dagster's transaction, which PostgreSQL has already aborted, so
    Dagster's own fallback fails too (`initialize_concurrency_limit_to_default` raises when the
    row exists: shown first); `ensure_pool_limit` accepts a row another process created."""
    bindir = require_bindir()
    home = tmp_path / "home"
    with postgres_server(bindir) as pg:
        pg.create_database(DB)
        _cli(home, tmp_path, "instance", "instance", "--postgres", pg.url(DB))
        monkeypatch.setenv("REALSYN_PG_PASSWORD", "")
        pipeline.ensure_dagster_yaml(home / "dagster" / "dagster.yaml")
        mine = dg.DagsterInstance.from_config(str(home / "dagster"))
        other = dg.DagsterInstance.from_config(str(home / "dagster"))
        try:
            storage = mine.event_log_storage
            assert [pool.name for pool in storage.get_pool_limits()] == [GPU_POOL]
            with pytest.raises(Exception, match="InFailedSqlTransaction|UniqueViolation"):
                storage.initialize_concurrency_limit_to_default(GPU_POOL)
            storage.delete_concurrency_limit(GPU_POOL)
            assert storage.get_pool_limits() == []

            real = storage.initialize_concurrency_limit_to_default

            def lose_the_race(pool):  # the other process inserts between our check and insert
                other.event_log_storage.initialize_concurrency_limit_to_default(pool)
                return real(pool)

            monkeypatch.setattr(storage, "initialize_concurrency_limit_to_default", lose_the_race)
            ensure_pool_limit(mine)  # does not raise
            (pool,) = storage.get_pool_limits()
            assert (pool.name, pool.limit, pool.from_default) == (GPU_POOL, 1, True)
            ensure_pool_limit(mine)  # the row is there: nothing to do
        finally:
            mine.dispose()
            other.dispose()


def test_missing_server_binaries_fail_under_require_cluster(monkeypatch):
    from realsyn_assets_tests.e2e import postgres_server

    monkeypatch.setattr(postgres_server, "find_bindir", lambda: None)
    monkeypatch.setenv("REALSYN_REQUIRE_CLUSTER", "1")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL server binaries not found"):
        require_bindir()
    monkeypatch.delenv("REALSYN_REQUIRE_CLUSTER")
    with pytest.raises(pytest.skip.Exception, match="install the Debian package"):
        require_bindir()
