"""Semantic (embedding cosine) image dedup through Dagster: across shards, and off by default
for weak encoders."""

from __future__ import annotations

import pyarrow.parquet as pq

from realsyn_assets.core.dedup.incremental import SEMANTIC_DUPLICATE
from realsyn_assets.names import Asset, Job


def _dedup(layout, key: str) -> list[dict]:
    return pq.read_table(layout.partition_file(Asset.IMAGE_DEDUP, key)).to_pylist()


def test_semantic_duplicates_found_across_shards_only_when_enabled(fresh_home):
    from realsyn_assets.pipeline import register, run_stage

    layout, make_corpus = fresh_home
    first, second = register(layout, make_corpus(16, 2, 3).shard_paths)
    no_perceptual = {"phash_max_distance": 0}
    for key in (first, second):
        assert run_stage(Job.SHARD_EXTRACT, key).success
        config = {"ops": {Asset.IMAGE_DEDUP: {"config": no_perceptual}}}
        assert run_stage(Job.SHARD_EMBED, key, config).success
    # default: random weights, so cosine does not mean "same picture" -> no semantic stage
    assert not any(r["reason"] == SEMANTIC_DUPLICATE for r in _dedup(layout, second))

    # forced, with a threshold every pair of random-weight embeddings passes (cosine ~0.96)
    forced = {**no_perceptual, "semantic_with_weak_encoder": True, "semantic_threshold": 0.5}
    for key in (first, second):
        config = {"ops": {Asset.IMAGE_DEDUP: {"config": forced}}}
        assert run_stage(Job.SHARD_EMBED, key, config).success
    rows_1, rows_2 = _dedup(layout, first), _dedup(layout, second)
    first_ids = {r["image_id"] for r in rows_1}
    semantic_2 = [r for r in rows_2 if r["reason"] == SEMANTIC_DUPLICATE]
    assert semantic_2 and all(not r["kept"] for r in semantic_2)
    # the later shard's images point at the earlier shard's survivor; nothing new survives
    assert {r["duplicate_of"] for r in semantic_2} <= first_ids
    assert not any(r["kept"] for r in rows_2)
    assert sum(r["kept"] for r in rows_1) == 1
