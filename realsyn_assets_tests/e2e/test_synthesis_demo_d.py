"""The demo's synthetic texts against its ground truth (issue 15 acceptance): syn_text names the
image's colour and shape at least as often as text1, it is right for >= 0.3 of the images whose
text1 is wrong, and re-materializing a shard generates nothing."""

from __future__ import annotations

import dagster as dg
import duckdb

from realsyn_assets.assets import synthesize
from realsyn_assets.definitions import make_resources
from realsyn_assets.names import Asset
from realsyn_assets.names import SyntheticTextsMetrics as M


def _totals(home) -> dict[str, float]:
    with duckdb.connect(str(home / "metrics.duckdb"), read_only=True) as db:
        rows = db.execute(
            "SELECT metric, sum(value) FROM stage_counts WHERE stage=? GROUP BY metric",
            [Asset.SYNTHETIC_TEXTS],
        ).fetchall()
    return {m: float(v) for m, v in rows}


def test_demo_syn_text_beats_text1_and_corrects_retrieval(demo_home):
    t = _totals(demo_home)
    assert t[M.GT_IMAGES_SCORED] > 0
    assert t[M.GT_SYN_RIGHT] >= t[M.GT_TEXT1_RIGHT], t
    assert t[M.GT_SYN_RIGHT_TEXT1_WRONG] >= 0.3 * t[M.GT_TEXT1_WRONG], t


def test_demo_rerun_of_a_shard_generates_nothing(dagster_instance, demo_home):
    shard = sorted(dagster_instance.get_dynamic_partitions("shard"))[0]
    result = dg.materialize(
        [synthesize.synthetic_texts],
        partition_key=shard,
        resources=make_resources(str(demo_home)),
        instance=dagster_instance,
    )
    meta = result.asset_materializations_for_node(Asset.SYNTHETIC_TEXTS)[0].metadata
    assert meta[M.GENERATED_NOW].value == 0 and meta[M.CAPTIONS_GENERATED_NOW].value == 0
