"""Tests for core/balance/export.py: parquet, WebDataset shards, train / eval export."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from realsyn_assets.core.balance.export import (
    REALSYN_COLUMNS,
    export_splits,
    sample_key,
    shard_paths,
    tar_inventory,
    write_webdataset,
)
from realsyn_assets.core.ids import image_id, sentence_id
from realsyn_assets.core.io import write_table


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="JPEG")
    return buf.getvalue()


def _rows(tmp_path: Path, n: int = 5) -> pa.Table:
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    records = []
    for i in range(n):
        data = _jpeg((40 * i % 256, 10, 200))
        iid = image_id(data + bytes([i]))
        path = img_dir / f"{iid}.jpg"
        path.write_bytes(data)
        texts = [f"sentence {k} for image {i}" for k in (1, 2, 3)]
        rec = {
            "image_id": iid,
            "image_path": str(path),
            "raw_image_url": f"https://example.org/{i}.jpg",
            "text1": texts[0],
            "text2": texts[1],
            "text3": texts[2],
            "syn_text": f"A synthetic caption for image {i}.",
            "image_doc_id": f"doc_{i}",
            "image_position": i,
            "syn_score": 0.55 + i / 100,
            "cluster": i % 2,
            "extra_note": "kept",
        }
        for k in (1, 2, 3):
            rec[f"text{k}_id"] = sentence_id(texts[k - 1])
            rec[f"text{k}_doc_id"] = f"doc_t{k}_{i}"
            rec[f"text{k}_position"] = k
            rec[f"text{k}_score"] = 0.3 - k / 100
        records.append(rec)
    return pa.Table.from_pylist(records)


def _read_tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_realsyn_columns_match_release():
    assert REALSYN_COLUMNS == ["raw_image_url", "text1", "text2", "text3", "syn_text"]


def test_parquet_round_trip_and_atomic(tmp_path):
    table = _rows(tmp_path, 4)
    out = write_table(table, tmp_path / "out" / "subset.parquet")
    assert out == tmp_path / "out" / "subset.parquet"
    back = pq.read_table(out)
    assert back.equals(table)
    assert back.select(REALSYN_COLUMNS).num_rows == 4
    assert [p.name for p in out.parent.iterdir()] == ["subset.parquet"]  # no temp left
    write_table(table.slice(0, 1), out)  # replace in place
    assert pq.read_table(out).num_rows == 1


def test_webdataset_layout_and_content(tmp_path):
    table = _rows(tmp_path, 5)
    report: dict[str, int] = {}
    shards = write_webdataset(table, tmp_path / "wds", samples_per_shard=2, report=report)
    assert [p.name for p in shards] == ["00000.tar", "00001.tar", "00002.tar"]
    assert report["written"] == 5 and report["skipped_missing_image"] == 0

    by_id = {r["image_id"]: r for r in table.to_pylist()}
    seen = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
        files = _read_tar(shard)
        keys = sorted({n.split(".")[0] for n in names})
        for key in keys:
            # members of a sample are contiguous and sorted: jpg, json, txt
            i = names.index(f"{key}.jpg")
            assert names[i : i + 3] == [f"{key}.jpg", f"{key}.json", f"{key}.txt"]
            row = by_id[key]
            assert files[f"{key}.jpg"] == Path(row["image_path"]).read_bytes()
            assert files[f"{key}.txt"].decode() == row["text1"]
            meta = json.loads(files[f"{key}.json"])
            assert meta["text2"] == row["text2"] and meta["text3"] == row["text3"]
            assert meta["syn_text"] == row["syn_text"]
            assert meta["raw_image_url"] == row["raw_image_url"]
            for col in ("image_doc_id", "text1_id", "text3_doc_id", "text2_position", "cluster"):
                assert meta[col] == row[col]
            assert meta["text1_score"] == pytest.approx(row["text1_score"])
            assert meta["extra_note"] == "kept"  # extra columns survive
            assert "image_path" not in meta and "text1" not in meta
            # the image decodes
            Image.open(io.BytesIO(files[f"{key}.jpg"])).verify()
            seen.append(key)
    assert seen == sorted(by_id)  # every sample once, ordered by image_id


def test_webdataset_is_deterministic(tmp_path):
    table = _rows(tmp_path, 5)
    a = write_webdataset(table, tmp_path / "a", samples_per_shard=3)
    # same rows in another order -> identical bytes
    b = write_webdataset(table.take([4, 2, 0, 3, 1]), tmp_path / "b", samples_per_shard=3)
    assert [p.name for p in a] == [p.name for p in b]
    for pa_, pb_ in zip(a, b, strict=True):
        assert pa_.read_bytes() == pb_.read_bytes()
    again = write_webdataset(table, tmp_path / "a", samples_per_shard=3)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in b]


def test_webdataset_removes_stale_shards(tmp_path):
    table = _rows(tmp_path, 5)
    out = tmp_path / "wds"
    assert len(write_webdataset(table, out, samples_per_shard=1)) == 5
    (out / ".00007.tar.abc.tmp").write_bytes(b"half-written")  # leftover of a killed run
    (out / "README.md").write_text("not a shard")
    shards = write_webdataset(table.slice(0, 3), out, samples_per_shard=2)
    assert sorted(p.name for p in out.iterdir()) == ["00000.tar", "00001.tar", "README.md"]
    assert sum(len(_read_tar(p)) for p in shards) == 3 * 3
    assert write_webdataset(table.slice(0, 0), out) == []
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]


def test_webdataset_skips_bad_rows(tmp_path):
    table = _rows(tmp_path, 4)
    rows = table.to_pylist()
    Path(rows[1]["image_path"]).unlink()  # unreadable image
    rows.append(dict(rows[0], syn_text="duplicate"))  # repeated image_id
    rows.append(dict(rows[2], image_id=None))  # no id
    rows[3]["syn_score"] = float("nan")  # must still be valid JSON
    report: dict[str, int] = {}
    shards = write_webdataset(pa.Table.from_pylist(rows), tmp_path / "wds", report=report)
    assert report == {
        "written": 3,
        "skipped_no_id": 1,
        "skipped_duplicate_id": 1,
        "skipped_missing_image": 1,
    }
    files = _read_tar(shards[0])
    assert len(files) == 9  # rows 0, 2, 3 x (jpg, json, txt)
    meta = json.loads(files[f"{rows[3]['image_id']}.json"])
    assert meta["syn_score"] is None
    first = json.loads(files[f"{rows[0]['image_id']}.json"])
    assert first["syn_text"] != "duplicate"  # the first occurrence of a repeated id wins


def test_webdataset_relative_paths_and_custom_column(tmp_path):
    table = _rows(tmp_path, 2)
    rel = [str(Path(p).relative_to(tmp_path)) for p in table["image_path"].to_pylist()]
    table = table.drop_columns(["image_path"]).append_column("file", pa.array(rel))
    shards = write_webdataset(
        table, tmp_path / "wds", image_path_column="file", image_root=tmp_path
    )
    names = _read_tar(shards[0])
    assert sum(n.endswith(".jpg") for n in names) == 2
    with pytest.raises(ValueError, match="image_path"):
        write_webdataset(table, tmp_path / "x")


def test_export_splits_writes_train_and_eval_apart(tmp_path):
    table = _rows(tmp_path, 6)
    split = ["eval" if i in (1, 4) else "train" for i in range(6)]
    table = table.append_column("split", pa.array(split))
    Path(table.column("image_path")[2].as_py()).unlink()  # a train image that cannot be read
    out = tmp_path / "export"
    train, held = export_splits(table, out, ("train", "eval"), samples_per_shard=2)
    assert (train.rows, held.rows) == (3, 2)
    assert train.skipped == {"skipped_missing_image": 1} and held.skipped == {}
    assert [p.name for p in train.shards] == ["00000.tar", "00001.tar"]
    assert shard_paths(out, "train") == train.shards and shard_paths(out, "eval") == held.shards
    for part in (train, held):
        rows = pq.read_table(part.parquet)
        assert "split" not in rows.column_names
        ids = rows.column("image_id").to_pylist()
        assert ids == sorted(ids)  # tar order
        samples = tar_inventory(part.shards)
        assert sorted(samples) == [sample_key(i) for i in ids]
        assert all(set(m) == {"jpg", "json", "txt"} and m["txt"] > 0 for m in samples.values())
    assert not set(tar_inventory(train.shards)) & set(tar_inventory(held.shards))
    before = [p.read_bytes() for p in (*train.shards, *held.shards, train.parquet, held.parquet)]
    again = export_splits(
        table.take([5, 3, 1, 0, 2, 4]), out, ("train", "eval"), samples_per_shard=2
    )
    after = [p.read_bytes() for e in again for p in e.shards] + [
        e.parquet.read_bytes() for e in again
    ]
    assert after == before  # same rows in any order, same bytes


def test_export_splits_rejects_unknown_splits_and_keeps_empty_ones(tmp_path):
    table = _rows(tmp_path, 3).append_column("split", pa.array(["train"] * 3))
    train, held = export_splits(table, tmp_path / "out", ("train", "eval"))
    assert held.rows == 0 and held.shards == [] and pq.read_table(held.parquet).num_rows == 0
    with pytest.raises(ValueError, match="unknown splits"):
        export_splits(
            table.set_column(table.schema.get_field_index("split"), "split", pa.array(["x"] * 3)),
            tmp_path / "out",
            ("train", "eval"),
        )
    with pytest.raises(ValueError, match="split"):
        export_splits(table.drop_columns(["split"]), tmp_path / "out", ("train",))


def test_sample_keys_have_no_dots():
    assert sample_key("img.a/b c") == "img_a_b_c"
