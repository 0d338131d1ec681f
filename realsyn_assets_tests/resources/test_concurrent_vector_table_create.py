"""Two processes that both find no LanceDB table and both create it: each committed a version 1
and the later silently replaced the other's rows (a concurrent `realsyn ingest` on a fresh home
lost a shard's image vectors this way). `replace_shard` now holds a per-table lock."""

from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pyarrow as pa

from realsyn_assets.resources import HomeResource, VectorStoreResource
from realsyn_assets.resources.vectors import vectors_column


def _rows(shard: str, n: int = 4) -> pa.Table:
    return pa.table(
        {
            "image_id": pa.array([f"{shard}-{i}" for i in range(n)], pa.string()),
            "shard": pa.array([shard] * n, pa.string()),
            "vector": vectors_column(np.eye(n, 4, dtype=np.float32)),
        }
    )


ROUNDS = 6


def _write(root: str, shard: str, barriers) -> None:
    """One writer process, one fresh home per round. It waits until both writers have looked
    for the table (or the other is held by the lock) before creating it, so the two creates
    meet every round; a round lost rows about one time in three before the lock."""
    real_open = VectorStoreResource._open
    current = {}

    def open_then_wait(self, db, name):
        table = real_open(self, db, name)
        if table is None:
            try:
                current["barrier"].wait()
            except threading.BrokenBarrierError:
                pass  # the other writer waits on the lock: there is nothing to race with
        return table

    VectorStoreResource._open = open_then_wait
    for i, barrier in enumerate(barriers):
        current["barrier"] = barrier
        store = VectorStoreResource(home=HomeResource(path=f"{root}/round-{i}"))
        store.replace_shard("images", shard, _rows(shard))


def test_concurrent_first_writes_keep_every_shard(tmp_path):
    ctx = mp.get_context("spawn")
    barriers = [ctx.Barrier(2, timeout=1.5) for _ in range(ROUNDS)]
    procs = [
        ctx.Process(target=_write, args=(str(tmp_path), shard, barriers))
        for shard in ("shard-a", "shard-b")
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    for i in range(ROUNDS):
        store = VectorStoreResource(home=HomeResource(path=f"{tmp_path}/round-{i}"))
        shards = store.read("images", columns=["shard"]).column("shard").to_pylist()
        assert sorted(shards) == ["shard-a"] * 4 + ["shard-b"] * 4, f"round {i}"
