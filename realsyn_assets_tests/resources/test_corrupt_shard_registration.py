"""Issue 18, failure 2: an unreadable shard file is refused at registration (cheap checks: parquet
magic bytes and footer, gzip header and stream, JSON lines that are text), with one line naming
the file and the cause, and is not registered; good files next to it still are."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from realsyn_assets import cli
from realsyn_assets.resources.home import Home

DOC = {"texts": ["One two three four five six."], "images": [None]}


def _parquet(path, n=20):
    pq.write_table(pa.Table.from_pylist([DOC] * n), path)
    return path


def _jsonl(path):
    path.write_text(json.dumps(DOC) + "\n")
    return path


def _truncated_parquet(path):
    _parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_corrupt_truncated_parquet_is_refused_at_registration(tmp_path):
    home = Home(tmp_path / "home")
    bad = _truncated_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="bad.parquet") as info:
        home.register_shards([bad])
    message = str(info.value)
    assert "\n" not in message and "PAR1" in message, message
    assert home.shard_order() == []


@pytest.mark.parametrize(
    ("name", "make", "cause"),
    [
        ("zero.parquet", lambda p: p.write_bytes(b""), "too short"),
        ("head.parquet", lambda p: p.write_bytes(b"XXXX" + _parquet(p).read_bytes()[4:]), "PAR1"),
        (
            "footer.parquet",  # magic bytes in place, footer bytes garbled
            lambda p: p.write_bytes(
                (lambda d: d[:-40] + b"\x07" * 36 + d[-4:])(_parquet(p).read_bytes())
            ),
            "footer",
        ),
        ("plain.jsonl.gz", lambda p: _jsonl(p), "gzip"),
        (
            "cut.jsonl.gz",
            lambda p: p.write_bytes(gzip.compress((json.dumps(DOC) + "\n").encode() * 200)[:-30]),
            "gzip",
        ),
        ("binary.jsonl", lambda p: p.write_bytes(_parquet(p).read_bytes()), "parquet"),
        ("nul.jsonl", lambda p: p.write_bytes(b'{"texts": ["a\x00b"]}\n'), "NUL"),
    ],
)
def test_corrupt_shard_files_are_refused_with_file_and_cause(tmp_path, name, make, cause):
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match=name) as info:
        Home(tmp_path / "home").register_shards([path])
    assert cause in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_corrupt_check_accepts_valid_and_empty_shards(tmp_path):
    home = Home(tmp_path / "home")
    good = [
        _parquet(tmp_path / "a.parquet"),
        _jsonl(tmp_path / "b.jsonl"),
        tmp_path / "c.jsonl.gz",
        tmp_path / "empty.jsonl",  # zero bytes: an empty shard, a valid state
        tmp_path / "bad_lines.jsonl",  # every line invalid: rejections, not a refused file
        tmp_path / "latin1.jsonl",  # invalid UTF-8 is repaired and counted, not refused
    ]
    good[2].write_bytes(gzip.compress((json.dumps(DOC) + "\n").encode()))
    good[3].write_bytes(b"")
    good[4].write_text("{not json\n[1, 2\n")
    good[5].write_bytes(b'{"texts": ["caf\xe9 au lait is good"], "images": [null]}\n')
    entries = home.register_shards(good)
    assert [e.key for e in entries] == ["a", "b", "c", "empty", "bad_lines", "latin1"]


def test_corrupt_file_refused_by_cli_ingest_others_registered(tmp_path, clean_env, capsys):
    good = _jsonl(tmp_path / "good.jsonl")
    bad = _truncated_parquet(tmp_path / "bad.parquet")
    home = tmp_path / "home"
    code = cli.main(["ingest", "--home", str(home), str(good), str(bad)])
    err = capsys.readouterr().err
    assert code != 0
    lines = [line for line in err.splitlines() if "bad.parquet" in line]
    assert len(lines) == 1 and "PAR1" in lines[0], err
    assert Home(home).shard_order() == ["good"]


def test_corrupt_inbox_file_is_not_registered_by_the_sensor(tmp_path):
    import dagster as dg

    from realsyn_assets.resources import HomeResource, StorageResource
    from realsyn_assets.sensors import inbox_sensor

    home = Home(tmp_path / "home")
    home.inbox.mkdir(parents=True)
    _jsonl(home.inbox / "good.jsonl")
    _truncated_parquet(home.inbox / "half_copied.parquet")
    storage = StorageResource(home=HomeResource(path=str(home.root)))
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources={"storage": storage}) as context:
        result = inbox_sensor(context)
    assert result.dynamic_partitions_requests[0].partition_keys == ["good"]
    assert home.shard_order() == ["good"]
    with dg.build_sensor_context(instance=instance, resources={"storage": storage}) as context:
        again = inbox_sensor(context)
    assert not again.run_requests
    assert "half_copied.parquet" in again.skip_reason.skip_message
