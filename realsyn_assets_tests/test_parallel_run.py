"""`realsyn run --workers` and the GPU pool (issue 17).

* the home's dagster.yaml carries the pool limit, and a user's own edits are kept;
* `--gpu-slots` gives the encoder pool its own limit;
* with one slot, GPU-pool steps of runs in different processes never overlap while their other
  steps do (a rendezvous that only concurrent runs can pass), and with two slots they overlap;
* a run killed while holding the slot does not block the next one;
* the partitions of a stage come back in registration order, a bad shard fails alone;
* per-shard stages in two workers write the same bytes and LanceDB rows as one after another.
"""

import hashlib
import json
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import dagster as dg
import lancedb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from realsyn_assets import cli, pipeline
from realsyn_assets.concurrency import (
    GPU_POOL,
    RUN_PID_TAG,
    release_dead_runs,
    run_tags,
    set_gpu_slots,
)
from realsyn_assets.names import Asset, Job

RENDEZVOUS_S = 120  # how long a probe step waits for the other run before it fails


# ---- a probe job: one plain step, then one step in the GPU pool ----------------------------------


class ProbeConfig(dg.Config):
    folder: str = ""
    name: str = ""
    meet: bool = False  # wait in the step until every run has reached it
    runs: int = 2
    hold: bool = False  # write a marker, then sleep until killed


def _meet(config: ProbeConfig, step: str) -> None:
    """Announce this run at `step`, then wait until all runs are there (or fail)."""
    folder = Path(config.folder)
    (folder / f"{step}.{config.name}").write_text("here")
    deadline = time.monotonic() + RENDEZVOUS_S
    while len(arrived := list(folder.glob(f"{step}.*"))) < config.runs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{config.name}: no other run reached {step}")
        time.sleep(0.05)
    # leave together: half a second after the last arrival, the same instant for every run
    go = max(path.stat().st_mtime for path in arrived) + 0.5
    time.sleep(max(0.0, go - time.time()))


@dg.op
def cpu_step(config: ProbeConfig) -> int:
    _meet(config, "cpu")
    return 1


@dg.op(pool=GPU_POOL)
def gpu_step(config: ProbeConfig, ready: int) -> int:
    if config.hold:
        (Path(config.folder) / "holding").write_text(str(os.getpid()))
        time.sleep(600)
    if config.meet:
        _meet(config, "gpu")
    else:
        time.sleep(1.0)
    return ready


@dg.job
def probe_job():
    gpu_step(cpu_step())


def _probe_config(folder: Path, name: str, **fields) -> dict:
    config = {"folder": str(folder), "name": name, **fields}
    return {"ops": {"cpu_step": {"config": config}, "gpu_step": {"config": config}}}


def _run_probe(folder: str, name: str, fields: dict) -> bool:
    """One probe run in process against DAGSTER_HOME (a worker process's task)."""
    result = probe_job.execute_in_process(
        instance=pipeline.get_instance(),
        run_config=_probe_config(Path(folder), name, **fields),
        tags=run_tags(),
        raise_on_error=False,
    )
    return result.success


def _step_intervals(instance, step_key: str) -> list[tuple[float, float]]:
    """(start, end) of every execution of `step_key`, from the instance's event log."""
    intervals = []
    for record in instance.get_run_records():
        start = None
        for event in instance.all_logs(record.dagster_run.run_id):
            if event.step_key != step_key or not event.is_dagster_event:
                continue
            if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                start = event.timestamp
            elif event.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                intervals.append((start, event.timestamp))
    return sorted(intervals)


def _overlaps(intervals: list[tuple[float, float]]) -> list:
    return [(a, b) for a, b in zip(intervals, intervals[1:], strict=False) if b[0] < a[1]]


@pytest.fixture
def home(tmp_path, clean_env):
    return pipeline.prepare_environment(tmp_path / "home")


def _two_probes(folder: Path, **fields) -> list[bool]:
    folder.mkdir()
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_probe, str(folder), f"run{i}", fields) for i in range(2)]
        return [future.result() for future in futures]


# ---- dagster.yaml and --gpu-slots ------------------------------------------------------------------


