"""`realsyn bench download`: parallel image download vs one-at-a-time, latency-bound.

Starts the local image server (`bench/_image_server.py`, a subprocess on 127.0.0.1) with
`--latency` seconds injected before every response, then downloads `--urls` distinct small
images with the downloader (`core.ingest.download`) twice into fresh stores: sequentially
(1 process x 1 thread, the first `--sequential-urls` URLs, rate scaled per URL) and with
`--processes` x `--threads`. Prints JSON: `urls`, `images_per_s`, `sequential_images_per_s`,
`speedup` (their ratio), the parallel settings and the status counts of both runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from realsyn_assets.bench._image_server import serving
from realsyn_assets.core.ingest.download import download_urls
from realsyn_assets.core.ingest.http_fetch import DownloadSettings

DEFAULTS = DownloadSettings()  # the parallel run uses image_downloads' defaults


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realsyn bench download", description=__doc__.split("\n")[0])
    p.add_argument("--urls", type=int, default=400, help="distinct images downloaded in parallel")
    p.add_argument("--sequential-urls", type=int, default=40, help="URLs of the sequential run")
    p.add_argument("--latency", type=float, default=0.05, help="seconds before every response")
    p.add_argument("--processes", type=int, default=DEFAULTS.processes)
    p.add_argument("--threads", type=int, default=DEFAULTS.threads)
    return p


def _rate(urls: list[str], store: Path, settings: DownloadSettings) -> tuple[float, dict]:
    report = download_urls(urls, store, settings)
    return len(urls) / max(report.seconds, 1e-9), report.statuses


def run_benchmark(
    n: int, n_sequential: int, latency: float, processes: int, threads: int, work: Path
) -> dict:
    with serving(latency=latency) as base:
        urls = [f"{base}/img/{i}.jpg" for i in range(n)]
        allow = ("127.0.0.1",)
        sequential = DownloadSettings(processes=1, threads=1, allow_addresses=allow)
        parallel = DownloadSettings(processes=processes, threads=threads, allow_addresses=allow)
        seq_rate, seq_statuses = _rate(urls[: max(1, n_sequential)], work / "seq", sequential)
        par_rate, par_statuses = _rate(urls, work / "par", parallel)
    return {
        "urls": n,
        "sequential_urls": min(n, max(1, n_sequential)),
        "latency_s": latency,
        "processes": processes,
        "threads": threads,
        "images_per_s": round(par_rate, 1),
        "sequential_images_per_s": round(seq_rate, 2),
        "speedup": round(par_rate / seq_rate, 1),
        "statuses": par_statuses,
        "sequential_statuses": seq_statuses,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv if argv is not None else sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="bench_download_"))
    try:
        result = run_benchmark(
            args.urls, args.sequential_urls, args.latency, args.processes, args.threads, work
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
