"""Hostile text in a shard (issue 18, failures 4 and 7): a text bomb is a counted `too_long`
rejection instead of minutes of sentence splitting, and invalid UTF-8 is replaced and counted."""

from __future__ import annotations

import gzip
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from realsyn_assets.core.ingest.documents import read_shard
from realsyn_assets.core.text.sentences import REJECT_TOO_LONG, SentenceFilterConfig
from realsyn_assets.core.text.shard import DOCUMENT_COLUMNS, extract_sentences

PROSE = "A brown dog runs across the green park near the old river. "
NORMAL = {"texts": [PROSE * 3, None], "images": [None, "x.jpg"]}


def _write_jsonl(path, records) -> None:
    with open(path, "w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


@pytest.mark.timeout(120)
def test_bomb_50mb_text_field_is_rejected_and_the_shard_finishes_in_seconds(tmp_path):
    bomb = PROSE * (50 * 2**20 // len(PROSE))  # one 50 MB text field, built in memory
    records = [{"id": f"n{i}", **NORMAL} for i in range(4)]
    records.insert(2, {"id": "bomb", "texts": [bomb], "images": [None]})
    _write_jsonl(tmp_path / "s.jsonl", records)
    start = time.perf_counter()
    tables = read_shard(tmp_path / "s.jsonl")
    rejected = tables.rejections.to_pylist()
    assert [(r["source_row"], r["reason"]) for r in rejected] == [(2, REJECT_TOO_LONG)]
    assert f"{len(bomb)} characters" in rejected[0]["detail"]
    assert tables.documents_read == 5 and tables.documents_kept == 4
    docs = tables.items.select(DOCUMENT_COLUMNS)
    sentences = extract_sentences(docs, "s0", SentenceFilterConfig())
    elapsed = time.perf_counter() - start
    assert sentences.text_blocks == 4
    assert elapsed < 30, f"a shard with one rejected text bomb took {elapsed:.1f} s"


def test_fault_document_limit_counts_every_text_block_and_is_configurable(tmp_path):
    many = {"id": "many", "texts": ["x" * 600, "y" * 600, None], "images": [None, None, "a.jpg"]}
    mmc4 = {"id": "mmc4", "text_list": ["z" * 700, "w" * 700], "image_info": []}
    _write_jsonl(tmp_path / "s.jsonl", [many, mmc4, {"id": "ok", **NORMAL}])
    assert read_shard(tmp_path / "s.jsonl").rejections.num_rows == 0  # defaults: all kept
    tables = read_shard(tmp_path / "s.jsonl", max_document_chars=1000)
    rejected = tables.rejections.to_pylist()
    assert [(r["source_row"], r["reason"]) for r in rejected] == [
        (0, REJECT_TOO_LONG),
        (1, REJECT_TOO_LONG),
    ]
    assert "1200 characters" in rejected[0]["detail"] and "1000" in rejected[0]["detail"]
    assert tables.documents_kept == 1
    assert read_shard(tmp_path / "s.jsonl", max_document_chars=0).documents_kept == 3  # 0 = off


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz"])
def test_fault_invalid_utf8_lines_are_replaced_and_counted(tmp_path, name):
    lines = [
        json.dumps({"id": "a", **NORMAL}).encode(),
        b'{"id": "b", "texts": ["A caf\xe9 with a red door stands on the corner."], '
        b'"images": [null]}',
        b"",
        b'{"id": "c", "texts": ["Broken \xff\xfe bytes in a sentence here."], "images": [null]}',
        b'{"id": "d", "texts": ["Fine text \xc3\xa9t\xc3\xa9 in UTF-8 stays as it is."], '
        b'"images": [null]}',
        b"\xff{not json",
    ]
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    tables = read_shard(path)
    assert tables.invalid_utf8_lines == 3
    texts = [t for t in tables.items.column("text").to_pylist() if t]
    assert "A caf\ufffd with a red door stands on the corner." in texts  # replaced, as before
    assert "Broken \ufffd\ufffd bytes in a sentence here." in texts
    assert "Fine text \u00e9t\u00e9 in UTF-8 stays as it is." in texts
    assert tables.documents_kept == 4
    assert tables.rejections.column("reason").to_pylist() == ["invalid_json"]


def test_fault_invalid_utf8_in_a_parquet_string_column_is_replaced_and_counted(tmp_path):
    raw = pa.array([b"A fine caption of a dog.", b"Bad \xff bytes in this text."], pa.binary())
    texts = pa.StringArray.from_buffers(len(raw), raw.buffers()[1], raw.buffers()[2])
    table = pa.table(
        {
            "id": ["p1", "p2"],
            "texts": pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), texts),
            "images": pa.array([[None], [None]], pa.list_(pa.binary())),
        }
    )
    pq.write_table(table, tmp_path / "s.parquet")
    tables = read_shard(tmp_path / "s.parquet")  # before: UnicodeDecodeError crashed the shard
    assert tables.documents_kept == 2
    assert tables.invalid_utf8_lines == 1
    assert tables.items.column("text").to_pylist() == [
        "A fine caption of a dog.",
        "Bad \ufffd bytes in this text.",
    ]
