"""`realsyn`: run the RealSyn data pipeline (a Dagster asset graph) from the command line.

`demo` builds a small synthetic corpus and runs everything on it; `ingest` registers your own
shard files; `run` materializes the graph for every registered shard, stage by stage; `status`
shows what is materialized; `recluster` refits the sentence clusters; `bench` runs benchmarks
and calibrations. The partitions of a per-shard (or per-scale) stage run in parallel worker
processes (`--workers`); GPU-bound steps share `--gpu-slots` pool slots. Every run is recorded in
the Dagster instance of the home, so `dg dev` shows it afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Dagster-free imports: pool workers re-import `__main__` (this module); keep that cheap.
from realsyn_assets import engine_cli  # Dagster-free at import
from realsyn_assets.core.balance.sampling import SCALE_CAPS
from realsyn_assets.names import Asset, Job

SCALES = list(SCALE_CAPS)

# Small training settings for the CPU demo; the asset defaults are the paper's.
DEMO_TRAIN = {"model_name": "realsyn-tiny", "epochs": 20, "batch_size": 32}


def demo_run_configs() -> dict[str, dict]:
    return {Job.SCALE: {"ops": {Asset.CLIP_CHECKPOINT: {"config": DEMO_TRAIN}}}}


def _print_stage(report) -> None:
    checks = f"checks {report.checks_passed} passed"
    if report.checks_failed:
        checks += f", {len(report.checks_failed)} FAILED: " + "; ".join(report.checks_failed)
    if report.check_warnings:
        checks += f", {len(report.check_warnings)} warning(s): " + "; ".join(report.check_warnings)
    key = f"[{report.partition}]" if report.partition else ""
    numbers = []
    for asset, values in report.metadata.items():
        shown = {k: v for k, v in values.items() if not k.startswith("dagster/")}
        brief = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(shown.items())[:4]
        )
        numbers.append(f"{asset}: {brief}")
    print(f"  {report.job}{key} {report.seconds:.1f}s  {checks}")
    if not report.success:
        print(f"      FAILED: {report.error}")
    for line in numbers:
        print(f"      {line}")
    sys.stdout.flush()


def _finish(reports, refused=()) -> int:
    """Print what failed (refused files, failed runs, failed ERROR checks; WARN checks do not
    count) and return the exit code: 1 if anything failed, else 0."""
    failed_runs = [r for r in reports if not r.success]
    failed_checks = [f"{r.label} {c}" for r in reports for c in r.checks_failed]
    lines = [f"refused {error}" for error in refused]
    lines += [f"run failed: {r.label}: {r.error}" for r in failed_runs]
    lines += [f"check failed: {c}" for c in failed_checks]
    if lines:
        print(
            f"{len(refused)} file(s) refused, {len(failed_runs)} run(s) failed, "
            f"{len(failed_checks)} check(s) failed:",
            file=sys.stderr,
        )
        for line in lines:
            print(f"  {line}", file=sys.stderr)
    skipped = sorted({r.partition for r in failed_runs if r.partition})
    if skipped:
        print(
            f"  later stages skipped for: {', '.join(skipped)} (fix the file, then rerun)",
            file=sys.stderr,
        )
    sys.stderr.flush()
    return 1 if lines else 0


def _configure_slots(args: argparse.Namespace) -> None:
    from realsyn_assets.concurrency import GPU_POOL, gpu_slots, set_gpu_slots
    from realsyn_assets.pipeline import get_instance

    instance = get_instance()
    if args.gpu_slots is not None:
        set_gpu_slots(instance, args.gpu_slots)
    slots = gpu_slots(instance) or "unlimited"
    print(f"workers: {args.workers}; GPU pool {GPU_POOL!r}: {slots} slot(s)")


def cmd_demo(args: argparse.Namespace) -> int:
    from realsyn_assets.demo.corpus import generate_demo_corpus
    from realsyn_assets.pipeline import prepare_environment, register, run_pipeline

    start = time.perf_counter()
    layout = prepare_environment(args.home)
    print(f"REALSYN_HOME={layout.root}")
    _configure_slots(args)
    corpus = generate_demo_corpus(
        layout.root / "demo_corpus", n_docs=args.docs, n_shards=args.shards, seed=args.seed
    )
    keys = register(layout, corpus.shard_paths)
    print(f"demo corpus: {len(keys)} shards ({', '.join(keys)}) in {corpus.root}")
    reports = run_pipeline(
        layout, SCALES, demo_run_configs(), on_stage=_print_stage, workers=args.workers
    )
    failed = [f for r in reports for f in r.checks_failed]
    _print_outputs(layout)
    print(
        f"done in {time.perf_counter() - start:.0f}s; "
        f"{sum(r.checks_passed for r in reports)} checks passed, {len(failed)} failed"
    )
    return _finish(reports)


def _print_outputs(layout) -> None:
    print("outputs:")
    for label, path in [
        ("LanceDB", layout.lancedb_uri),
        ("DuckDB metrics", layout.metrics_db),
        ("balanced subsets", layout.asset_dir(Asset.BALANCED_SUBSET)),
        ("exports + cards", layout.asset_dir(Asset.SUBSET_EXPORT)),
        ("CLIP checkpoints", layout.asset_dir(Asset.CLIP_CHECKPOINT)),
        ("quality report", layout.asset_dir(Asset.QUALITY_REPORT) / "report.md"),
        ("Dagster instance", layout.dagster_home),
    ]:
        print(f"  {label:18s} {path}")
    print(f"UI: REALSYN_HOME={layout.root} DAGSTER_HOME={layout.dagster_home} dg dev")


def cmd_ingest(args: argparse.Namespace) -> int:
    from realsyn_assets.pipeline import prepare_environment, register, run_stage
    from realsyn_assets.sensors import SHARD_INGEST_JOB

    layout = prepare_environment(args.home)
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    refused: list = []
    keys = register(layout, paths, args.format, refused)
    shards = layout.shards()
    for key in keys:
        print(f"registered shard {key} <- {shards[key].path}")
    reports = []
    if args.extract:
        for key in keys:
            reports.append(run_stage(SHARD_INGEST_JOB, key, raise_on_failure=False))
            _print_stage(reports[-1])
    return _finish(reports, refused)


def cmd_run(args: argparse.Namespace) -> int:
    from realsyn_assets.pipeline import prepare_environment, run_pipeline

    layout = prepare_environment(args.home)
    if not layout.shard_order():
        print(
            f"no shards registered in {layout.root}: run `realsyn ingest PATH...`", file=sys.stderr
        )
        return 2
    _configure_slots(args)
    reports = run_pipeline(
        layout, args.scales or SCALES, on_stage=_print_stage, workers=args.workers
    )
    _print_outputs(layout)
    return _finish(reports)


def cmd_recluster(args: argparse.Namespace) -> int:
    """Fit the sentence clusters again, then re-retrieve every shard's texts (unless --only)."""
    from realsyn_assets.definitions import RECLUSTER_JOB
    from realsyn_assets.pipeline import prepare_environment, run_stage

    layout = prepare_environment(args.home)
    reports = [run_stage(RECLUSTER_JOB, None, raise_on_failure=False)]
    _print_stage(reports[0])
    if not args.only and reports[0].success:
        for key in layout.shard_order():
            reports.append(run_stage(Job.SHARD_RETRIEVE, key, raise_on_failure=False))
            _print_stage(reports[-1])
        print("texts re-retrieved; `realsyn run` rebuilds the balanced subsets and checkpoints")
    return _finish(reports)


