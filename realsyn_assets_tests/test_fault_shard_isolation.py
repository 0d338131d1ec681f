"""Issue 18, failure 2 and part of 7: a shard that fails (after registration) fails alone, and
every CLI command exits non-zero when a run or an ERROR-severity check failed (WARN checks do
not count).

Fast tests: the stage runner with a stubbed `run_stage` (which shard runs in which stage), the
CLI's exit code with stubbed reports, and one Dagster run of shard_extract_job over a parquet
shard truncated after registration.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from realsyn_assets import cli, pipeline
from realsyn_assets.definitions import STAGES
from realsyn_assets.names import Asset, Job
from realsyn_assets.pipeline import StageReport
from realsyn_assets.resources.home import Home
from realsyn_assets.stages import SCALE, SHARD

DOC = {"texts": ["One two three four five six seven."], "images": [None]}


def _jsonl(path, n=3):
    path.write_text("".join(json.dumps({**DOC, "id": f"{path.stem}-{i}"}) + "\n" for i in range(n)))
    return path


def _parquet(path, n=20):
    rows = [{**DOC, "id": f"{path.stem}-{i}"} for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _stub_run_stage(calls, fail=lambda job, key: False, check_failed=lambda job, key: False):
    def run_stage(job, partition, run_config=None, raise_on_failure=True):
        calls.append((job, partition))
        report = StageReport(job, partition, 0.0, not fail(job, partition))
        if not report.success:
            report.error = f"{Asset.RAW_DOCUMENTS}: cannot read /corpus/{partition}.parquet"
            if raise_on_failure:
                raise RuntimeError(report.error)
        if check_failed(job, partition):
            report.checks_failed.append("raw_documents:documents_parsed (stubbed failure)")
        return report

    return run_stage


def test_fault_failed_shard_is_skipped_by_every_later_stage(tmp_path, monkeypatch):
    home = Home(tmp_path / "home")
    home.register_shards([_jsonl(tmp_path / f"s{i}.jsonl") for i in range(3)])
    calls: list = []
    first_shard_job = next(stage.job for stage in STAGES if stage.partitions == SHARD)
    monkeypatch.setattr(
        pipeline,
        "run_stage",
        _stub_run_stage(calls, lambda j, k: (j, k) == (first_shard_job, "s1")),
    )
    monkeypatch.setattr(pipeline, "sync_partitions", lambda *a, **k: None, raising=False)
    reports = pipeline.run_pipeline(home, ["15M"])
    failed = [r for r in reports if not r.success]
    assert [(r.job, r.partition) for r in failed] == [(first_shard_job, "s1")]
    assert "s1.parquet" in failed[0].error
    assert calls.count((first_shard_job, "s1")) == 1
    assert [c for c in calls if c[1] == "s1"] == [(first_shard_job, "s1")]
    # the other shards go through every per-shard stage; corpus-wide and scale stages still run
    for stage in STAGES:
        expected = {SHARD: ["s0", "s2"], SCALE: ["15M"]}.get(stage.partitions, [None])
        got = [key for job, key in calls if job == stage.job and key != "s1"]
        assert got == expected, stage.job


def test_fault_failed_corpus_stage_stops_the_pipeline(tmp_path, monkeypatch):
    home = Home(tmp_path / "home")
    home.register_shards([_jsonl(tmp_path / "s0.jsonl")])
    corpus_job = next(stage.job for stage in STAGES if stage.partitions is None)
    calls: list = []
    monkeypatch.setattr(pipeline, "run_stage", _stub_run_stage(calls, lambda j, k: j == corpus_job))
    monkeypatch.setattr(pipeline, "sync_partitions", lambda *a, **k: None, raising=False)
    reports = pipeline.run_pipeline(home, ["15M"])
    assert reports[-1].job == corpus_job and not reports[-1].success
    assert calls[-1] == (corpus_job, None)


def test_fault_cli_ingest_exit_code_follows_error_checks_not_warnings(
    tmp_path, monkeypatch, clean_env, capsys
):
    shard = _jsonl(tmp_path / "s0.jsonl")
    calls: list = []
    monkeypatch.setattr(
        pipeline, "run_stage", _stub_run_stage(calls, check_failed=lambda j, k: True)
    )
    home = str(tmp_path / "home")
    assert cli.main(["ingest", "--home", home, "--extract", str(shard)]) == 1
    assert calls == [(Job.SHARD_INGEST, "s0")]
    assert "documents_parsed" in capsys.readouterr().err

    def warn_only(job, partition, run_config=None, raise_on_failure=True):
        report = StageReport(job, partition, 0.0, True, checks_passed=3)
        report.check_warnings.append("extracted_images:funnel (0 rows)")
        return report

    monkeypatch.setattr(pipeline, "run_stage", warn_only)
    assert cli.main(["ingest", "--home", home, "--extract", str(shard)]) == 0
    monkeypatch.setattr(pipeline, "run_stage", _stub_run_stage([], fail=lambda j, k: True))
    assert cli.main(["ingest", "--home", home, "--extract", str(shard)]) == 1
    assert "run failed" in capsys.readouterr().err


def test_corrupt_shard_after_registration_fails_its_partition_with_file_and_cause(
    tmp_path, clean_env, capsys
):
    """Through Dagster: raw_documents wraps the pyarrow error into a failure naming the file and
    the cause; `realsyn status` shows the partition as failed."""
    layout = pipeline.prepare_environment(tmp_path / "home")
    good = _jsonl(tmp_path / "good.jsonl")
    bad = _parquet(tmp_path / "bad.parquet")
    keys = pipeline.register(layout, [good, bad])
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated after registration
    with pytest.raises(RuntimeError) as info:
        pipeline.run_stage(Job.SHARD_EXTRACT, "bad")
    assert str(bad) in str(info.value) and "PAR1" in str(info.value), str(info.value)
    report = pipeline.run_stage(Job.SHARD_EXTRACT, "bad", raise_on_failure=False)
    assert not report.success
    assert str(bad) in report.error and "PAR1" in report.error, report.error
    assert report.error.startswith(f"{Asset.RAW_DOCUMENTS}:") and "\n" not in report.error
    assert keys == ["good", "bad"]
    capsys.readouterr()
    assert cli.main(["status", "--home", str(layout.root)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if Asset.RAW_DOCUMENTS in ln)
    assert "0/2 partitions, 1 FAILED: bad" in line, line


@pytest.mark.slow
def test_fault_ingest_exits_nonzero_on_a_real_failed_error_check(tmp_path, clean_env, capsys):
    """No stubs: a few demo documents and 40 broken lines -> `invalid_json` removes > 90% of the
    input, documents_parsed (ERROR severity) fails, the run itself succeeds, `realsyn ingest`
    exits 1 (it exited 0)."""
    from realsyn_assets.demo.corpus import generate_demo_corpus

    shard = generate_demo_corpus(tmp_path / "corpus", n_docs=6, n_shards=2, seed=0).shard_paths[0]
    with shard.open("a") as fh:
        fh.writelines(f"{{broken {i}\n" for i in range(40))
    code = cli.main(["ingest", "--home", str(tmp_path / "home"), "--extract", str(shard)])
    err = capsys.readouterr().err
    assert code == 1, err[-3000:]
    assert "0 run(s) failed, 1 check(s) failed" in err and "documents_parsed" in err, err[-3000:]
