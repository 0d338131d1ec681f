"""balance: image-text cosine window, image k-means, per-cluster caps per scale (paper §3.3).

Files beside each scale's `realsyn.parquet` (data/balanced_subset/<scale>/), for readers such as
the data card:
- `SELECTION_FILE` (JSON): scale, cap, cap_rule, seed, target_share, achieved_share, samples,
  candidate_pairs, clusters, clusters_version (sha256 of the image_clusters assignments file the
  subset was drawn from);
- `CLUSTER_SIZES_FILE` (npz): int64 arrays `before` (in-window pairs per cluster id) and
  `after` (selected pairs per cluster id).
"""

import json
import typing

import dagster as dg
import numpy as np
import pyarrow.compute as pc
import pydantic

from realsyn_assets.assets._checks import Result, check_result
from realsyn_assets.assets._common import code_version, png_metadata, stage_metadata
from realsyn_assets.core.balance import audit as audit_core
from realsyn_assets.core.balance import clusters as clusters_core
from realsyn_assets.core.balance import sampling as balance_core
from realsyn_assets.core.balance import subset as subset_core
from realsyn_assets.core.balance.files import (
    ASSIGNMENTS,
    CLUSTER_SIZES_FILE,
    SELECTION_FILE,
    SUBSET_FILE,
)
from realsyn_assets.core.io import atomic_path, atomic_write_bytes, read_table, write_table
from realsyn_assets.core.retrieval import kmeans as kmeans_core
from realsyn_assets.names import CORPUS, Asset, Group, Kind
from realsyn_assets.names import BalancedSubsetMetadata as BD
from realsyn_assets.names import BalancedSubsetMetrics as BM
from realsyn_assets.names import ImageClustersMetadata as CD
from realsyn_assets.names import ImageClustersMetrics as CM
from realsyn_assets.partitions import ALL_SHARDS, SCALES, scale_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)

STALE_SUBSET = "image_clusters changed since this subset was drawn: re-materialize all scales"


class ImageClusterConfig(dg.Config):
    images_per_cluster: int = pydantic.Field(
        kmeans_core.IMAGES_PER_CLUSTER,
        description="Images per k-means cluster when n_clusters is 0 (paper: 168.3M / 1M ~ 168).",
    )
    n_clusters: int = pydantic.Field(
        0, description="Number of image clusters; 0 derives it from images_per_cluster."
    )
    window_low: float = pydantic.Field(
        -1.0,
        description="Lower cosine bound; < 0 uses the paper's window for EVA02-E-14-plus, "
        "else a window calibrated to keep the paper's fraction of pairs.",
    )
    window_high: float = pydantic.Field(
        -1.0, description="Upper cosine bound; < 0 as for window_low."
    )
    seed: int = pydantic.Field(0, description="k-means seed (also of its training subsample).")
    train_points_per_cluster: int = pydantic.Field(
        clusters_core.TRAIN_POINTS_PER_CLUSTER,
        description="k-means is fit on at most this many in-window images per cluster (a seeded "
        "subsample); every in-window image is then assigned in chunks.",
    )


class BalanceConfig(dg.Config):
    cap_rule: typing.Literal["paper_fraction", "paper_cap"] = pydantic.Field(
        balance_core.PAPER_FRACTION,
        description="paper_fraction: per scale, the per-cluster cap whose capped total is closest "
        "to the paper's share of the pool (15.24 / 30.33 / 100.86 of 168.3M); paper_cap: the "
        "paper's fixed caps 20 / 35 / 180. Use the same rule and seed for every scale.",
    )
    seed: int = pydantic.Field(
        0, description="Seed of each cluster's random order (the same order at every scale)."
    )
    eval_fraction: float = pydantic.Field(
        0.05, description="Share held out (by image-id hash) for clip_evaluation."
    )
    min_eval_images: int = pydantic.Field(
        16, description="Images held out at least, so small subsets still get an eval set."
    )


