"""The stages of `realsyn run`, derived from the asset graph.

Per-shard work and corpus-wide steps alternate (a corpus-wide asset needs every shard of its
upstream), so the pipeline runs as a sequence of jobs. The sequence follows from the assets'
dependencies and partitions:

* whenever partitioned assets are ready (every upstream done), they form one stage together with
  the partitioned assets that follow them within the same partition (same partitions, identity
  mapping); `realsyn run` executes that stage once per shard (or scale);
* otherwise the next ready corpus-wide asset is a stage of its own, run once. When several are
  ready, the one listed first in `names.Asset` (the pipeline order) goes first.

So a corpus-wide asset runs as late as its first user needs it, and consecutive per-shard steps
share one run per shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import dagster as dg

from realsyn_assets.names import Asset, Job
from realsyn_assets.partitions import SHARDS, scale_partitions

SHARD = "shard"
SCALE = "scale"

# Job names of the partitioned stages, keyed by an asset of the stage (the README, the sensor and
# the tests use these names); a corpus-wide stage is called `<asset>_job`.
STAGE_JOB_NAMES: dict[str, str] = {
    Asset.RAW_DOCUMENTS: Job.SHARD_EXTRACT,
    Asset.IMAGE_EMBEDDINGS: Job.SHARD_EMBED,
    Asset.SENTENCE_DEDUP: Job.SHARD_SENTENCE_DEDUP,
    Asset.RETRIEVED_TEXTS: Job.SHARD_RETRIEVE,
    Asset.BALANCED_SUBSET: Job.SCALE,
}

# Corpus-wide assets a newly ingested shard uses as they are: it is embedded with the current
# bootstrap encoder, which is not retrained for it.
REUSED_BY_NEW_SHARDS = frozenset({Asset.BOOTSTRAP_ENCODER})


class Stage(NamedTuple):
    """One job of `realsyn run`: its name, its assets (pipeline order), and what it runs per:
    "shard" (once per registered shard), "scale" (once per dataset scale) or None (once)."""

    job: str
    assets: list[str]
    partitions: str | None


@dataclass(frozen=True)
class Node:
    """An asset as the derivation sees it."""

    partitions: str | None
    parents: frozenset[str]
    same_partition_parents: frozenset[str]  # parents mapped partition to partition (identity)


def _partitioning(partitions_def: dg.PartitionsDefinition | None) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition) and partitions_def.name == SHARDS:
        return SHARD
    if partitions_def == scale_partitions:
        return SCALE
    raise ValueError(f"unknown partitions {partitions_def!r}: neither shards nor scales")


def asset_nodes(assets: Iterable[dg.AssetsDefinition]) -> dict[str, Node]:
    """Every asset key -> its partitioning and upstream keys, from the asset definitions."""
    specs = [spec for assets_def in assets for spec in assets_def.specs]
    partitioning = {spec.key.to_user_string(): _partitioning(spec.partitions_def) for spec in specs}
    nodes = {}
    for spec in specs:
        key = spec.key.to_user_string()
        parents, same = set(), set()
        for dep in spec.deps:
            parent = dep.asset_key.to_user_string()
            parents.add(parent)
            identity = dep.partition_mapping is None or isinstance(
                dep.partition_mapping, dg.IdentityPartitionMapping
            )
            if (
                identity
                and partitioning[key] is not None
                and partitioning.get(parent) == partitioning[key]
            ):
                same.add(parent)
        nodes[key] = Node(partitioning[key], frozenset(parents), frozenset(same))
    return nodes


def _pipeline_order(nodes: dict[str, Node]) -> list[str]:
    rank = {asset.value: i for i, asset in enumerate(Asset)}
    return sorted(nodes, key=lambda key: (rank.get(key, len(rank)), key))


def _partitioned_stage(nodes: dict[str, Node], done: set[str], order: list[str]) -> list[str]:
    """The ready partitioned assets of one partitioning plus those following them per partition."""
    ready = [k for k in order if k not in done and nodes[k].partitions and nodes[k].parents <= done]
    if not ready:
        return []
    partitions = nodes[ready[0]].partitions
    stage = [k for k in ready if nodes[k].partitions == partitions]
    grown = True
    while grown:
        grown = False
        for key in order:
            node = nodes[key]
            if key in done or key in stage or node.partitions != partitions:
                continue
            in_stage = node.parents - done
            if in_stage and in_stage <= set(stage) and in_stage <= node.same_partition_parents:
                stage.append(key)
                grown = True
    return [k for k in order if k in stage]


def _job_name(assets: Sequence[str], partitions: str | None) -> str:
    named = [STAGE_JOB_NAMES[a] for a in assets if a in STAGE_JOB_NAMES]
    if named:
        return str(named[0])
    return f"{assets[0]}_job" if partitions is None else f"{partitions}_{assets[0]}_job"


def derive_stages(nodes: dict[str, Node]) -> list[Stage]:
    """The stages in execution order; every asset in exactly one."""
    order = _pipeline_order(nodes)
    missing = {p for node in nodes.values() for p in node.parents} - set(nodes)
    if missing:
        raise ValueError(f"assets depend on undefined assets: {sorted(missing)}")
    done: set[str] = set()
    stages: list[Stage] = []
    while len(done) < len(nodes):
        assets = _partitioned_stage(nodes, done, order)
        if not assets:
            ready = [k for k in order if k not in done and nodes[k].parents <= done]
            if not ready:
                raise ValueError(f"dependency cycle among {sorted(set(nodes) - done)}")
            assets = ready[:1]
        partitions = nodes[assets[0]].partitions
        stages.append(Stage(_job_name(assets, partitions), assets, partitions))
        done.update(assets)
    names = [stage.job for stage in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"two stages share a job name: {names}")
    return stages


def new_shard_assets(nodes: dict[str, Node], stages: Sequence[Stage]) -> list[str]:
    """The per-shard assets a newly ingested shard can be taken through on its own: those whose
    corpus-wide upstream is only what a new shard reuses as it is (`REUSED_BY_NEW_SHARDS`)."""

    def corpus_ancestors(key: str, seen: set[str]) -> set[str]:
        found = set()
        for parent in nodes[key].parents - seen:
            seen.add(parent)
            if nodes[parent].partitions is None:
                found.add(parent)
            found |= corpus_ancestors(parent, seen)
        return found

    return [
        key
        for stage in stages
        if stage.partitions == SHARD
        for key in stage.assets
        if corpus_ancestors(key, set()) <= REUSED_BY_NEW_SHARDS
    ]
