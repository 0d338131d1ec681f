"""Fault injection through Dagster, issue 18 failure 1: a hostile shard's image references (system
files, `..` escapes, symlinks leading out, a device, a FIFO, a folder) end as counted rejections
of `extracted_images` by reason; nothing outside the shard folder is copied into the home, and an
allowed root on the storage resource lets an outside image in."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from realsyn_assets.core.ids import DUPLICATE_IN_SHARD
from realsyn_assets.core.ingest.confined import (
    REJECT_NOT_A_REGULAR_FILE,
    REJECT_OUTSIDE_CORPUS,
    REJECT_SYMLINK_OUTSIDE_CORPUS,
)
from realsyn_assets.names import Asset, ExtractedImagesMetrics, Job


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (160, 120), (40 * seed % 256, 90, 200 - 30 * seed)).save(buf, "JPEG")
    return buf.getvalue()


def _hostile_shard(root: Path) -> tuple[Path, Path]:
    """A shard folder whose documents name hostile image references; (shard file, outside dir)."""
    shard_dir, outside = root / "corpus" / "s1", root / "elsewhere"
    (shard_dir / "img").mkdir(parents=True)
    outside.mkdir()
    (shard_dir / "img" / "a.jpg").write_bytes(_jpeg(1))
    (shard_dir / "img" / "b.jpg").write_bytes(_jpeg(2))
    (outside / "outside.jpg").write_bytes(_jpeg(3))
    (shard_dir / "alias.jpg").symlink_to(shard_dir / "img" / "b.jpg")  # inside: allowed
    (shard_dir / "pw.jpg").symlink_to("/etc/passwd")
    (shard_dir / "out.jpg").symlink_to(outside / "outside.jpg")
    os.mkfifo(shard_dir / "pipe.jpg")
    (shard_dir / "folder.jpg").mkdir()
    refs = [
        "img/a.jpg",
        "alias.jpg",
        "/etc/passwd",
        "../../../../../../../../etc/hostname",
        str(outside / "outside.jpg"),
        "/dev/zero",
        "pw.jpg",
        "out.jpg",
        "pipe.jpg",
        "folder.jpg",
    ]
    shard = shard_dir / "hostile.jsonl"
    with open(shard, "w") as fh:
        for i, ref in enumerate(refs):
            doc = {"id": f"doc{i}", "texts": [f"A dog runs across field {i}.", None]}
            fh.write(json.dumps({**doc, "images": [None, ref]}) + "\n")
    return shard, outside


@pytest.mark.timeout(300)
def test_traversal_hostile_shard_rejections_by_reason_through_dagster(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    from realsyn_assets import pipeline
    from realsyn_assets.resources import HomeResource, MetricsResource

    layout = pipeline.prepare_environment(tmp_path / "home")
    monkeypatch.setenv("REALSYN_HOME", str(layout.root))
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    shard, outside = _hostile_shard(tmp_path)
    (key,) = pipeline.register(layout, [shard])
    rejected_file = layout.partition_file(Asset.EXTRACTED_IMAGES, key, ".rejected.parquet")

    report = pipeline.run_stage(Job.SHARD_EXTRACT, key)
    assert report.success
    reasons = Counter(pq.read_table(rejected_file).column("reason").to_pylist())
    assert reasons == {
        REJECT_OUTSIDE_CORPUS: 4,  # /etc/passwd, ../ to /etc/hostname, outside JPEG, /dev/zero
        REJECT_SYMLINK_OUTSIDE_CORPUS: 2,  # -> /etc/passwd, -> the outside JPEG
        REJECT_NOT_A_REGULAR_FILE: 2,  # FIFO, folder
    }
    kept = pq.read_table(layout.partition_file(Asset.EXTRACTED_IMAGES, key)).to_pylist()
    assert sorted(Path(r["source_ref"]).name for r in kept) == ["a.jpg", "alias.jpg"]
    assert len(list(layout.images.rglob("*.jpg"))) == 2  # nothing from outside was copied
    metrics = MetricsResource(home=HomeResource(path=str(layout.root)))
    assert metrics.rejection_counts(Asset.EXTRACTED_IMAGES, key) == dict(reasons)
    assert metrics.counts(Asset.EXTRACTED_IMAGES, key)[ExtractedImagesMetrics.IMAGES_IN] == 10

    # the folder beside the corpus as an allowed root: the outside JPEG is read once (by path),
    # its symlink is then the same bytes again
    config = {"resources": {"storage": {"config": {"allowed_image_roots": [str(outside)]}}}}
    assert pipeline.run_stage(Job.SHARD_EXTRACT, key, config).success
    reasons = Counter(pq.read_table(rejected_file).column("reason").to_pylist())
    assert reasons == {
        REJECT_OUTSIDE_CORPUS: 3,
        REJECT_SYMLINK_OUTSIDE_CORPUS: 1,  # -> /etc/passwd
        REJECT_NOT_A_REGULAR_FILE: 2,
        DUPLICATE_IN_SHARD: 1,
    }
    kept = pq.read_table(layout.partition_file(Asset.EXTRACTED_IMAGES, key)).to_pylist()
    assert sorted(Path(r["source_ref"]).name for r in kept) == [
        "a.jpg",
        "alias.jpg",
        "outside.jpg",
    ]
