"""`realsyn bench balance` at a small size: one JSON object, subsets nested and on target."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from realsyn_assets.bench import NAMES
from realsyn_assets.bench import balance as bench
from realsyn_assets.core.balance.sampling import SCALE_SHARES


def test_bench_balance_prints_one_json_object(capsys, tmp_path):
    argv = ["--rows", "30000", "--out", str(tmp_path), "--kmeans-rows", "3000", "--dim", "16"]
    assert "balance" in NAMES
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip())
    for key in ("rows", "clusters", "seconds", "peak_rss_mb", "window_s", "caps_s", "export_s"):
        assert key in out
    assert out["rows"] == 30000 and out["clusters"] > 100
    assert out["kmeans_rows"] == 3000 and out["kmeans_s"] >= 0
    assert out["kmeans_train_points"] <= 3000
    previous = set()
    for scale, share in SCALE_SHARES.items():
        got = out["scales"][scale]
        assert abs(got["achieved_share"] - share) < 0.01
        table = pq.read_table(tmp_path / scale / "realsyn.parquet")
        assert table.num_rows == got["samples"]
        rows = set(table.column("image_id").to_pylist())
        assert previous <= rows
        previous = rows