@dg.asset(
    group_name=Group.BALANCE,
    deps=[
        dg.AssetDep(Asset.SYNTHETIC_TEXTS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.IMAGE_EMBEDDINGS, partition_mapping=ALL_SHARDS),
    ],
    code_version=code_version("1", ImageClusterConfig),
    kinds={Kind.PARQUET},
    description="Semantic balance, steps 1-2 (paper §3.3), over every shard: each image-"
    "synthetic text pair is kept when its cosine lies inside a window (the paper's 0.51-0.61 "
    "for EVA02-CLIP E/14-plus; for other encoders a window calibrated to keep the paper's 85% "
    "of pairs), then the kept images' embeddings (LanceDB `images`) are clustered by k-means "
    "(~168 images per cluster; fit on a seeded subsample, assigned in chunks). Stored as "
    "data/image_clusters/assignments.parquet (image_id, shard, syn_score, in_window, cluster). "
    "A rerun rewrites the file; the same inputs and seed give the same bytes, and its sha256 is "
    "the data version the balanced subsets are pinned to.",
)
def image_clusters(
    config: ImageClusterConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    syn = storage.read_shards(Asset.SYNTHETIC_TEXTS, columns=["image_id", "shard", "syn_score"])
    shards = sorted(pc.unique(syn.column("shard")).to_pylist())
    rows, all_vecs = vectors.shard_matrix("images", shards)
    sims = clusters_core.pair_similarities(syn)
    window = (config.window_low, config.window_high)
    low, high, how = balance_core.choose_window(
        sims, window, encoder.model_name, encoder.configured_weights()
    )
    try:
        found = clusters_core.cluster_window(
            all_vecs,
            clusters_core.pair_rows(rows, syn),
            sims,
            (low, high),
            config.n_clusters,
            config.images_per_cluster,
            config.seed,
            train_points_per_cluster=config.train_points_per_cluster,
        )
    except (ValueError, KeyError) as exc:
        raise dg.Failure(str(exc)) from exc
    out = clusters_core.assignments(syn, found)
    path = write_table(out, storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS)
    version = clusters_core.content_version(path)
    counts = {
        CM.PAIRS_IN: len(sims),
        CM.PAIRS_IN_WINDOW: int(found.in_window.sum()),
        CM.WINDOW_LOW: float(low),
        CM.WINDOW_HIGH: float(high),
        CM.CLUSTERS: found.n_clusters,
        CM.CLUSTER_GINI: float(found.size_stats.get("gini", 0.0)),
        CM.MAX_CLUSTER_SIZE: float(found.size_stats.get("max", 0)),
        CM.TRAIN_POINTS: found.train_points,
        CM.WINDOW_CALIBRATED: int(how == "calibrated"),
    }
    rejected = {"outside_cosine_window": int((~found.in_window).sum())}
    meta = stage_metadata(metrics, Asset.IMAGE_CLUSTERS, CORPUS, counts, rejected, out, path)
    meta["window_source"] = how
    meta[CD.ENCODER] = encoder.get().identity
    meta["cosine_histogram"] = png_metadata(clusters_core.cosine_histogram(sims, low, high))
    meta[CD.VERSION] = version
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))


