"""`realsyn bench embed` on the tiny demo encoder (ViT-B-32 is too slow for a unit test)."""

from __future__ import annotations

import json

from PIL import Image

from realsyn_assets.bench import embed as bench


def test_make_jpegs_are_real_photo_sized_files(tmp_path):
    paths = bench.make_jpegs(tmp_path / "imgs", 3, 80, 60, seed=1)
    assert len(paths) == 3 and len({p.read_bytes() for p in paths}) == 3
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (80, 60)
        assert p.stat().st_size > 1000  # textured, not a flat colour


def test_main_reports_whole_path_and_model_only(capsys, tmp_path):
    argv = [
        "--model", "realsyn-tiny",
        "--images", "24",
        "--size", "96x72",
        "--batch-size", "8",
        "--repeats", "1",
        "--weights-dir", str(tmp_path / "models"),
        "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip())
    for key in ("images_per_s", "model_only_images_per_s", "ratio", "model", "runs"):
        assert key in out
    assert out["model"] == "realsyn-tiny" and out["images"] == 24
    assert out["images_per_s"] > 0 and out["model_only_images_per_s"] > 0
    run = out["runs"][0]
    # one pair: the ratio is model-only time over whole-path time, i.e. the throughput ratio
    # (run times are rounded to 1 ms, so compare against the interval that rounding allows)
    alone, total, half_ms = run["model_only_s"], run["total_s"], 0.0005
    low = (alone - half_ms) / (total + half_ms) - half_ms
    high = (alone + half_ms) / (total - half_ms) + half_ms
    assert low <= out["ratio"] <= high
    assert abs(out["ratio"] - out["images_per_s"] / out["model_only_images_per_s"]) < 0.01
    assert run["total_s"] >= run["encode_s"] > 0 and run["write_s"] > 0
    # the temp work dir is cleaned up; the reused weights dir is kept
    assert [p.name for p in tmp_path.iterdir()] == ["models"]
    assert any((tmp_path / "models").iterdir())