def test_dagster_yaml_limits_the_pools_and_keeps_a_users_edits(tmp_path, clean_env):
    layout = pipeline.prepare_environment(tmp_path / "new")
    config = yaml.safe_load((layout.dagster_home / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["telemetry"] == {"enabled": False}
    assert pipeline.get_instance().event_log_storage.get_pool_config().default_pool_limit == 1

    # an older home: the section is added, the user's own lines stay as they were
    old = tmp_path / "old_dagster"
    old.mkdir()
    users = "# my instance\ntelemetry:\n  enabled: true\nrun_monitoring:\n  enabled: true"
    (old / "dagster.yaml").write_text(users)
    pipeline.ensure_dagster_yaml(old / "dagster.yaml")
    text = (old / "dagster.yaml").read_text()
    assert text.startswith(users + "\n")
    assert yaml.safe_load(text)["concurrency"]["pools"]["default_limit"] == 1

    # a user's own concurrency section is never touched, nor is the file rewritten
    own = "concurrency:\n  pools:\n    default_limit: 3\n"
    (old / "dagster.yaml").write_text(own)
    before = (old / "dagster.yaml").stat().st_mtime_ns
    pipeline.ensure_dagster_yaml(old / "dagster.yaml")
    assert (old / "dagster.yaml").read_text() == own
    assert (old / "dagster.yaml").stat().st_mtime_ns == before


def test_gpu_slots_gives_the_encoder_pool_its_own_limit(home):
    instance = pipeline.get_instance()
    set_gpu_slots(instance, 2)
    info = pipeline.get_instance().event_log_storage.get_concurrency_info(GPU_POOL)
    assert info.slot_count == 2 and not info.using_default_limit
    with pytest.raises(ValueError):
        set_gpu_slots(instance, 0)
    args = cli.build_parser().parse_args(["run", "--gpu-slots", "3", "--workers", "2"])
    assert (args.gpu_slots, args.workers) == (3, 2)
    assert cli.build_parser().parse_args(["demo"]).workers == (os.cpu_count() or 1)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--workers", "0"])


# ---- the pool across processes -------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_encoder_pool_steps_never_overlap_while_other_steps_do(home, tmp_path):
    # both runs pass the rendezvous of their plain step: they run at the same time ...
    assert _two_probes(tmp_path / "one_slot") == [True, True]
    gpu = _step_intervals(pipeline.get_instance(), "gpu_step")
    assert len(gpu) == 2
    # ... and then reach the GPU step together, yet one waits for the other's slot
    assert not _overlaps(gpu), gpu

    # with two slots the GPU steps meet as well (they could not with one: a deadlock, then
    # a failed rendezvous)
    set_gpu_slots(pipeline.get_instance(), 2)
    assert _two_probes(tmp_path / "two_slots", meet=True) == [True, True]
    info = pipeline.get_instance().event_log_storage.get_concurrency_info(GPU_POOL)
    assert not info.claimed_slots and not info.pending_steps


@pytest.mark.timeout(600)
def test_a_killed_run_does_not_keep_the_gpu_slot(home, tmp_path):
    folder = tmp_path / "killed"
    folder.mkdir()
    process = get_context("spawn").Process(
        target=_run_probe, args=(str(folder), "victim", {"hold": True, "runs": 1})
    )
    process.start()
    deadline = time.monotonic() + RENDEZVOUS_S
    while not (folder / "holding").exists():
        assert time.monotonic() < deadline and process.is_alive(), "the probe never held a slot"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.join(30)
    instance = pipeline.get_instance()
    held = instance.event_log_storage.get_concurrency_info(GPU_POOL).claimed_slots
    assert [slot.step_key for slot in held] == ["gpu_step"]

    assert release_dead_runs(instance) == [held[0].run_id]
    assert instance.get_run_by_id(held[0].run_id).status == dg.DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info(GPU_POOL).claimed_slots
    # the next run gets the slot (run_stage frees dead runs' slots by itself before each run)
    assert _run_probe(str(folder), "next", {"runs": 1})


# ---- the stage workers on the real graph -------------------------------------------------------


def _shard(path: Path, n: int) -> Path:
    doc = {"texts": ["One two three four five six seven eight nine ten."], "images": [None]}
    path.write_text("".join(json.dumps({**doc, "id": f"{path.stem}-{i}"}) + "\n" for i in range(n)))
    return path


@pytest.mark.timeout(900)
def test_stage_workers_report_in_registration_order_and_a_bad_shard_fails_alone(home, tmp_path):
    bad = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": f"b{i}", "texts": ["x"]} for i in range(20)]), bad)
    paths = [_shard(tmp_path / "a.jsonl", 3), bad, _shard(tmp_path / "c.jsonl", 4)]
    keys = pipeline.register(home, paths)
    bad.write_bytes(bad.read_bytes()[:100])  # truncated after registration
    with pipeline.StageWorkers(2) as workers:
        reports = list(workers.run(Job.SHARD_EXTRACT, keys))
    assert [r.partition for r in reports] == keys == ["a", "b", "c"]
    assert [r.success for r in reports] == [True, False, True]
    assert str(bad) in reports[1].error, reports[1].error
    for key in ("a", "c"):
        assert home.partition_file(Asset.EXTRACTED_SENTENCES, key).exists()


def test_stages_with_gpu_assets_run_at_most_as_many_partitions_as_the_pool_has_slots(
    home, tmp_path, monkeypatch
):
    pipeline.register(home, [_shard(tmp_path / f"s{i}.jsonl", 2) for i in range(3)])
    calls = []

    class Recorder:
        def __init__(self, workers):
            self.workers = workers

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def run(self, job, keys, config=None, limit=None):
            calls.append((job, self.workers, limit))
            return [pipeline.StageReport(job, key, 0.0, True) for key in keys]

    monkeypatch.setattr(pipeline, "StageWorkers", Recorder)
    pipeline.run_pipeline(home, ["15M"], workers=2)
    limits = {job: (workers, limit) for job, workers, limit in calls}
    assert limits[Job.SHARD_EXTRACT] == (2, None)  # no GPU step: as many as --workers
    assert limits[Job.SHARD_EMBED] == limits[Job.SCALE] == (2, 1)  # one slot: one at a time
    set_gpu_slots(pipeline.get_instance(), 3)
    calls.clear()
    pipeline.run_pipeline(home, ["15M"], workers=2)
    assert {job: limit for job, _, limit in calls}[Job.SHARD_EMBED] == 3


PER_SHARD_JOBS = [
    Job.SHARD_EXTRACT,
    Job.SHARD_EMBED,
    Job.WORD_STATISTICS,
    Job.SHARD_SENTENCE_DEDUP,
]


def _digests(home: Path) -> dict[str, str]:
    files = [*home.glob("data/**/*.parquet"), *home.glob("data/**/*.npy")]
    return {
        str(f.relative_to(home)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(files)
        if not f.name.startswith(".")
    }


def _lance_rows(home: Path) -> dict[str, list]:
    db = lancedb.connect(str(home / "lancedb"))
    return {
        name: sorted(map(str, db.open_table(name).to_arrow().to_pylist()))
        for name in ("images", "sentences")
    }


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_parallel_per_shard_stages_write_the_same_bytes_as_serial(tmp_path, clean_env):
    from realsyn_assets.demo.corpus import generate_demo_corpus

    results = {}
    for workers in (1, 2):
        root = tmp_path / f"workers{workers}"
        for name in ("REALSYN_HOME", "DAGSTER_HOME"):
            os.environ.pop(name, None)
        layout = pipeline.prepare_environment(root)
        corpus = generate_demo_corpus(root / "corpus", n_docs=24, n_shards=3, seed=0)
        pipeline.register(layout, corpus.shard_paths)
        if workers > 1:  # the embeddings in two workers too (one slot: one after another here)
            set_gpu_slots(pipeline.get_instance(), workers)
        reports = pipeline.run_pipeline(layout, [], workers=workers, jobs=PER_SHARD_JOBS)
        assert all(r.success for r in reports), [r.error for r in reports if not r.success]
        labels = [r.label for r in reports]
        pids = {
            record.dagster_run.tags[RUN_PID_TAG]
            for record in pipeline.get_instance().get_run_records()
            if record.dagster_run.job_name == Job.SHARD_EMBED
        }
        results[workers] = (_digests(root), _lance_rows(root), labels, len(pids))
    serial, parallel = results[1], results[2]
    assert parallel[2] == serial[2]  # same reports in the same order
    assert len(serial[0]) > 20 and parallel[0] == serial[0]
    assert parallel[1] == serial[1]
    assert (serial[3], parallel[3]) == (1, 2)  # embedded here vs in two worker processes
