"""Identical inputs and seed give identical bytes (issue 18, failure 7): two fresh homes, each
`realsyn demo --docs 24 --shards 2 --seed 0` in its own folder, hold byte-identical parquet files,
webdataset tars and data cards. Outputs store paths relative to the home (or to the shard's
folder), so where a home lies does not reach its bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from realsyn_assets_tests.conftest import run_cli

DEMO_ARGS = ("--docs", "24", "--shards", "2", "--seed", "0")


def _digests(home: Path) -> dict[str, str]:
    """sha256 of every parquet under data/, every tar and every DATA_CARD.md, by relative path."""
    data = home / "data"
    files = [*data.rglob("*.parquet"), *data.rglob("*.tar"), *data.rglob("DATA_CARD.md")]
    return {
        str(f.relative_to(home)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(files)
    }


def _demo(home: Path) -> None:
    result = run_cli(home, "demo", "--home", str(home), *DEMO_ARGS, timeout=1500)
    assert result.returncode == 0, (
        f"realsyn demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fault_reproducible_bytes_two_fresh_homes(tmp_path):
    homes = [tmp_path / "first_home", tmp_path / "second" / "home"]  # different depths too
    for home in homes:
        _demo(home)
    first, second = (_digests(home) for home in homes)
    assert first.keys() == second.keys()
    kinds = {Path(name).suffix for name in first}
    assert {".parquet", ".tar", ".md"} <= kinds, kinds
    differ = sorted(name for name in first if first[name] != second[name])
    assert not differ, f"files that differ between two identical runs: {differ}"
    # no output stores where its home lies
    for name in first:
        if name.endswith(".parquet"):
            text = str(pq.read_table(homes[0] / name).to_pylist())
            assert str(homes[0]) not in text, f"{name} stores the home's absolute path"
