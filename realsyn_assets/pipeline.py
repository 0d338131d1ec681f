"""Run the asset graph stage by stage through Dagster (shared by `realsyn demo` and `realsyn run`).

Each stage is a job of definitions.STAGES (derived from the asset graph), executed in process
against the persistent instance in DAGSTER_HOME, so every run, materialization and check result
shows up in `dagster dev` afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from realsyn_assets.resources.home import Home

DAGSTER_YAML = """# written by realsyn: a local instance for this REALSYN_HOME
telemetry:
  enabled: false
"""


def prepare_environment(home: str | os.PathLike | None) -> Home:
    """Point REALSYN_HOME (and DAGSTER_HOME, unless the user set one) at this home."""
    layout = Home(home)
    layout.root.mkdir(parents=True, exist_ok=True)
    os.environ["REALSYN_HOME"] = str(layout.root)
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(layout.dagster_home)
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return layout


def get_instance():
    import dagster as dg

    return dg.DagsterInstance.get()


def register(layout: Home, paths: list[Path], fmt: str = "auto") -> list[str]:
    """Register shard files in the home and as dynamic partitions of the instance."""
    from realsyn_assets.partitions import SHARDS

    entries = layout.register_shards(paths, fmt)
    instance = get_instance()
    existing = set(instance.get_dynamic_partitions(SHARDS))
    new = [e.key for e in entries if e.key not in existing]
    if new:
        instance.add_dynamic_partitions(SHARDS, new)
    return [e.key for e in entries]


@dataclass
class StageReport:
    job: str
    partition: str | None
    seconds: float
    success: bool
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    check_warnings: list[str] = field(default_factory=list)  # WARN-severity checks that failed
    metadata: dict = field(default_factory=dict)


def run_stage(job_name: str, partition: str | None, run_config: dict | None = None) -> StageReport:
    import dagster as dg

    from realsyn_assets.definitions import defs

    job = defs.resolve_job_def(job_name)
    config = dict(run_config or {})
    # Dagster's console logger prints every event at DEBUG; the CLI prints its own summary.
    level = os.environ.get("REALSYN_LOG_LEVEL", "WARNING")
    config.setdefault("loggers", {"console": {"config": {"log_level": level}}})
    start = time.perf_counter()
    result = job.execute_in_process(
        instance=get_instance(), partition_key=partition, run_config=config, raise_on_error=False
    )
    report = StageReport(job_name, partition, time.perf_counter() - start, result.success)
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            report.checks_passed += 1
        elif evaluation.severity == dg.AssetCheckSeverity.WARN:
            report.check_warnings.append(
                f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} "
                f"({evaluation.description})"
            )
        else:
            report.checks_failed.append(
                f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} "
                f"({evaluation.description})"
            )
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        report.metadata[mat.asset_key.to_user_string()] = {
            k: v.value
            for k, v in mat.metadata.items()
            if isinstance(v.value, int | float) and not isinstance(v.value, bool)
        }
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        message = failure.event_specific_data.error.message if failure else "unknown error"
        raise RuntimeError(f"{job_name} [{partition or '-'}] failed: {message.strip()}")
    return report


def run_pipeline(
    layout: Home,
    scales: list[str],
    run_configs: dict[str, dict] | None = None,
    on_stage: Callable[[StageReport], None] | None = None,
) -> list[StageReport]:
    """Every stage over every registered shard (in registration order), then each scale."""
    from realsyn_assets.definitions import STAGES
    from realsyn_assets.stages import SCALE, SHARD

    shards = layout.shard_order()
    if not shards:
        raise RuntimeError(f"no shards registered in {layout.root}: run `realsyn ingest PATH...`")
    reports = []
    for stage in STAGES:
        keys: list[str | None] = {SHARD: list(shards), SCALE: list(scales)}.get(
            stage.partitions, [None]
        )
        for key in keys:
            report = run_stage(stage.job, key, (run_configs or {}).get(stage.job))
            reports.append(report)
            if on_stage:
                on_stage(report)
    return reports
