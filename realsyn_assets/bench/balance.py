"""`realsyn bench balance`: the semantic-balance stage at scale, on synthetic assignments.

One JSON object on stdout. For `--rows` image-text pairs with synthetic cluster ids (skewed,
lognormal sizes around the paper's ~168 pairs per cluster) and image-synthetic text cosines:

1. `window_s`: the cosine window (calibrated to keep the paper's 85 %) and its mask;
2. `caps_s`: per-cluster ranks from one seeded permutation, caps solved to the paper's share of
   the pool (`--cap-rule`) and the nested 15M / 30M / 100M subsets (the code the asset runs);
3. `export_s`: each subset's rows (image_id, shard, cluster, syn_score) written as parquet.

`seconds` is the wall-clock sum of the three (data generation is not timed), `cpu_s` their CPU
time over all threads (the steadier number on a shared machine); `peak_rss_mb` is the process's
peak resident memory. With `--kmeans-rows N` it also times image k-means on N x
`--dim` float32 vectors (`kmeans_s`: fit on a seeded subsample of `--kmeans-points-per-cluster`
per cluster, then chunked assignment of all N), as `balanced_subset`'s upstream runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.balance import clusters as clusters_core
from realsyn_assets.core.balance import sampling
from realsyn_assets.core.io import write_table
from realsyn_assets.core.retrieval.kmeans import IMAGES_PER_CLUSTER, n_clusters_for


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realsyn bench balance", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="candidate image-text pairs")
    p.add_argument("--images-per-cluster", type=int, default=IMAGES_PER_CLUSTER)
    p.add_argument(
        "--cap-rule",
        choices=[sampling.PAPER_FRACTION, sampling.PAPER_CAP],
        default=sampling.PAPER_FRACTION,
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="folder for the parquet files (default: a temp dir)")
    p.add_argument("--kmeans-rows", type=int, default=0, help="also time k-means on N vectors")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument(
        "--kmeans-points-per-cluster", type=int, default=clusters_core.TRAIN_POINTS_PER_CLUSTER
    )
    p.add_argument("--kmeans-iters", type=int, default=20)
    return p


def synthetic_pairs(rows: int, per_cluster: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """(pairs table with image_id, shard, syn_score; cluster id per pair) with skewed sizes."""
    rng = np.random.default_rng(seed)
    k = n_clusters_for(rows, per_cluster)
    weights = rng.lognormal(0.0, 1.2, k)
    sizes = np.floor(weights / weights.sum() * rows).astype(np.int64)
    sizes[: rows - int(sizes.sum())] += 1  # sum exactly `rows`
    labels = rng.permutation(np.repeat(np.arange(k, dtype=np.int64), sizes))
    sims = rng.normal(0.56, 0.04, rows).astype(np.float32)
    ids = pa.array(np.arange(rows, dtype=np.int64)).cast(pa.string())
    shard = pa.array(np.arange(rows, dtype=np.int64) // 100_000).cast(pa.string())
    table = pa.table(
        {
            "image_id": pc.binary_join_element_wise("img", ids, "_"),
            "shard": pc.binary_join_element_wise("shard", shard, "-"),
            "syn_score": sims,
        }
    )
    return table, labels


def run_balance(args: argparse.Namespace, out_dir: str) -> dict:
    pairs, labels = synthetic_pairs(args.rows, args.images_per_cluster, args.seed)
    t0, cpu0 = time.perf_counter(), time.process_time()
    sims = clusters_core.pair_similarities(pairs)
    low, high, _ = sampling.choose_window(sims, (-1.0, -1.0), "synthetic", "")
    in_window = sampling.cosine_window_mask(sims, low, high)
    assignments = pairs.append_column("in_window", pa.array(in_window)).append_column(
        "cluster", pa.array(np.where(in_window, labels, -1))
    )
    t1 = time.perf_counter()
    chosen = sampling.select_scales(assignments, rule=args.cap_rule, seed=args.seed)
    t2 = time.perf_counter()
    columns = ["image_id", "shard", "cluster", "syn_score"]
    for scale, sel in chosen.items():
        rows = assignments.select(columns).take(pa.array(sel.indices))
        write_table(rows, os.path.join(out_dir, scale, "realsyn.parquet"))
    t3 = time.perf_counter()
    first = next(iter(chosen.values()))
    return {
        "rows": args.rows,
        "candidate_pairs": first.candidate_pairs,
        "clusters": first.clusters,
        "cap_rule": args.cap_rule,
        "scales": {
            s: {
                "cap": sel.cap,
                "samples": int(sel.indices.size),
                "target_share": round(sel.target_share, 5),
                "achieved_share": round(sel.achieved_share, 5),
            }
            for s, sel in chosen.items()
        },
        "window_s": round(t1 - t0, 3),
        "caps_s": round(t2 - t1, 3),
        "export_s": round(t3 - t2, 3),
        "seconds": round(t3 - t0, 3),
        "cpu_s": round(time.process_time() - cpu0, 3),
    }


def run_kmeans(args: argparse.Namespace) -> dict:
    """Image k-means on clustered synthetic unit vectors, as image_clusters runs it."""
    n, d = args.kmeans_rows, args.dim
    rng = np.random.default_rng(args.seed)
    k = n_clusters_for(n, args.images_per_cluster)
    centres = rng.standard_normal((k, d), dtype=np.float32)
    vectors = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65_536):
        stop = min(start + 65_536, n)
        block = centres[rng.integers(0, k, stop - start)]
        block += rng.standard_normal(block.shape, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[start:stop] = block
    sims = np.full(n, 0.5, dtype=np.float32)
    t0, cpu0 = time.perf_counter(), time.process_time()
    found = clusters_core.cluster_window(
        vectors,
        np.arange(n),
        sims,
        (0.0, 1.0),
        k,
        args.images_per_cluster,
        args.seed,
        train_points_per_cluster=args.kmeans_points_per_cluster,
        niter=args.kmeans_iters,
    )
    return {
        "kmeans_rows": n,
        "kmeans_dim": d,
        "kmeans_clusters": k,
        "kmeans_train_points": found.train_points,
        "kmeans_iters": args.kmeans_iters,
        "kmeans_s": round(time.perf_counter() - t0, 3),
        "kmeans_cpu_s": round(time.process_time() - cpu0, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_dir = args.out or tempfile.mkdtemp(prefix="bench_balance_")
    try:
        result = run_balance(args, out_dir)
        if args.kmeans_rows:
            result.update(run_kmeans(args))
    finally:
        if not args.out:
            shutil.rmtree(out_dir, ignore_errors=True)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["load_avg"] = round(os.getloadavg()[0], 2)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