def cmd_status(args: argparse.Namespace) -> int:
    import dagster as dg

    from realsyn_assets.assets import ALL_ASSETS
    from realsyn_assets.partitions import SHARDS
    from realsyn_assets.pipeline import get_instance, prepare_environment

    layout = prepare_environment(args.home)
    instance = get_instance()
    shards = layout.shard_order()
    partitions = set(instance.get_dynamic_partitions(SHARDS))
    print(f"REALSYN_HOME={layout.root}  shards registered: {len(shards)}")
    print(engine_cli.engine_line(layout))
    for assets_def in ALL_ASSETS:
        key = assets_def.key
        if assets_def.partitions_def is None:
            event = instance.get_latest_materialization_event(key)
            state = (
                time.strftime("%Y-%m-%d %H:%M", time.localtime(event.timestamp)) if event else "-"
            )
        else:
            universe, known = SCALES, SCALES
            if isinstance(assets_def.partitions_def, dg.DynamicPartitionsDefinition):
                universe, known = shards, [k for k in shards if k in partitions]
            status = instance.get_status_by_partition(key, known, assets_def.partitions_def) or {}
            done = [k for k in universe if status.get(k) == dg.AssetPartitionStatus.MATERIALIZED]
            failed = [k for k in universe if status.get(k) == dg.AssetPartitionStatus.FAILED]
            state = f"{len(done)}/{len(universe)} partitions"
            if failed:
                state += f", {len(failed)} FAILED: {', '.join(failed)}"
        print(f"  {key.to_user_string():22s} {state}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(f"realsyn_assets.bench.{args.name.replace('-', '_')}")
    return int(module.main(args.args) or 0)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parallel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=_positive,
        default=os.cpu_count() or 1,
        help="partitions of a per-shard or per-scale stage run at once, each in a worker "
        "process (default: the number of cores; 1 = one after another in this process)",
    )
    parser.add_argument(
        "--gpu-slots",
        type=_positive,
        default=None,
        help="steps of GPU-bound assets (Dagster pool `encoder`) that may run at once across "
        "all runs of the home; stored in the instance until changed (default: the limit "
        "already set, else dagster.yaml's concurrency.pools.default_limit, 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realsyn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    home_help = "output folder (default: $REALSYN_HOME or ./realsyn_home)"

    demo = sub.add_parser(
        "demo",
        help="generate a small synthetic corpus with ground truth in the home, register its "
        "shards and materialize the whole graph (all stages, all scales, all checks)",
    )
    demo.add_argument("--home", default=None, help=home_help)
    demo.add_argument("--docs", type=int, default=240, help="documents in the demo corpus")
    demo.add_argument("--shards", type=int, default=4, help="shards in the demo corpus")
    demo.add_argument("--seed", type=int, default=0, help="seed of the demo corpus")
    _parallel_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    ingest = sub.add_parser(
        "ingest",
        help="register shard files (OBELICS/MMC4 JSONL or parquet) as `shard` partitions; "
        "a file registered before keeps its key; an unreadable file (truncated parquet or "
        "gzip, wrong format) is refused, naming the file and the cause. Exits 1 if a file was "
        "refused, a run failed or an ERROR check failed (warnings do not count)",
    )
    ingest.add_argument("paths", nargs="+", help="shard files")
    ingest.add_argument("--home", default=None, help=home_help)
    ingest.add_argument(
        "--format",
        default="auto",
        choices=["auto", "obelics", "mmc4"],
        help="document layout of the files (auto: detected per record)",
    )
    ingest.add_argument(
        "--extract",
        action="store_true",
        help="also run shard_ingest_job on each new shard (extract, embed with the current "
        "encoder, image dedup)",
    )
    ingest.set_defaults(func=cmd_ingest)

    run = sub.add_parser(
        "run",
        help="materialize the whole graph for every registered shard: the stages of "
        "definitions.STAGES in order, per-shard stages once per shard, scale stages per scale. "
        "A failed shard fails alone (skipped in later stages, the others go on); exits 1 if a "
        "run or an ERROR check failed, listing them at the end",
    )
    run.add_argument("--home", default=None, help=home_help)
    run.add_argument(
        "--scales", nargs="*", choices=SCALES, help="dataset scales to build (default: all)"
    )
    _parallel_arguments(run)
    run.set_defaults(func=cmd_run)

    recluster = sub.add_parser(
        "recluster",
        help="fit the sentence k-means again on every kept sentence (when the reported drift "
        "says so), then re-retrieve every shard's texts",
    )
    recluster.add_argument("--home", default=None, help=home_help)
    recluster.add_argument(
        "--only", action="store_true", help="only refit the clusters, do not re-retrieve"
    )
    recluster.set_defaults(func=cmd_recluster)

    status = sub.add_parser(
        "status",
        help="print, per asset, when it was materialized or how many of its partitions are "
        "(and which failed)",
    )
    status.add_argument("--home", default=None, help=home_help)
    status.set_defaults(func=cmd_status)
    engine_cli.add_parser(sub, home_help)
    from realsyn_assets.instance_config import add_parser as add_instance_parser

    add_instance_parser(sub)
    from realsyn_assets.bench import NAMES

    names = [name.replace("_", "-") for name in NAMES]
    bench = sub.add_parser(
        "bench",
        help="benchmarks (JSON on stdout) and calibrations; `realsyn bench NAME --help` for "
        "options: " + ", ".join(names),
    )
    bench.add_argument("name", choices=names)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="options of that benchmark")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