@dg.asset(
    group_name=Group.BALANCE,
    partitions_def=scale_partitions,
    deps=[
        Asset.IMAGE_CLUSTERS,
        dg.AssetDep(Asset.RETRIEVED_TEXTS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.SYNTHETIC_TEXTS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.EXTRACTED_IMAGES, partition_mapping=ALL_SHARDS),
    ],
    code_version=code_version("1", BalanceConfig),
    kinds={Kind.PARQUET},
    description="Semantic balance, step 3 (paper §3.3), one partition per scale: at most T "
    "random in-window pairs per image cluster, T solved per scale so the subset is the paper's "
    "share of the pool (9.06 / 18.02 / 59.93 % for 15M / 30M / 100M; or the paper's fixed caps "
    "20 / 35 / 180). All scales come from one seeded order, so 15M ⊂ 30M ⊂ 100M. Stored as "
    "data/balanced_subset/<scale>/realsyn.parquet in the RealSyn schema (image, text1-3, "
    "syn_text, lineage, train/eval split by image-id hash) with selection.json and "
    "cluster_sizes.npz beside it; the selection records the image_clusters version it was drawn "
    "from. A rerun redraws the same rows from the same assignments and seed; the parquet "
    "file's sha256 is the data version, so an unchanged redraw leaves training fresh.",
)
def balanced_subset(
    context: dg.AssetExecutionContext,
    config: BalanceConfig,
    storage: StorageResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    scale = context.partition_key
    assignments, version = _read_assignments(storage)
    selection = balance_core.select_balanced(assignments, scale, config.cap_rule, config.seed)
    try:
        table = subset_core.subset_rows(
            assignments,
            selection.indices,
            storage.read_shards(Asset.RETRIEVED_TEXTS),
            storage.read_shards(Asset.SYNTHETIC_TEXTS, columns=subset_core.SYNTHETIC_COLUMNS),
            storage.read_shards(Asset.EXTRACTED_IMAGES, columns=subset_core.SOURCE_COLUMNS),
        )
    except subset_core.MissingRowsError as exc:
        raise dg.Failure(str(exc)) from exc
    table = subset_core.with_split(table, config.eval_fraction, config.min_eval_images)
    out_dir = storage.layout.asset_dir(Asset.BALANCED_SUBSET) / scale
    parquet = write_table(table, out_dir / SUBSET_FILE)
    _write_selection(out_dir, scale, selection, version, config.seed)
    stats = {
        BM.SAMPLES: table.num_rows,
        BM.EXPECTED_SAMPLES: selection.expected_samples,
        BM.CAP_PER_CLUSTER: selection.cap,
        BM.TARGET_SHARE: float(selection.target_share),
        BM.ACHIEVED_SHARE: float(selection.achieved_share),
        BM.CLUSTERS: selection.clusters,
        BM.CANDIDATE_PAIRS: selection.candidate_pairs,
        BM.TRAIN_SAMPLES: subset_core.split_size(table, subset_core.TRAIN_SPLIT),
        BM.EVAL_SAMPLES: subset_core.split_size(table, subset_core.EVAL_SPLIT),
    }
    meta = stage_metadata(metrics, Asset.BALANCED_SUBSET, scale, stats, None, table, parquet)
    meta[BD.CAP_RULE] = selection.cap_rule
    meta[BD.CLUSTERS_VERSION] = version
    # the file's sha256: a redraw that writes the same rows leaves training fresh
    return dg.MaterializeResult(
        metadata=meta, data_version=dg.DataVersion(clusters_core.content_version(parquet))
    )


def _read_assignments(storage: StorageResource):
    """The image_clusters assignments table and its content version (sha256 of the file)."""
    path = storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS
    if not path.exists():
        raise dg.Failure(f"{path} is missing: materialize image_clusters first")
    version = clusters_core.content_version(path)
    return read_table(path), version


def _write_selection(out_dir, scale: str, selection, version: str, seed: int) -> None:
    """The selection sidecars (`SELECTION_FILE`, `CLUSTER_SIZES_FILE`) beside realsyn.parquet."""
    record = {
        "scale": scale,
        BM.CAP_PER_CLUSTER: selection.cap,
        BD.CAP_RULE: selection.cap_rule,
        "seed": seed,
        BM.TARGET_SHARE: selection.target_share,
        BM.ACHIEVED_SHARE: selection.achieved_share,
        BM.SAMPLES: int(selection.indices.size),
        BM.CANDIDATE_PAIRS: selection.candidate_pairs,
        BM.CLUSTERS: selection.clusters,
        BD.CLUSTERS_VERSION: version,
    }
    data = json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
    atomic_write_bytes(out_dir / SELECTION_FILE, data)
    with atomic_path(out_dir / CLUSTER_SIZES_FILE, suffix=".tmp.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, before=selection.sizes_before, after=selection.sizes_after)


def _drawn_record(storage: StorageResource, scale: str) -> dict:
    """The selection record `scale` was drawn with (`SELECTION_FILE`); empty when missing."""
    path = storage.layout.asset_dir(Asset.BALANCED_SUBSET) / scale / SELECTION_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _drawn_version(storage: StorageResource, scale: str) -> str | None:
    """The clusters version recorded when `scale` was drawn; None when it has no record."""
    return _drawn_record(storage, scale).get(BD.CLUSTERS_VERSION)


@dg.asset_check(
    asset=Asset.IMAGE_CLUSTERS,
    blocking=True,
    description="Recounts assignments.parquet against the recorded window: every in_window flag "
    "agrees with low <= syn_score <= high, in-window pairs have a cluster and the others none, "
    "the counts match the metrics (else ERROR). The window must keep the paper's share of pairs "
    f"({balance_core.PAPER_KEEP_FRACTION:.1%}) within {audit_core.KEEP_TOLERANCE:.0%} plus two "
    "pairs' rounding: a calibrated window that misses it (NaN or tied scores) is an ERROR, the "
    "paper's or a configured window that misses it a WARN (a deliberate choice).",
)
def cosine_window_sane(storage: StorageResource, metrics: MetricsResource) -> Result:
    return window_sane(storage, metrics)


def window_sane(storage: StorageResource, metrics: MetricsResource) -> Result:
    """The result of `cosine_window_sane`."""
    counts = metrics.counts(Asset.IMAGE_CLUSTERS, CORPUS)
    path = storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS
    if CM.WINDOW_LOW not in counts or CM.WINDOW_HIGH not in counts or not path.exists():
        return check_result(False, f"no image_clusters window recorded or no {path}")
    low, high = counts[CM.WINDOW_LOW], counts[CM.WINDOW_HIGH]
    table = read_table(path, columns=["syn_score", "in_window", "cluster"])
    audit = audit_core.window_audit(table, low, high, int(counts.get(CM.CLUSTERS, 0)))
    problems = [
        f"{name} {got} != recorded {int(want)}"
        for name, got, want in (
            ("pairs", audit.pairs, counts.get(CM.PAIRS_IN, -1)),
            ("in-window pairs", audit.in_window, counts.get(CM.PAIRS_IN_WINDOW, -1)),
        )
        if got != want
    ]
    problems += [f"{n} {what}" for n, what in _window_faults(audit) if n]
    calibrated = counts.get(CM.WINDOW_CALIBRATED, 1.0) >= 0.5  # unrecorded: judged strictly
    share_ok = audit_core.keeps_paper_share(audit)
    if not share_ok:
        problems.append(
            f"the {'calibrated' if calibrated else 'configured or paper'} window keeps "
            f"{audit.kept_fraction:.1%} of pairs, not the paper's "
            f"{balance_core.PAPER_KEEP_FRACTION:.1%}"
            + (f" ({audit.nan_scores} pairs have no finite syn_score)" if audit.nan_scores else "")
        )
    warn_only = share_ok is False and len(problems) == 1 and not calibrated
    return Result(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems)
        or f"window [{low:.4f}, {high:.4f}] keeps {audit.kept_fraction:.1%} of {audit.pairs} "
        "pairs; assignments agree with it",
        metadata={
            "kept_fraction": float(audit.kept_fraction),
            "paper_keep_fraction": float(balance_core.PAPER_KEEP_FRACTION),
            "tolerance": float(audit_core.keep_tolerance(audit.pairs)),
            "pairs": audit.pairs,
            "pairs_in_window": audit.in_window,
            "nan_scores": audit.nan_scores,
            "mismatched_rows": audit.mismatched,
            "bad_cluster_rows": audit.bad_clusters,
            "window_low": float(low),
            "window_high": float(high),
            "window_calibrated": bool(calibrated),
        },
    )


def _window_faults(audit: audit_core.WindowAudit) -> list[tuple[int, str]]:
    return [
        (audit.mismatched, "rows whose in_window flag disagrees with the window"),
        (audit.bad_clusters, "rows whose cluster id does not match their in_window flag"),
        (int(audit.in_window == 0), "no pair inside the window"),
    ]


@dg.asset_check(
    asset=Asset.BALANCED_SUBSET,
    partitions_def=scale_partitions,
    blocking=True,
    description="The subset's size against a target derived from the image_clusters "
    "assignments, not from the subset: paper_fraction: the paper's share of the in-window pool "
    f"(9.06 / 18.02 / 59.93 %) within {audit_core.SHARE_TOLERANCE:.0%} of the pool or the cap's "
    "granularity (half a pair per cluster); paper_cap: sum(min(cluster size, 20 / 35 / 180)) "
    "exactly. Also: the file holds the recorded row count, ids are unique, no cluster exceeds "
    "the cap.",
)
def subset_size_within_target(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> Result:
    return size_within_target(storage, metrics, context.partition_key)


def size_within_target(storage: StorageResource, metrics: MetricsResource, scale: str) -> Result:
    """The result of `subset_size_within_target` for one scale."""
    import duckdb

    counts = metrics.counts(Asset.BALANCED_SUBSET, scale)
    path = storage.layout.asset_dir(Asset.BALANCED_SUBSET) / scale / SUBSET_FILE
    pool_path = storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS
    rule = _drawn_record(storage, scale).get(BD.CAP_RULE)
    if not path.exists() or not pool_path.exists() or rule is None:
        return check_result(False, f"{scale}: subset, {SELECTION_FILE} or assignments missing")
    con = duckdb.connect()
    n, distinct, biggest = con.execute(
        "SELECT count(*), count(DISTINCT (shard, image_id)), "
        "(SELECT coalesce(max(c), 0) FROM (SELECT count(*) c FROM read_parquet(?) "
        "GROUP BY cluster)) FROM read_parquet(?)",
        [str(path), str(path)],
    ).fetchone()
    sizes = con.execute(
        "SELECT count(*) FROM read_parquet(?) WHERE in_window GROUP BY cluster", [str(pool_path)]
    ).fetchnumpy()
    con.close()
    target = audit_core.size_target(next(iter(sizes.values()), []), scale, rule)
    cap, recorded = counts.get(BM.CAP_PER_CLUSTER, 0), counts.get(BM.SAMPLES, -1)
    problems = [] if target.accepts(n) else [f"{n} samples, target {target.target:.1f}"]
    problems += [f"file has {n} rows, recorded {int(recorded)}"] if n != recorded else []
    problems += [f"{n - distinct} duplicate ids"] if n != distinct else []
    problems += [f"a cluster has {biggest} > cap {int(cap)}"] if biggest > cap else []
    problems += ["empty subset"] if n == 0 else []
    return check_result(
        not problems,
        "; ".join(problems)
        or f"{n} samples, target {target.target:.1f} ± {target.tolerance:.1f} ({rule}, pool "
        f"{target.pool} pairs in {target.clusters} clusters); largest cluster {biggest} <= cap "
        f"{int(cap)}",
        samples=int(n),
        target_samples=float(target.target),
        tolerance=float(target.tolerance),
        candidate_pairs=target.pool,
        recorded_samples=int(recorded),
        duplicate_ids=int(n - distinct),
        largest_cluster=int(biggest),
        cap_per_cluster=int(cap),
        cap_rule=str(rule),
    )


@dg.asset_check(
    asset=Asset.BALANCED_SUBSET,
    partitions_def=scale_partitions,
    blocking=True,
    description="The subset was drawn from the current image_clusters assignments (pinning).",
)
def subset_matches_clusters(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    scale = context.partition_key
    path = storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS
    current = clusters_core.content_version(path) if path.exists() else None
    drawn = _drawn_version(storage, scale)
    ok = drawn is not None and drawn == current
    if drawn is None:
        why = f"{scale} has no {SELECTION_FILE}: re-materialize all scales"
    else:
        why = "drawn from the current image_clusters" if ok else STALE_SUBSET
    return check_result(ok, why, drawn_version=str(drawn), current_version=str(current))


@dg.asset_check(
    asset=Asset.BALANCED_SUBSET,
    partitions_def=scale_partitions,
    blocking=True,
    description="Nesting: this scale contains the next smaller scale and is contained in the "
    "next larger one (15M ⊂ 30M ⊂ 100M), for neighbours drawn from the same image_clusters "
    "version (a neighbour drawn from another version fails its own subset_matches_clusters).",
)
def subsets_nested(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> Result:
    scale = context.partition_key
    folder = storage.layout.asset_dir(Asset.BALANCED_SUBSET)
    keys = ["shard", "image_id"]
    here = read_table(folder / scale / SUBSET_FILE, columns=keys)
    version, at = _drawn_version(storage, scale), SCALES.index(scale)
    missing, skipped = {}, []
    for other in SCALES[max(0, at - 1) : at] + SCALES[at + 1 : at + 2]:
        path = folder / other / SUBSET_FILE
        if not path.exists() or version is None or _drawn_version(storage, other) != version:
            skipped.append(other)
            continue
        rows = read_table(path, columns=keys)
        inner, outer = (rows, here) if SCALES.index(other) < at else (here, rows)
        missing[other] = subset_core.missing_from(outer, inner)
    bad = {k: v for k, v in missing.items() if v}
    description = (
        f"not nested: rows missing per neighbour scale {bad}; use one seed and cap_rule for "
        "all scales and re-materialize them"
        if bad
        else f"{scale} nested with {', '.join(missing) or 'no neighbour of the same version'}"
    )
    return check_result(
        not bad,
        description,
        missing_rows=sum(bad.values()),
        threshold=0,
        compared=", ".join(missing),
        skipped=", ".join(skipped),
    )
