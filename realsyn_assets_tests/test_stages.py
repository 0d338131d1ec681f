"""The stages of `realsyn run` follow from the asset graph: every asset in exactly one stage, in a
valid topological order, with the public job names and the demo's execution order."""

from __future__ import annotations

import pytest

from realsyn_assets.names import Asset, Job
from realsyn_assets.stages import SCALE, SHARD, Node, derive_stages, new_shard_assets


def _graph_nodes() -> dict[str, Node]:
    from realsyn_assets.assets import ALL_ASSETS
    from realsyn_assets.stages import asset_nodes

    return asset_nodes(ALL_ASSETS)


def test_every_asset_is_in_exactly_one_stage_in_topological_order():
    from realsyn_assets.definitions import STAGES, defs

    graph = defs.resolve_asset_graph()
    keys = [a for stage in STAGES for a in stage.assets]
    assert sorted(keys) == sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert len(keys) == len(set(keys))
    stage_of = {a: i for i, stage in enumerate(STAGES) for a in stage.assets}
    position = {a: i for i, a in enumerate(keys)}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        child = key.to_user_string()
        for parent_key in node.parent_keys:
            parent = parent_key.to_user_string()
            assert position[parent] < position[child], (parent, child)
            if stage_of[parent] == stage_of[child]:  # same stage: same partition, same run
                assert node.partitions_def is not None
                assert graph.get(parent_key).partitions_def == node.partitions_def
    for stage in STAGES:  # a corpus-wide asset runs on its own
        assert stage.partitions in (SHARD, SCALE) or len(stage.assets) == 1, stage


def test_stage_order_and_public_job_names():
    from realsyn_assets.definitions import SHARD_INGEST_ASSETS, STAGES, defs

    expected = [
        (
            Job.SHARD_EXTRACT,
            [
                Asset.RAW_DOCUMENTS,
                Asset.IMAGE_DOWNLOADS,
                Asset.EXTRACTED_IMAGES,
                Asset.EXTRACTED_SENTENCES,
            ],
        ),
        (Job.BOOTSTRAP_ENCODER, [Asset.BOOTSTRAP_ENCODER]),
        (Job.SHARD_EMBED, [Asset.IMAGE_EMBEDDINGS, Asset.SENTENCE_EMBEDDINGS, Asset.IMAGE_DEDUP]),
        (Job.IMAGE_CAPTIONER, [Asset.IMAGE_CAPTIONER]),
        (Job.WORD_STATISTICS, [Asset.WORD_STATISTICS]),
        (Job.SHARD_SENTENCE_DEDUP, [Asset.SEMANTIC_FILTER, Asset.SENTENCE_DEDUP]),
        (Job.SENTENCE_CLUSTERS, [Asset.SENTENCE_CLUSTERS]),
        (Job.SHARD_RETRIEVE, [Asset.RETRIEVED_TEXTS, Asset.SYNTHETIC_TEXTS]),
        (Job.IMAGE_CLUSTERS, [Asset.IMAGE_CLUSTERS]),
        (
            Job.SCALE,
            [
                Asset.BALANCED_SUBSET,
                Asset.SUBSET_EXPORT,
                Asset.CLIP_CHECKPOINT,
                Asset.CLIP_ABLATIONS,
                Asset.CLIP_EVALUATION,
            ],
        ),
        (Job.QUALITY_REPORT, [Asset.QUALITY_REPORT]),
    ]
    defined = {a for stage in STAGES for a in stage.assets}
    # semantic_filter exists once its stage module defines it; until then the rest is unchanged
    expected = [(job, [a for a in assets if a in defined]) for job, assets in expected]
    assert [(stage.job, stage.assets) for stage in STAGES] == expected
    assert SHARD_INGEST_ASSETS == expected[0][1] + expected[2][1]
    for job in Job:
        assert defs.resolve_job_def(job) is not None, job


def _toy(**nodes: tuple[str | None, list[str]]) -> dict[str, Node]:
    return {
        key: Node(
            partitions,
            frozenset(parents),
            frozenset(p for p in parents if nodes[p][0] == partitions and partitions),
        )
        for key, (partitions, parents) in nodes.items()
    }


def test_semantic_filter_joins_the_sentence_dedup_stage():
    """The graph with semantic_filter (shard; deps extracted_sentences + word_statistics) before
    sentence_dedup: it runs right before sentence_dedup in the same shard job."""
    nodes = dict(_graph_nodes())
    if Asset.SEMANTIC_FILTER not in nodes:
        nodes[Asset.SEMANTIC_FILTER] = Node(
            SHARD,
            frozenset({Asset.EXTRACTED_SENTENCES, Asset.WORD_STATISTICS}),
            frozenset({Asset.EXTRACTED_SENTENCES}),
        )
        dedup = nodes[Asset.SENTENCE_DEDUP]
        nodes[Asset.SENTENCE_DEDUP] = Node(
            SHARD,
            dedup.parents | {Asset.SEMANTIC_FILTER},
            dedup.same_partition_parents | {Asset.SEMANTIC_FILTER},
        )
    stages = derive_stages(nodes)
    stage = next(s for s in stages if Asset.SENTENCE_DEDUP in s.assets)
    assert stage.job == Job.SHARD_SENTENCE_DEDUP
    assert stage.assets == [Asset.SEMANTIC_FILTER, Asset.SENTENCE_DEDUP]
    assert Asset.SEMANTIC_FILTER not in new_shard_assets(nodes, stages)


def test_corpus_wide_steps_split_shard_work_and_new_stages_get_names():
    nodes = _toy(
        a=(SHARD, []),
        b=(SHARD, ["a"]),
        total=(None, ["b"]),
        c=(SHARD, ["b", "total"]),
        d=(SHARD, ["c"]),
        report=(None, ["d"]),
    )
    stages = derive_stages(nodes)
    assert [(s.job, s.assets, s.partitions) for s in stages] == [
        ("shard_a_job", ["a", "b"], SHARD),
        ("total_job", ["total"], None),
        ("shard_c_job", ["c", "d"], SHARD),
        ("report_job", ["report"], None),
    ]


def test_cycles_and_missing_upstreams_are_errors():
    with pytest.raises(ValueError, match="cycle"):
        derive_stages(_toy(x=(None, ["y"]), y=(None, ["x"])))
    with pytest.raises(ValueError, match="undefined"):
        derive_stages({"x": Node(None, frozenset({"ghost"}), frozenset())})
