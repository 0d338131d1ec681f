"""synthetic_texts through Dagster on a one-shard home: the output columns, a second
materialization makes zero caption and generation calls, and both checks fail when their
condition is broken."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pyarrow as pa

from realsyn_assets.assets import synthesize
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.core.retrieval.clustering import MEMBERS
from realsyn_assets.definitions import make_resources
from realsyn_assets.names import Asset
from realsyn_assets.names import SyntheticTextsMetadata as MD
from realsyn_assets.names import SyntheticTextsMetrics as M
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    CaptionerResource,
    EncoderResource,
    GeneratorResource,
    HomeResource,
    VectorStoreResource,
)
from realsyn_assets.resources.home import Home
from realsyn_assets.resources.vectors import vectors_column
from realsyn_assets_tests.core.generation.test_synthesis_step_d import (
    CountingCaptioner,
    CountingGenerator,
    WordEncoder,
    image,
)

ROWS = [
    ("img_a", "a red circle on the grass", ("red", "circle", "grass")),
    ("img_b", "a blue square in the sky", ("blue", "square", "sky")),
    ("img_c", "a green star on the sea", ("green", "star", "sea")),
    ("img_d", "a yellow circle in the sky", ("yellow", "circle", "sky")),
]
CALLS = {"caption": [], "generate": []}


class ToyEncoder(EncoderResource):
    def get(self):
        return WordEncoder()


class ToyCaptioner(CaptionerResource):
    def get(self, offline_path=None):
        cap = CountingCaptioner(captions={r[0]: " ".join(["a", *r[2][:2]]) for r in ROWS})
        CALLS["caption"].append(cap)
        return cap


class ToyGenerator(GeneratorResource):
    def get(self, encoder=None):
        gen = CountingGenerator(model=self.model or "gen-1")
        CALLS["generate"].append(gen)
        return gen


def _home(root) -> tuple[Home, str]:
    home = Home(root)
    shard_file = root / "corpus.jsonl"
    shard_file.write_text("{}\n")
    (key,) = [e.key for e in home.register_shards([shard_file])]
    retrieved = {
        "image_id": [r[0] for r in ROWS],
        "path": [f"images/{r[0]}.jpg" for r in ROWS],
    }
    for j in (1, 2, 3):
        retrieved[f"text{j}"] = [r[1] if j == 1 else f"{r[1]} again" for r in ROWS]
        retrieved[f"text{j}_id"] = [f"snt_{r[0]}_{j}" for r in ROWS]
    write_table(pa.table(retrieved), home.partition_file(Asset.RETRIEVED_TEXTS, key))
    members = pa.table({"text": [r[1] for r in ROWS] * 2})
    write_table(members, home.asset_dir(Asset.SENTENCE_CLUSTERS) / MEMBERS)
    store = VectorStoreResource(home=HomeResource(path=str(root)))
    images = pa.table({"image_id": [r[0] for r in ROWS], "shard": [key] * len(ROWS)})
    vecs = np.stack([image(*r[2]) for r in ROWS]).astype(np.float32)
    store.replace_shard("images", key, images.append_column("vector", vectors_column(vecs)))
    return home, key


def _resources(root, model="gen-1") -> dict:
    resources = make_resources(str(root))
    home = resources["home"]
    toys = {"encoder": ToyEncoder(home=home), "generator": ToyGenerator(model=model)}
    return {**resources, **toys, "captioner": ToyCaptioner()}


def _materialize(root, key, model="gen-1"):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shard_partitions.name, [key])
    result = dg.materialize(
        [synthesize.synthetic_texts, synthesize.synthetic_invalid_share],
        partition_key=key,
        resources=_resources(root, model),
        instance=instance,
    )
    assert result.success
    return result.asset_materializations_for_node(Asset.SYNTHETIC_TEXTS)[0].metadata


def test_synthetic_texts_twice_generates_nothing_the_second_time(tmp_path):
    home, key = _home(tmp_path)
    first = _materialize(tmp_path, key)
    assert first[M.GENERATED_NOW].value == len(ROWS)
    assert first[M.CAPTIONS_GENERATED_NOW].value == len(ROWS)
    table = read_table(home.partition_file(Asset.SYNTHETIC_TEXTS, key))
    for column in (
        "caption",
        "caption_backend",
        "tags",
        "tag_scores",
        "syn_text",
        "syn_score",
        "generator",
        "generator_model",
        "prompt_version",
        "caption_flags",
        "syn_flags",
    ):
        assert column in table.column_names, column
    assert table.column("caption").to_pylist()[0] == "a red circle"
    before = home.partition_file(Asset.SYNTHETIC_TEXTS, key).read_bytes()

    second = _materialize(tmp_path, key)
    assert second[M.GENERATED_NOW].value == 0 and second[M.CACHE_HITS].value == len(ROWS)
    assert second[M.CAPTIONS_GENERATED_NOW].value == 0
    assert CALLS["caption"][-1].calls == 0 and CALLS["generate"][-1].calls == 0
    assert home.partition_file(Asset.SYNTHETIC_TEXTS, key).read_bytes() == before

    third = _materialize(tmp_path, key, model="gen-2")  # another model: generate again
    assert third[M.GENERATED_NOW].value == len(ROWS)
    assert third[MD.GENERATOR_MODEL].value == "gen-2"
