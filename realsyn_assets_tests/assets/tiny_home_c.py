"""A tiny home (one shard of a few demo documents) with its own Dagster instance, for tests that
run a few per-shard stages through Dagster without building a whole demo home; and the
resources of one home, as `definitions.make_resources` builds them."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dagster as dg


@contextlib.contextmanager
def tiny_home(tmp_path: Path, monkeypatch):
    """(layout, shard key, instance): a registered one-shard demo corpus of 8 documents,
    REALSYN_HOME and DAGSTER_HOME pointing at it (restored by `monkeypatch` afterwards)."""
    from realsyn_assets import pipeline
    from realsyn_assets.demo.corpus import generate_demo_corpus

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("REALSYN_HOME", raising=False)
    layout = pipeline.prepare_environment(tmp_path / "home")
    monkeypatch.setenv("REALSYN_HOME", str(layout.root))
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    corpus = generate_demo_corpus(layout.root / "corpus", n_docs=8, n_shards=1, seed=5)
    (key,) = pipeline.register(layout, corpus.shard_paths)
    instance = pipeline.get_instance()
    try:
        yield layout, key, instance
    finally:
        instance.dispose()


def home_resources(root, **encoder) -> dict:
    """Every resource the assets and checks use, for the home at `root`; `encoder` configures
    the encoder resource (e.g. checkpoint=...)."""
    from realsyn_assets import resources as r

    home = r.HomeResource(path=str(root))
    return {
        "home": home,
        "storage": r.StorageResource(home=home),
        "metrics": r.MetricsResource(home=home),
        "vectors": r.VectorStoreResource(home=home),
        "encoder": r.EncoderResource(home=home, **encoder),
        "engine": r.EngineResource(home=home),
        "generator": r.GeneratorResource(),
        "captioner": r.CaptionerResource(),
    }


def materialization_count(instance, asset: str, partition: str | None = None) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset),
            asset_partitions=[partition] if partition is not None else None,
        ),
        limit=100,
    ).records
    return len(records)


def latest_check_evaluation(instance, asset: str, check: str, partition: str | None = None):
    """The last stored evaluation of a check (for a partition): what the UI's Checks tab shows."""
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(asset), check), limit=10
    )
    for execution in history:
        if execution.evaluation is not None and execution.partition == partition:
            return execution.evaluation
    return None
