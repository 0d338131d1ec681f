"""A full disk through Dagster (issue 18, failure 6): the home's image folder on a 2 MiB tmpfs.
Extraction fails its shard with one line naming the path and the cause, before decoding, while
the Dagster instance (on another file system) still records the run; with room again, a rerun
succeeds."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realsyn_assets.names import Asset, Job
from realsyn_assets_tests.core.test_fault_disk_full import _tmpfs


def _noise_png(seed: int) -> bytes:
    """A PNG that compresses badly: a few hundred KiB each, so four do not fit in 2 MiB."""
    pixels = np.random.default_rng(seed).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _shard(folder: Path) -> Path:
    (folder / "img").mkdir(parents=True)
    shard = folder / "docs.jsonl"
    with open(shard, "w") as fh:
        for i in range(8):
            (folder / "img" / f"{i}.png").write_bytes(_noise_png(i))
            doc = {"id": f"d{i}", "texts": [f"A photo of a thing number {i}.", None]}
            fh.write(json.dumps({**doc, "images": [None, f"img/{i}.png"]}) + "\n")
    return shard


@pytest.mark.timeout(300)
def test_disk_full_image_folder_fails_the_shard_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    from realsyn_assets import pipeline

    layout = pipeline.prepare_environment(tmp_path / "home")
    monkeypatch.setenv("REALSYN_HOME", str(layout.root))
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    (key,) = pipeline.register(layout, [_shard(tmp_path / "corpus")])

    with _tmpfs(layout.images) as images:
        report = pipeline.run_stage(Job.SHARD_EXTRACT, key, raise_on_failure=False)
        assert not report.success
        assert "\n" not in report.error
        assert f"No space left on device while writing {images}/" in report.error, report.error
        assert [p for p in images.rglob("*") if p.is_file()] == []  # nothing half-written
        assert "sqlite3" not in report.error and "disk I/O error" not in report.error

    # the instance recorded the failed run: its storage never ran out
    import dagster as dg

    instance = dg.DagsterInstance.get()
    try:
        runs = instance.get_runs()
        assert runs and runs[0].status == dg.DagsterRunStatus.FAILURE
    finally:
        instance.dispose()
    # with room again the same shard extracts
    report = pipeline.run_stage(Job.SHARD_EXTRACT, key)
    assert report.success
    assert layout.partition_file(Asset.EXTRACTED_IMAGES, key).is_file()
