"""What the asset checks of every group share: a result helper and the funnel check.

Each group's checks live beside its assets in `assets/<group>.py`.
"""

import warnings

import dagster as dg

from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import MetricsResource

# Partitioned asset checks are a Dagster preview feature; we rely on them knowingly.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")

MAX_SINGLE_REASON_SHARE = 0.9  # one rejection reason taking > 90% of all input is suspicious


Result = dg.AssetCheckResult


def check_result(passed: bool, description: str, **metadata) -> Result:
    return Result(passed=bool(passed), description=description, metadata=metadata)


def funnel_check(
    metrics: MetricsResource, stage: str, key: str, n_in: str, n_out: str, n_rej: str | None = None
) -> Result:
    counts = metrics.counts(stage, key)
    if not counts:
        return check_result(False, f"no metrics recorded for {stage}/{key}")
    total, kept = counts.get(n_in, 0), counts.get(n_out, 0)
    reasons = metrics.rejection_counts(stage, key)
    top_reason, top = max(reasons.items(), key=lambda kv: kv[1], default=("", 0))
    problems = []
    if total > 0 and kept == 0:
        problems.append("the stage removed everything")
    if n_rej is not None and total != kept + counts.get(n_rej, 0):
        problems.append(f"{n_in} != {n_out} + {n_rej}")
    if n_rej is not None and sum(reasons.values()) != counts.get(n_rej, 0):
        problems.append("rejections by reason do not add up")
    if total > 0 and top / total > MAX_SINGLE_REASON_SHARE:
        problems.append(f"reason {top_reason!r} removed {top / total:.0%} of the input")
    return check_result(
        not problems,
        "; ".join(problems) or "funnel consistent",
        kept=int(kept),
        total=int(total),
        kept_fraction=float(kept / total) if total else 0.0,
        top_reason=top_reason,
    )


def shard_check(asset: str, name: str, description: str):
    return dg.asset_check(
        asset=asset, name=name, description=description, partitions_def=shard_partitions
    )
