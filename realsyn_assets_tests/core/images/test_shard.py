"""Tests for realsyn_assets.core.images.shard: one shard's image slots -> kept / rejected tables."""

from __future__ import annotations

import pyarrow as pa

from realsyn_assets.core.ids import DUPLICATE_IN_SHARD, image_id
from realsyn_assets.core.images.extract import REJECT_TOO_SMALL, ImageFilterConfig
from realsyn_assets.core.images.shard import (
    KEPT_IMAGE_SCHEMA,
    REJECTED_IMAGE_SCHEMA,
    fetch_slots,
    filter_images,
)
from realsyn_assets.core.ingest.documents import ITEM_SCHEMA
from realsyn_assets_tests.core.images.test_extract import encode, smooth_image


def _docs(slots: list[tuple[str | None, bytes | None]]) -> pa.Table:
    """A raw_documents table: one text block, then one image slot per (ref, bytes)."""
    rows = [{"doc_id": "doc_a", "position": 0, "kind": "text", "text": "Hello there."}]
    for i, (ref, data) in enumerate(slots, start=1):
        rows.append(
            {
                "doc_id": f"doc_{i}",
                "position": i,
                "kind": "image",
                "image_ref": ref,
                "image_bytes": data,
            }
        )
    return pa.Table.from_pylist(rows, schema=ITEM_SCHEMA)


def test_every_slot_ends_in_exactly_one_table(tmp_path):
    big = encode(smooth_image(1), "JPEG")
    small = encode(smooth_image(2, (60, 40)), "PNG")
    docs = _docs(
        [
            (None, big),
            (str(tmp_path / "missing.jpg"), None),
            (None, big),  # same bytes again: a repeat within the shard
            (None, small),
        ]
    )
    fetched = fetch_slots(docs, "s0", base_dir=tmp_path)
    assert fetched.slots == 4
    assert [iid for iid, _, _ in fetched.unique] == [image_id(big), image_id(small)]
    assert [r["reason"] for r in fetched.rejected] == ["missing_file", DUPLICATE_IN_SHARD]

    tables = filter_images(fetched, lambda iid: tmp_path / f"{iid}.jpg", ImageFilterConfig())
    assert tables.kept.schema == KEPT_IMAGE_SCHEMA
    assert tables.rejected.schema == REJECTED_IMAGE_SCHEMA
    assert tables.kept.num_rows + tables.rejected.num_rows == fetched.slots
    kept = tables.kept.to_pylist()
    assert [(r["doc_id"], r["image_id"], r["shard"]) for r in kept] == [
        ("doc_1", image_id(big), "s0")
    ]
    assert (tmp_path / f"{image_id(big)}.jpg").exists()
    # fetch rejections first, then the filter's, each in page order
    rejected = tables.rejected.to_pylist()
    assert [(r["doc_id"], r["reason"]) for r in rejected] == [
        ("doc_2", "missing_file"),
        ("doc_3", DUPLICATE_IN_SHARD),
        ("doc_4", REJECT_TOO_SMALL),
    ]
    assert rejected[1]["detail"] == "same bytes as doc_1"


def test_a_shard_without_images_gives_empty_tables(tmp_path):
    fetched = fetch_slots(_docs([]), "s0")
    tables = filter_images(fetched, lambda iid: tmp_path / iid, ImageFilterConfig())
    assert fetched.slots == 0
    assert tables.kept.num_rows == tables.rejected.num_rows == 0
    assert tables.kept.schema == KEPT_IMAGE_SCHEMA
