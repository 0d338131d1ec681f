"""Issue 18, failure 5: several `realsyn` processes on one fresh home at once.

Before: two ingests raced while the Dagster instance created its SQLite storage (`table
secondary_indexes already exists`, or two alembic heads in schedules.db, which broke the home
for good) and a shard stayed registered but never extracted. Now: 4 concurrent
`realsyn ingest --extract` processes, each with its own shard, and a `realsyn status` all exit 0; the 4 shards are
registered once each and extracted, and LanceDB holds every embedded row once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dagster as dg
import lancedb
import pytest

from realsyn_assets.demo.corpus import generate_demo_corpus
from realsyn_assets.resources.home import Home
from realsyn_assets_tests.conftest import REPO, cli_env

N = 4
DEADLINE_S = 600


def _start(home, log, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "realsyn_assets.cli", *args, "--home", str(home)],
        env={**cli_env(home), "OMP_NUM_THREADS": "1"},
        cwd=str(REPO),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_all(procs) -> list[int | None]:
    deadline = time.monotonic() + DEADLINE_S
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    return codes


def _kill_all(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 120)
def test_concurrent_ingests_on_a_fresh_home(tmp_path):
    corpus = generate_demo_corpus(tmp_path / "corpus", n_docs=8, n_shards=N, seed=1)
    home = tmp_path / "home"  # fresh: no Dagster instance, no registry yet
    logs = [open(tmp_path / f"cli-{i}.log", "w") for i in range(N + 1)]  # noqa: SIM115
    commands = [("ingest", "--extract", str(shard)) for shard in corpus.shard_paths]
    commands.append(("status",))  # a reader at the same time
    procs = []
    try:
        for log, command in zip(logs, commands, strict=True):
            procs.append(_start(home, log, *command))
        codes = _wait_all(procs)
    finally:
        _kill_all(procs)
        for log in logs:
            log.close()
    outputs = [(tmp_path / f"cli-{i}.log").read_text() for i in range(N + 1)]
    for code, output in zip(codes, outputs, strict=True):
        assert code == 0, f"exit {code}:\n{output[-4000:]}"

    layout = Home(home)
    shards = layout.shards()
    assert len(shards) == N
    assert sorted(entry.path for entry in shards.values()) == sorted(
        str(p.resolve()) for p in corpus.shard_paths
    )
    assert sorted(entry.seq for entry in shards.values()) == list(range(N))
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        assert sorted(instance.get_dynamic_partitions("shard")) == sorted(shards)
        for asset in ("raw_documents", "extracted_images", "image_embeddings", "image_dedup"):
            done = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert done == set(shards), asset
    finally:
        instance.dispose()
    db = lancedb.connect(str(home / "lancedb"))
    images = db.open_table("images").to_arrow()
    pairs = list(
        zip(images.column("shard").to_pylist(), images.column("image_id").to_pylist(), strict=True)
    )
    assert len(pairs) == len(set(pairs)) and set(images.column("shard").to_pylist()) == set(shards)
