"""Ray as the engine (issue 19): a head and a worker node started on 127.0.0.1, a home pointed at
them through engine.yaml, two shards materialized through Dagster (raw documents, image and
sentence extraction, image and sentence embeddings). The heavy step of every per-shard asset ran
as the Ray task `realsyn:<asset>:<shard>` (FINISHED, per Ray's state API), and every output --
the extraction tables' bytes, the saved JPEG files, the LanceDB rows with their vectors -- equals
a local run of the same corpus into another home. synthetic_texts (tag vocabulary, captions,
fusion) of one shard runs as a Ray task with the same bytes as locally. A task failing on the
cluster re-raises its own exception, naming the task."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from realsyn_assets import pipeline
from realsyn_assets.assets import ALL_ASSETS, ALL_CHECKS
from realsyn_assets.core.io import read_table
from realsyn_assets.names import Asset
from realsyn_assets.resources import EngineResource, HomeResource, StorageResource
from realsyn_assets.resources import engine as engine_module
from realsyn_assets.resources.engine import (
    ADDRESS_ENV,
    ENGINE_FILE,
    read_engine_file,
    task_name,
    write_engine_file,
)
from realsyn_assets.resources.home import Home
from realsyn_assets_tests.assets.tiny_home_c import home_resources
from realsyn_assets_tests.e2e.ray_cluster import ray_cluster, require_ray

pytestmark = pytest.mark.slow  # a Ray head + worker and two small homes (~2-3 minutes)

HEAVY = [
    Asset.EXTRACTED_IMAGES,
    Asset.EXTRACTED_SENTENCES,
    Asset.IMAGE_EMBEDDINGS,
    Asset.SENTENCE_EMBEDDINGS,
]
TABLES = {"images": "image_id", "sentences": "sentence_id"}
# the heavy assets and every per-shard asset they need (raw documents, downloads, ...)
SELECTION = dg.AssetSelection.assets(*HEAVY).upstream() - dg.AssetSelection.assets(
    Asset.BOOTSTRAP_ENCODER
)


def _build_home(root: Path, monkeypatch, address: str = "") -> tuple[Home, list[str]]:
    """A two-shard demo corpus in its own home, its per-shard stages up to the embeddings
    materialized through Dagster; `address` = the Ray cluster named in engine.yaml."""
    from realsyn_assets.core.embedding.encoder import ensure_local_weights
    from realsyn_assets.demo.corpus import generate_demo_corpus

    layout = Home(root)
    monkeypatch.setenv("REALSYN_HOME", str(layout.root))
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    pipeline.prepare_environment(layout.root)
    corpus = generate_demo_corpus(layout.root / "corpus", n_docs=8, n_shards=2, seed=5)
    keys = pipeline.register(layout, corpus.shard_paths)
    if address:
        write_engine_file(layout.root, address)
    weights = ensure_local_weights("realsyn-tiny", layout.root / "encoder.pt")
    resources = home_resources(layout.root, checkpoint=str(weights), device="cpu")
    resources["storage"] = StorageResource(home=resources["home"], workers=1)
    assert resources["engine"].settings().address == address
    instance = pipeline.get_instance()
    try:
        for key in keys:
            result = dg.materialize(
                [*ALL_ASSETS, *ALL_CHECKS],
                selection=SELECTION,
                resources=resources,
                instance=instance,
                partition_key=key,
            )
            assert result.success
    finally:
        instance.dispose()
    return layout, keys


def _finished_tasks(dashboard: str, name: str) -> list:
    """The FINISHED tasks named `name`; task events reach the state API with a short delay."""
    from ray.util.state import list_tasks

    deadline = time.monotonic() + 60
    while True:
        tasks = list_tasks(
            address=dashboard, filters=[("name", "=", name)], raise_on_missing_output=False
        )
        finished = [t for t in tasks if t.state == "FINISHED"]
        if finished or time.monotonic() > deadline:
            return finished
        time.sleep(1)


def _files(root: Path, folder: str) -> dict[str, bytes]:
    base = root / folder
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


def _vector_rows(home: Home, table: str, key: str) -> list[dict]:
    from realsyn_assets.resources import VectorStoreResource

    vectors = VectorStoreResource(home=HomeResource(path=str(home.root)))
    rows = vectors.read(table, shards=[key]).to_pylist()
    return sorted(rows, key=lambda row: row[TABLES[table]])


@pytest.fixture(scope="module")
def cluster():
    """One Ray head and one worker node for this module; this process's connection to them is
    closed before they are killed."""
    require_ray()
    with ray_cluster(workers=1, cpus=1) as made:
        try:
            yield made
        finally:
            engine_module.disconnect()


def test_two_shards_run_their_heavy_steps_as_ray_tasks_with_local_outputs(
    cluster, tmp_path, monkeypatch
):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    local, keys = _build_home(tmp_path / "local", monkeypatch)
    assert len(keys) == 2
    remote, remote_keys = _build_home(tmp_path / "ray", monkeypatch, cluster.address)
    assert remote_keys == keys
    for asset in HEAVY:
        for key in keys:
            name = task_name(asset, key)
            assert _finished_tasks(cluster.dashboard, name), f"no FINISHED task {name}"
    for key in keys:
        for asset in (Asset.EXTRACTED_IMAGES, Asset.EXTRACTED_SENTENCES):
            for suffix in (".parquet", ".rejected.parquet"):
                a = local.partition_file(asset, key, suffix).read_bytes()
                b = remote.partition_file(asset, key, suffix).read_bytes()
                assert a == b, f"{asset} {key}{suffix} differs from the local run"
        for table in TABLES:
            rows = _vector_rows(local, table, key)
            assert rows, f"no {table} rows for {key}"
            assert _vector_rows(remote, table, key) == rows, f"{table} {key} vectors differ"
    assert _files(local.root, "images") == _files(remote.root, "images")


def test_a_task_failing_on_the_cluster_raises_its_own_error_naming_the_task(
    cluster, tmp_path, monkeypatch
):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    bad = tmp_path / "bad"  # the task reads a broken engine.yaml: a ValueError on the worker
    bad.mkdir()
    (bad / ENGINE_FILE).write_text("ray: [not, a, mapping]\n")
    home = HomeResource(path=str(tmp_path / "home"))
    engine = EngineResource(home=home, ray_address=cluster.address)
    with pytest.raises(ValueError, match=ENGINE_FILE) as raised:
        engine.run(read_engine_file, str(bad), name=task_name("probe", "bad"))
    assert any("realsyn:probe:bad" in note for note in raised.value.__notes__)
    # not only module-level functions: a builtin is called inside one
    assert engine.run(divmod, 7, 2, name=task_name("probe", "builtin")) == (3, 1)


SYNTHESIS_ROWS = [
    ("img_a", "a red circle on the grass next to a tree"),
    ("img_b", "a blue square floating in the bright sky"),
    ("img_c", "a green star drawn on the sea at night"),
    ("img_d", "a yellow circle in the sky above a house"),
]


def _synthesis_home(root: Path, address: str = "") -> tuple[Home, str, dict]:
    """One shard's synthesis inputs written directly (retrieved texts, clustered sentences,
    image vectors in the encoder's dimension), the real resources around them: a local
    checkpoint encoder, the offline fusion, no trained captioner."""
    import numpy as np
    import pyarrow as pa

    from realsyn_assets.core.embedding.encoder import ensure_local_weights
    from realsyn_assets.core.io import write_table
    from realsyn_assets.core.retrieval.clustering import MEMBERS
    from realsyn_assets.resources import VectorStoreResource
    from realsyn_assets.resources.vectors import vectors_column

    root.mkdir(parents=True)
    home = Home(root)
    (root / "corpus.jsonl").write_text("{}\n")
    (key,) = [entry.key for entry in home.register_shards([root / "corpus.jsonl"])]
    ids, texts = [r[0] for r in SYNTHESIS_ROWS], [r[1] for r in SYNTHESIS_ROWS]
    retrieved = {"image_id": ids, "path": [f"images/{i}.jpg" for i in ids]}
    for j in (1, 2, 3):
        retrieved[f"text{j}"] = texts if j == 1 else [f"{t}, seen again" for t in texts]
        retrieved[f"text{j}_id"] = [f"snt_{i}_{j}" for i in ids]
    write_table(pa.table(retrieved), home.partition_file(Asset.RETRIEVED_TEXTS, key))
    members = pa.table({"text": texts + [f"{t}, seen again" for t in texts]})
    write_table(members, home.asset_dir(Asset.SENTENCE_CLUSTERS) / MEMBERS)
    weights = ensure_local_weights("realsyn-tiny", root / "encoder.pt")
    resources = home_resources(root, checkpoint=str(weights), device="cpu")
    vecs = np.random.default_rng(0).normal(size=(len(ids), resources["encoder"].get().dim))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    images = pa.table({"image_id": ids, "shard": [key] * len(ids)})
    store = VectorStoreResource(home=HomeResource(path=str(root)))
    store.replace_shard("images", key, images.append_column("vector", vectors_column(vecs)))
    if address:
        write_engine_file(root, address)
    return home, key, resources


def test_synthetic_texts_run_as_a_ray_task_with_local_output(cluster, tmp_path, monkeypatch):
    from realsyn_assets.assets import synthesize
    from realsyn_assets.partitions import shard_partitions

    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    outputs = []
    for name, address in (("local", ""), ("ray", cluster.address)):
        home, key, resources = _synthesis_home(tmp_path / name, address)
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(shard_partitions.name, [key])
        result = dg.materialize(
            [synthesize.synthetic_texts],
            partition_key=key,
            resources=resources,
            instance=instance,
        )
        assert result.success
        path = home.partition_file(Asset.SYNTHETIC_TEXTS, key)
        assert all(read_table(path, columns=["syn_text"]).column("syn_text").to_pylist())
        outputs.append(path.read_bytes())
    assert _finished_tasks(cluster.dashboard, task_name(Asset.SYNTHETIC_TEXTS, key))
    assert outputs[0] == outputs[1], "synthetic_texts through Ray differ from the local run"
