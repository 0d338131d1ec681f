"""Run the asset graph stage by stage through Dagster (shared by `realsyn demo` and `realsyn run`).

Each stage is a job of definitions.STAGES (derived from the asset graph), executed in process
against the persistent instance in DAGSTER_HOME, so every run, materialization and check result
shows up in `dagster dev` afterwards.

A failed partition fails alone: the pipeline records it, skips that shard (or scale) in every
later stage and goes on with the others; corpus-wide steps use the shards that succeeded. Any
number of processes may use one home at once: the instance storage is created once under an
inter-process lock, and shards are registered under locks.

Partitions of one stage are independent of each other (a shard's dedup reads the earlier shards'
upstream outputs, which the previous stage finished), so with `workers` > 1 they run at once,
each an in-process execution in one of a few spawned worker processes (lance is not fork-safe);
reports still come back in registration order. GPU-bound steps (Dagster pool `encoder`) claim the
instance's pool slots (realsyn_assets/concurrency.py), whose limit the home's dagster.yaml sets
(docs/parallel.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from realsyn_assets.concurrency import (
    GPU_POOL,
    ensure_pool_limit,
    gpu_slots,
    release_dead_runs,
    run_tags,
    serialize_pool_claims,
)
from realsyn_assets.core.io import atomic_write_bytes
from realsyn_assets.resources.home import Home, file_lock

DAGSTER_YAML = """# written by realsyn: the Dagster instance of this REALSYN_HOME
# (SQLite files here unless `realsyn instance --postgres URL` added a storage section)
telemetry:
  enabled: false
"""

# Top-level sections realsyn adds to a home's dagster.yaml when the key is missing (a user's own
# section is never touched). They hold for every storage (SQLite or PostgreSQL, see
# instance_config.py): nothing storage-specific belongs here, since a Postgres-backed
# dagster.yaml gets them too. `default_limit` caps every pool without a limit of its own: the GPU
# pool (concurrency.py) unless `realsyn run --gpu-slots N` (or `dagster instance concurrency set`,
# or the UI's concurrency page) gave it one.
DAGSTER_YAML_SECTIONS = {
    "concurrency": """concurrency:
  pools:
    # steps of one pool (GPU_POOL "encoder": GPU-bound assets) running at once, all runs together
    default_limit: 1
""",
}


def instance_lock(dagster_home: Path):
    """Inter-process lock (this machine) around creating or editing the instance's files."""
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
    ensure_dagster_yaml(dagster_home / "dagster.yaml")
    return layout


def ensure_dagster_yaml(config: Path) -> None:
    """Write the instance's dagster.yaml, or append the sections of DAGSTER_YAML_SECTIONS whose
    top-level key it lacks; everything already there (a storage section included) stays as it
    is, byte for byte."""
    import yaml

    def missing(text: str) -> list[str]:
        present = yaml.safe_load(text) or {}
        return [block for key, block in DAGSTER_YAML_SECTIONS.items() if key not in present]

    if config.exists() and not missing(config.read_text()):
        return
    with instance_lock(config.parent):
        text = config.read_text() if config.exists() else DAGSTER_YAML
        blocks = missing(text)
        if blocks or not config.exists():
            text = text if text.endswith("\n") else text + "\n"
            atomic_write_bytes(config, (text + "".join(blocks)).encode())


def get_instance():
    """The Dagster instance of DAGSTER_HOME. Opening it creates its SQLite storage when missing;
    two processes doing that at once break it (`table secondary_indexes already exists`, two
    alembic heads), so it is opened under an inter-process lock."""
    import dagster as dg

    dagster_home = os.environ.get("DAGSTER_HOME")
    if not dagster_home:  # Dagster raises its own clear error
        return dg.DagsterInstance.get()
    with instance_lock(Path(dagster_home)):
        instance = serialize_pool_claims(dg.DagsterInstance.get())
    ensure_pool_limit(instance)  # PostgreSQL: the pool's row exists before any step claims
    return instance


def _add_partitions(instance, keys: list[str]) -> None:
    from realsyn_assets.partitions import SHARDS

    with instance_lock(Path(instance.root_directory)):
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
    config = with_home_resources(run_config)
    # Dagster's console logger prints every event at DEBUG; the CLI prints its own summary.
    level = os.environ.get("REALSYN_LOG_LEVEL", "WARNING")
    config.setdefault("loggers", {"console": {"config": {"log_level": level}}})
    start = time.perf_counter()
    instance = get_instance()
    release_dead_runs(instance)
    try:
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition,
            run_config=config,
            raise_on_error=False,
            tags=run_tags(),
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


