"""`realsyn bench download`: runs on a few URLs and prints one JSON object (no timing asserts)."""

from __future__ import annotations

import json

from realsyn_assets.bench import NAMES, download


def test_bench_download_prints_the_documented_keys(capsys):
    argv = ["--urls", "12", "--sequential-urls", "3", "--latency", "0.01", "--threads", "4"]
    assert download.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("urls", "images_per_s", "sequential_images_per_s", "speedup"):
        assert isinstance(result[key], int | float) and result[key] > 0, key
    assert (result["urls"], result["processes"], result["threads"]) == (12, 1, 4)
    assert result["statuses"] == {"ok": 12} and result["sequential_statuses"] == {"ok": 3}
    assert "download" in NAMES and "_image_server" not in NAMES
