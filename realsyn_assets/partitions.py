"""Partitions: one dynamic partition per input shard file, three static dataset scales.

Never partition by document or image: Dagster slows down beyond ~100k partitions, and a shard of
a few thousand documents is the right unit of incremental work.
"""

from __future__ import annotations

import dagster as dg

from realsyn_assets.core.balance.sampling import SCALE_CAPS

SHARDS = "shard"
shard_partitions = dg.DynamicPartitionsDefinition(name=SHARDS)

SCALES = list(SCALE_CAPS)  # 15M, 30M, 100M
scale_partitions = dg.StaticPartitionsDefinition(SCALES)

# A corpus-wide asset depends on every shard partition of its upstream.
ALL_SHARDS = dg.AllPartitionMapping()
