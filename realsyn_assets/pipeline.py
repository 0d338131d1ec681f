"""Run the asset graph stage by stage through Dagster (shared by `realsyn demo` and `realsyn run`).

Each stage is a job of definitions.STAGES (derived from the asset graph), executed in process
against the persistent instance in DAGSTER_HOME, so every run, materialization and check result
shows up in `dagster dev` afterwards.

A failed partition fails alone: the pipeline records it, skips that shard (or scale) in every
later stage and goes on with the others; corpus-wide steps use the shards that succeeded. Any
number of processes may use one home at once: the instance storage is created once under an
inter-process lock, and shards are registered under locks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from realsyn_assets.core.io import atomic_write_bytes
from realsyn_assets.resources.home import Home, file_lock

DAGSTER_YAML = """# written by realsyn: a local instance for this REALSYN_HOME
telemetry:
  enabled: false
"""


def _instance_lock(dagster_home: Path):
    return file_lock(dagster_home / ".realsyn-instance.lock")


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
        with _instance_lock(dagster_home):
            if not config.exists():
                atomic_write_bytes(config, DAGSTER_YAML.encode())
    return layout


def get_instance():
    """The Dagster instance of DAGSTER_HOME. Opening it creates its SQLite storage when missing;
    two processes doing that at once break it (`table secondary_indexes already exists`, two
    alembic heads), so it is opened under an inter-process lock."""
    import dagster as dg

    dagster_home = os.environ.get("DAGSTER_HOME")
    if not dagster_home:  # Dagster raises its own clear error
        return dg.DagsterInstance.get()
    with _instance_lock(Path(dagster_home)):
        return dg.DagsterInstance.get()


def _add_partitions(instance, keys: list[str]) -> None:
    from realsyn_assets.partitions import SHARDS

    with _instance_lock(Path(instance.root_directory)):
        existing = set(instance.get_dynamic_partitions(SHARDS))
        new = [key for key in dict.fromkeys(keys) if key not in existing]
        if new:
            instance.add_dynamic_partitions(SHARDS, new)


def register(
    layout: Home, paths: list[Path], fmt: str = "auto", refused: list | None = None
) -> list[str]:
    """Register shard files in the home and as dynamic partitions of the instance.

    An unreadable file raises `ShardFileError` (nothing registered), or with a `refused` list is
    appended there and skipped. A file registered before keeps its key and is added to the
    instance again if a registration was cut short between the two."""
    entries = layout.register_shards(paths, fmt, refused)
    _add_partitions(get_instance(), [e.key for e in entries])
    return [e.key for e in entries]


def sync_partitions(layout: Home, instance=None) -> None:
    """Every shard in the home's registry is a partition of the instance."""
    _add_partitions(instance or get_instance(), layout.shard_order())


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
    error: str | None = None  # why the run failed: "<asset>: <cause>", one line

    @property
    def label(self) -> str:
        return f"{self.job} [{self.partition or '-'}]"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _failure_message(result) -> str:
    """'<asset>: <cause>' of the first failed step (or the run's own failure)."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error and error.cls_name == "DagsterExecutionStepExecutionError" and error.cause:
                error = error.cause  # the asset's own exception, not Dagster's wrapper around it
            cause = error.message if error else "unknown error"
            if error and error.cls_name in ("Failure", "StorageError"):  # their text says it all
                cause = cause.split(": ", 1)[-1]
            return _one_line(f"{event.step_key}: {cause}")
    for event in result.all_events:
        if event.is_run_failure and event.message:
            return _one_line(event.message)
    return "unknown error"


def _record_checks(report: StageReport, result) -> None:
    import dagster as dg

    for evaluation in result.get_asset_check_evaluations():
        name = (
            f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} "
            f"({evaluation.description})"
        )
        if evaluation.passed:
            report.checks_passed += 1
        elif evaluation.severity == dg.AssetCheckSeverity.WARN:
            report.check_warnings.append(name)
        else:
            report.checks_failed.append(name)
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        report.metadata[mat.asset_key.to_user_string()] = {
            k: v.value
            for k, v in mat.metadata.items()
            if isinstance(v.value, int | float) and not isinstance(v.value, bool)
        }


def run_stage(
    job_name: str,
    partition: str | None,
    run_config: dict | None = None,
    raise_on_failure: bool = True,
) -> StageReport:
    """Execute one stage's job (for one partition) in process; a failed run raises
    RuntimeError('<job> [<partition>] failed: <asset>: <cause>'), or with raise_on_failure=False
    comes back as a report with success=False and that cause in `error`."""
    from realsyn_assets.definitions import defs

    job = defs.resolve_job_def(job_name)
    config = dict(run_config or {})
    # Dagster's console logger prints every event at DEBUG; the CLI prints its own summary.
    level = os.environ.get("REALSYN_LOG_LEVEL", "WARNING")
    config.setdefault("loggers", {"console": {"config": {"log_level": level}}})
    start = time.perf_counter()
    try:
        result = job.execute_in_process(
            instance=get_instance(),
            partition_key=partition,
            run_config=config,
            raise_on_error=False,
        )
    except Exception as exc:  # failed before the run started (e.g. an unknown partition)
        if raise_on_failure:
            raise
        report = StageReport(job_name, partition, time.perf_counter() - start, False)
        report.error = _one_line(f"{type(exc).__name__}: {exc}")
        return report
    report = StageReport(job_name, partition, time.perf_counter() - start, result.success)
    _record_checks(report, result)
    if not result.success:
        report.error = _failure_message(result)
        if raise_on_failure:
            raise RuntimeError(f"{report.label} failed: {report.error}")
    return report


def run_pipeline(
    layout: Home,
    scales: list[str],
    run_configs: dict[str, dict] | None = None,
    on_stage: Callable[[StageReport], None] | None = None,
) -> list[StageReport]:
    """Every stage over every registered shard (in registration order), then each scale.

    A failed shard (or scale) fails alone: it is skipped in every later stage, the others go on,
    and corpus-wide steps use the shards that succeeded. A failed corpus-wide step stops the
    pipeline (everything after it needs it). Failed runs come back as reports with
    success=False; nothing is raised for them."""
    from realsyn_assets.definitions import STAGES
    from realsyn_assets.stages import SCALE, SHARD

    shards = layout.shard_order()
    if not shards:
        raise RuntimeError(f"no shards registered in {layout.root}: run `realsyn ingest PATH...`")
    sync_partitions(layout)
    failed: set[tuple[str | None, str | None]] = set()
    reports = []
    for stage in STAGES:
        keys: list[str | None] = {SHARD: list(shards), SCALE: list(scales)}.get(
            stage.partitions, [None]
        )
        for key in keys:
            if (stage.partitions, key) in failed:
                continue
            config = (run_configs or {}).get(stage.job)
            report = run_stage(stage.job, key, config, raise_on_failure=False)
            reports.append(report)
            if on_stage:
                on_stage(report)
            if not report.success:
                if key is None:
                    return reports
                failed.add((stage.partitions, key))
    return reports