def with_home_resources(run_config: dict | None) -> dict:
    """`run_config` over the current home's resources.yaml (resources/settings.py).

    The Definitions read the file when they are imported; a process that runs stages of a home
    it did not start in (tests, notebooks, a long-lived worker) would otherwise keep the
    settings of the first home. Fields given in `run_config` win over the file's."""
    from realsyn_assets.resources.settings import load_resource_settings

    config = dict(run_config or {})
    settings = load_resource_settings()  # $REALSYN_HOME, set by prepare_environment
    if settings:
        given = config.get("resources", {})
        merged = {}
        for name in sorted(set(settings) | set(given)):
            fields = {**settings.get(name, {}), **given.get(name, {}).get("config", {})}
            merged[name] = {**given.get(name, {}), "config": fields}
        config["resources"] = merged
    return config


def _run_stage_in_worker(job_name: str, partition: str | None, run_config: dict | None):
    """A worker process's task: one partition's run, every failure as a report."""
    try:
        return run_stage(job_name, partition, run_config, raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - a Dagster-internal failure is still one report
        report = StageReport(job_name, partition, 0.0, False)
        report.error = _one_line(f"{type(exc).__name__}: {exc}")
        return report


class StageWorkers:
    """Runs the partitions of one stage, up to `workers` at once.

    With one worker (or one partition) every run happens in this process, one after another.
    Otherwise they go to spawned worker processes, started on first use and kept for later
    stages (each imports Dagster and the graph once); reports come back in the order of the
    partitions given. A worker that dies (killed, out of memory) fails the runs it was given and
    the pool is started afresh for the next stage."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None

    def run(
        self,
        job_name: str,
        partitions: list[str | None],
        run_config: dict | None = None,
        limit: int | None = None,
    ) -> Iterator[StageReport]:
        """The stage's reports in the order of `partitions`; at most `limit` (if given) and
        `workers` runs at once."""
        if min(self.workers, limit or self.workers) == 1 or len(partitions) < 2:
            for key in partitions:
                yield run_stage(job_name, key, run_config, raise_on_failure=False)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        pool = self._pool
        futures = [pool.submit(_run_stage_in_worker, job_name, k, run_config) for k in partitions]
        for key, future in zip(partitions, futures, strict=True):
            try:
                report = future.result()
            except Exception as exc:  # noqa: BLE001 - BrokenProcessPool: a worker died
                self._discard(pool)
                report = StageReport(job_name, key, 0.0, False)
                report.error = _one_line(f"worker process failed: {type(exc).__name__}: {exc}")
            yield report

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> StageWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def gpu_pool_assets() -> set[str]:
    """The assets whose steps run in the GPU pool."""
    from realsyn_assets.assets import ALL_ASSETS

    return {
        spec.key.to_user_string()
        for assets_def in ALL_ASSETS
        if assets_def.op.pool == GPU_POOL
        for spec in assets_def.specs
    }


def run_pipeline(
    layout: Home,
    scales: list[str],
    run_configs: dict[str, dict] | None = None,
    on_stage: Callable[[StageReport], None] | None = None,
    workers: int = 1,
    jobs: list[str] | None = None,
) -> list[StageReport]:
    """Every stage over every registered shard (in registration order), then each scale.

    The partitions of a per-shard or per-scale stage run up to `workers` at once (spawned
    processes); a stage with GPU-pool assets at most as many as the pool has slots: with one
    slot its partitions run here, one after another, so that the model is loaded once instead
    of once per worker while the others only queue for the slot. `jobs` restricts the pipeline
    to those stages (in pipeline order). A failed
    shard (or scale) fails alone: it is skipped in every later stage, the others go on, and
    corpus-wide steps use the shards that succeeded. A failed corpus-wide step stops the
    pipeline (everything after it needs it). Failed runs come back as reports with
    success=False, in registration order whatever finished first; nothing is raised for them."""
    from realsyn_assets.definitions import STAGES
    from realsyn_assets.stages import SCALE, SHARD

    shards = layout.shard_order()
    if not shards:
        raise RuntimeError(f"no shards registered in {layout.root}: run `realsyn ingest PATH...`")
    unknown = sorted(set(jobs or []) - {stage.job for stage in STAGES})
    if unknown:
        raise ValueError(f"not a stage of the pipeline: {', '.join(unknown)}")
    sync_partitions(layout)
    slots = gpu_slots(get_instance()) if workers > 1 else 1
    failed: set[tuple[str | None, str | None]] = set()
    reports = []
    with StageWorkers(workers) as pool:
        for stage in STAGES:
            if jobs is not None and stage.job not in jobs:
                continue
            keys: list[str | None] = {SHARD: list(shards), SCALE: list(scales)}.get(
                stage.partitions, [None]
            )
            keys = [key for key in keys if (stage.partitions, key) not in failed]
            config = (run_configs or {}).get(stage.job)
            limit = slots if set(stage.assets) & gpu_pool_assets() else None
            for report in pool.run(stage.job, keys, config, limit):
                reports.append(report)
                if on_stage:
                    on_stage(report)
                if not report.success:
                    if report.partition is None:
                        return reports
                    failed.add((stage.partitions, report.partition))
    return reports
