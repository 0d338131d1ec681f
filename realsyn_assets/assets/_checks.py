"""What the asset checks of every group share: a result helper and the funnel check.

Each group's checks live beside its assets in `assets/<group>.py`. Severity is chosen per
failure: ERROR for data downstream assets would consume wrongly (and such checks are
`blocking`, so a failure stops the downstream assets of the same run), WARN for quality signals
and for valid-but-empty shards. Metadata carries the measured value and its threshold.
"""

import warnings

import dagster as dg

from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import MetricsResource

# Partitioned asset checks are a Dagster preview feature; we rely on them knowingly.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")

MAX_SINGLE_REASON_SHARE = 0.9  # one rejection reason taking > 90% of all input is suspicious

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


Result = dg.AssetCheckResult


def check_result(
    passed: bool,
    description: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    **metadata,
) -> Result:
    return Result(
        passed=bool(passed), description=description, severity=severity, metadata=metadata
    )


def zero_rows_result(what: str, **metadata) -> Result:
    """A shard with nothing here (an empty file, every document or item rejected, no image or
    sentence at all) is a valid state, not an error: a WARN that says "0 rows" and why."""
    return Result(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"0 rows: {what}",
        metadata=metadata,
    )


def funnel_check(
    metrics: MetricsResource,
    stage: str,
    key: str,
    n_in: str,
    n_out: str,
    n_rej: str | None = None,
    dominance: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
) -> Result:
    """in = kept + rejected and the reasons add up, else an ERROR (downstream assets would read a
    table whose counts are wrong); nothing kept is a "0 rows" WARN; a single reason removing
    more than MAX_SINGLE_REASON_SHARE of the input fails with `dominance` severity (by default a
    WARN: suspicious, but what was kept is still consistent). Metadata: `value` = the top
    reason's share, `threshold` = that maximum."""
    counts = metrics.counts(stage, key)
    if not counts:
        return check_result(
            False,
            f"no metrics recorded for {stage}/{key}",
            value=0.0,
            threshold=MAX_SINGLE_REASON_SHARE,
        )
    total, kept = counts.get(n_in, 0), counts.get(n_out, 0)
    reasons = metrics.rejection_counts(stage, key)
    top_reason, top = max(reasons.items(), key=lambda kv: kv[1], default=("", 0))
    share = float(top / total) if total else 0.0
    metadata = {
        "kept": int(kept),
        "total": int(total),
        "kept_fraction": float(kept / total) if total else 0.0,
        "top_reason": top_reason,
        "value": share,
        "threshold": MAX_SINGLE_REASON_SHARE,
    }
    problems = []
    if n_rej is not None and total != kept + counts.get(n_rej, 0):
        problems.append(f"{n_in} != {n_out} + {n_rej}")
    if n_rej is not None and sum(reasons.values()) != counts.get(n_rej, 0):
        problems.append("rejections by reason do not add up")
    if problems:
        return check_result(False, "; ".join(problems), **metadata)
    if kept == 0:
        why = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
        detail = (
            f"all {int(total)} rejected ({why or 'no reason recorded'})" if total else "no input"
        )
        return zero_rows_result(f"{stage} kept nothing in {key}: {detail}", **metadata)
    if share > MAX_SINGLE_REASON_SHARE:
        return check_result(
            False,
            f"reason {top_reason!r} removed {share:.0%} of the input "
            f"(more than {MAX_SINGLE_REASON_SHARE:.0%})",
            dominance,
            **metadata,
        )
    return check_result(True, "funnel consistent", **metadata)


def shard_check(asset: str, name: str, description: str, blocking: bool = False):
    """A per-shard check; `blocking` ones stop the shard's downstream assets in the same run
    when they fail with ERROR severity."""
    return dg.asset_check(
        asset=asset,
        name=name,
        description=description,
        partitions_def=shard_partitions,
        blocking=blocking,
    )
