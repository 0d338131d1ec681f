"""Shard registry (keys, order, idempotent registration) and the inbox sensor."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from realsyn_assets.resources import HomeResource, StorageResource
from realsyn_assets.resources.home import Home
from realsyn_assets.sensors import inbox_sensor


def _shard(path):
    path.write_text(json.dumps({"texts": ["One two three four."], "images": [None]}) + "\n")
    return path


def test_register_keys_order_and_idempotence(tmp_path):
    home = Home(tmp_path / "home")
    a = _shard(tmp_path / "part 1.jsonl")
    (tmp_path / "other").mkdir()
    b = _shard(tmp_path / "other" / "part 1.jsonl")
    entries = home.register_shards([a, b])
    assert [e.key for e in entries] == ["part_1", "part_1-2"]
    assert [e.seq for e in entries] == [0, 1]
    again = home.register_shards([b, a])
    assert [e.key for e in again] == ["part_1-2", "part_1"]
    assert home.shard_order() == ["part_1", "part_1-2"]
    with pytest.raises(FileNotFoundError):
        home.register_shards([tmp_path / "missing.jsonl"])
    with pytest.raises(KeyError, match="realsyn ingest"):
        home.shard("nope")


def test_inbox_sensor_registers_new_files_once(tmp_path):
    home = Home(tmp_path / "home")
    home.inbox.mkdir(parents=True)
    _shard(home.inbox / "s1.jsonl")
    (home.inbox / "notes.txt").write_text("not a shard")
    instance = dg.DagsterInstance.ephemeral()
    storage = StorageResource(home=HomeResource(path=str(home.root)))
    # a resource with a nested resource is opened as a context manager
    with dg.build_sensor_context(instance=instance, resources={"storage": storage}) as context:
        result = inbox_sensor(context)
    assert not result.run_requests  # the automation conditions take the new partition on
    assert result.dynamic_partitions_requests[0].partition_keys == ["s1"]
    assert home.shard_order() == ["s1"]
    with dg.build_sensor_context(instance=instance, resources={"storage": storage}) as context:
        again = inbox_sensor(context)
    assert not again.run_requests
