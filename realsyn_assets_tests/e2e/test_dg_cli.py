"""The `dg` CLI works for this project: `dg list defs` finds the Definitions through
`[tool.dg]` in pyproject.toml, and `dg launch` materializes one scale partition of a materialized
home, recorded in that home's Dagster instance."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from realsyn_assets.names import Asset, Job
from realsyn_assets.partitions import SCALES
from realsyn_assets_tests.e2e.dg_helpers import DG, copy_home, run_dg

pytestmark = pytest.mark.skipif(not DG.exists(), reason="dagster-dg-cli (dev extra) is missing")


def _json_document(output: str) -> dict:
    """The JSON object in `output` (dg may print warnings before it)."""
    return json.loads(output[output.index("{\n") :])


def test_dg_list_defs_finds_the_project(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    done = run_dg(home, "list", "defs", "--json", timeout=300)
    assert done.returncode == 0, done.output[-4000:]
    defs = _json_document(done.output)
    assets = {a["asset_key"] for a in defs["assets"]}
    assert set(Asset) <= assets
    assert {j["name"] for j in defs["jobs"]} & set(Job)
    assert Asset.BALANCED_SUBSET in {c["asset_key"] for c in defs["asset_checks"]}
    assert defs["sensors"]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the session's demo home may be built first (minutes)
def test_dg_launch_materializes_one_scale_partition(demo_home: Path, tmp_path: Path, monkeypatch):
    home = copy_home(demo_home, tmp_path / "home")
    scale = SCALES[1]
    done = run_dg(
        home, "launch", "--assets", Asset.BALANCED_SUBSET, "--partition", scale, timeout=600
    )
    assert done.returncode == 0, done.output[-6000:]
    assert "RUN_SUCCESS" in done.output, done.output[-6000:]

    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(limit=1)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("dagster/partition") == scale
        event = instance.get_latest_materialization_event(dg.AssetKey(Asset.BALANCED_SUBSET))
        assert event is not None and event.run_id == run.run_id
        assert event.asset_materialization.partition == scale
    assert (home / "data" / Asset.BALANCED_SUBSET / scale).is_dir()
