"""The Definitions load fast, hold the whole graph (names.Asset), and every asset is checked."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import dagster as dg

from realsyn_assets.names import Asset
from realsyn_assets_tests.conftest import REPO

EXPECTED = {asset.value for asset in Asset}


def test_definitions_load_with_every_asset_check_job_and_sensor():
    from realsyn_assets.definitions import STAGES, defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == EXPECTED
    checked = {k.asset_key.to_user_string() for k in graph.asset_check_keys}
    assert checked == EXPECTED, EXPECTED - checked
    for stage in STAGES:
        assert defs.resolve_job_def(stage.job) is not None
    assert defs.resolve_sensor_def("inbox_sensor") is not None
    dg.Definitions.validate_loadable(defs)


def test_partitions_of_assets():
    from realsyn_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    shard = {
        Asset.RAW_DOCUMENTS,
        Asset.IMAGE_DOWNLOADS,
        Asset.EXTRACTED_IMAGES,
        Asset.EXTRACTED_SENTENCES,
        Asset.IMAGE_EMBEDDINGS,
        Asset.SENTENCE_EMBEDDINGS,
        Asset.IMAGE_DEDUP,
        Asset.SEMANTIC_FILTER,
        Asset.SENTENCE_DEDUP,
        Asset.RETRIEVED_TEXTS,
        Asset.SYNTHETIC_TEXTS,
    }
    scale = {
        Asset.BALANCED_SUBSET,
        Asset.SUBSET_EXPORT,
        Asset.CLIP_CHECKPOINT,
        Asset.CLIP_ABLATIONS,
        Asset.CLIP_EVALUATION,
    }
    for key in graph.get_all_asset_keys():
        partitions = graph.get(key).partitions_def
        name = key.to_user_string()
        if name in shard:
            assert (
                isinstance(partitions, dg.DynamicPartitionsDefinition)
                and partitions.name == "shard"
            )
        elif name in scale:
            assert partitions.get_partition_keys() == ["15M", "30M", "100M"]
        else:
            assert partitions is None, name


def test_loading_definitions_does_not_import_torch_or_vllm():
    code = (
        "import sys, realsyn_assets.definitions; "
        "print(sorted(m for m in ('torch', 'open_clip', 'vllm', 'lancedb') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_pyproject_and_workspace_point_at_the_same_module():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    module = pyproject["tool"]["dagster"]["module_name"]
    assert module == "realsyn_assets.definitions"
    assert f"module_name: {module}" in (REPO / "workspace.yaml").read_text()
    assert "vllm" in " ".join(pyproject["project"]["optional-dependencies"]["gpu"])
    assert not any("vllm" in d for d in pyproject["project"]["dependencies"])
