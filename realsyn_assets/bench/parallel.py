"""`realsyn bench parallel`: a home's per-shard stages, one shard after another vs `--workers`.

Re-materializes the per-shard stages of an existing home (default: shard_extract_job,
shard_embed_job, shard_sentence_dedup_job, shard_retrieve_job; the corpus-wide assets between
them stay as they are) through `run_pipeline`, once with one worker (every run in one process)
and once with `--workers` spawned worker processes, for `--rounds` rounds whose order alternates
(serial first, then parallel first) so that a drifting load on a shared machine cancels out. Each
stage's wall time counts from its first run's start to its last run's end, worker start-up
included. Every pass runs in a fresh process, as `realsyn run` would: models and caches loaded
by one pass do not speed up the next. Reports the median seconds per stage and mode,
`speedup = serial / parallel`, and
whether every pass wrote the same bytes (sha256 of every parquet and npy file under data/).

Run it on a copy of a home: the outputs are rewritten (with identical bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from realsyn_assets.names import Job

PER_SHARD_JOBS = [Job.SHARD_EXTRACT, Job.SHARD_EMBED, Job.SHARD_SENTENCE_DEDUP, Job.SHARD_RETRIEVE]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realsyn bench parallel", description=__doc__.split("\n")[0])
    p.add_argument("--home", required=True, help="a materialized home (a copy: it is rewritten)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the parallel mode")
    p.add_argument("--rounds", type=int, default=2, help="serial+parallel pairs, order alternating")
    p.add_argument("--jobs", nargs="+", default=PER_SHARD_JOBS, help="stages to re-run")
    return p


def _digest(home: Path) -> str:
    files = sorted([*home.glob("data/**/*.parquet"), *home.glob("data/**/*.npy")])
    digest = hashlib.sha256()
    for path in files:
        if not path.name.startswith("."):
            digest.update(str(path.relative_to(home)).encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _one_pass(home: str, workers: int, jobs: list[str]) -> dict[str, float]:
    """Seconds per stage (and in total) of one pass over the stages."""
    from realsyn_assets.pipeline import prepare_environment, run_pipeline

    layout = prepare_environment(home)

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    mark = [start]

    def on_stage(report) -> None:
        if not report.success:
            raise RuntimeError(f"{report.label} failed: {report.error}")
        now = time.perf_counter()
        seconds[report.job] = seconds.get(report.job, 0.0) + now - mark[0]
        mark[0] = now

    run_pipeline(layout, [], on_stage=on_stage, workers=workers, jobs=jobs)
    seconds["total"] = time.perf_counter() - start
    return seconds


def main(argv: list[str] | None = None) -> int:
    from realsyn_assets.pipeline import prepare_environment

    args = build_parser().parse_args(argv)
    os.environ.setdefault("REALSYN_LOG_LEVEL", "ERROR")
    layout = prepare_environment(args.home)
    reference = None  # the bytes after the first pass (the home may predate today's code)
    times: dict[int, list[dict[str, float]]] = {1: [], args.workers: []}
    same_bytes = True
    load = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        order = [1, args.workers] if round_ % 2 == 0 else [args.workers, 1]
        for workers in order:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as fresh:
                one = fresh.submit(_one_pass, str(layout.root), workers, args.jobs)
                times[workers].append(one.result())
            digest = _digest(layout.root)
            reference = reference or digest
            same_bytes = same_bytes and digest == reference
        load.append(os.getloadavg()[0])
    stages = {}
    for name in [*args.jobs, "total"]:
        serial = statistics.median(t[name] for t in times[1])
        parallel = statistics.median(t[name] for t in times[args.workers])
        stages[name] = {
            "serial_s": round(serial, 2),
            "parallel_s": round(parallel, 2),
            "speedup": round(serial / parallel, 2),
        }
    result = {
        "home": str(layout.root),
        "shards": len(layout.shard_order()),
        "workers": args.workers,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": [round(x, 2) for x in load],
        "stages": stages,
        "same_bytes": same_bytes,
    }
    print(json.dumps(result, indent=2))
    return 0 if same_bytes else 1
