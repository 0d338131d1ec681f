"""balance: image-text cosine window, image k-means, per-cluster caps per scale (paper §3.3)."""

import hashlib

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.assets._checks import Result, check_result
from realsyn_assets.assets._common import png_metadata, stage_metadata
from realsyn_assets.core.balance import export as export_core
from realsyn_assets.core.balance import sampling as balance_core
from realsyn_assets.core.io import read_table
from realsyn_assets.core.retrieval import kmeans as kmeans_core
from realsyn_assets.partitions import ALL_SHARDS, scale_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)

PAPER_WINDOW_ENCODERS = ("EVA02-E-14-plus",)  # the encoder the 0.51-0.61 window was set for


class ImageClusterConfig(dg.Config):
    images_per_cluster: int = kmeans_core.IMAGES_PER_CLUSTER  # paper: 168.3M / 1M ~ 168
    n_clusters: int = 0  # 0 = derive from images_per_cluster
    window_low: float = -1.0  # < 0 = paper window for EVA02-E-14-plus, else calibrated
    window_high: float = -1.0
    seed: int = 0


class BalanceConfig(dg.Config):
    seed: int = 0
    eval_fraction: float = 0.05  # held out (by image-id hash) for clip_evaluation
    min_eval_images: int = 16
    samples_per_tar: int = 1000


def eval_split(image_ids: list[str], fraction: float, min_count: int = 16) -> list[str]:
    """Deterministic held-out split by id hash: the same image is held out at every scale.

    At least `min_count` images (the lowest hashes) are held out so small subsets still get a
    usable evaluation set.
    """

    def bucket(iid: str) -> float:
        return int(hashlib.sha1(iid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    buckets = [bucket(i) for i in image_ids]
    cutoff = sorted(buckets)[min(min_count, len(buckets)) - 1] if buckets else 0.0
    return ["eval" if b < fraction or b <= cutoff else "train" for b in buckets]


@dg.asset(
    group_name="balance",
    deps=[
        dg.AssetDep("synthetic_texts", partition_mapping=ALL_SHARDS),
        dg.AssetDep("image_embeddings", partition_mapping=ALL_SHARDS),
    ],
    description="Semantic balance, step 1-2: drop pairs whose image-synthetic-text cosine is "
    "outside the window (paper 0.51-0.61 for EVA02-CLIP; calibrated to keep the paper's 85% for "
    "other encoders), then k-means over the kept image embeddings (~168 images per cluster).",
)
def image_clusters(
    context: dg.AssetExecutionContext,
    config: ImageClusterConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    syn = storage.read_shards("synthetic_texts", columns=["image_id", "shard", "syn_score"])
    shards = sorted(set(syn.column("shard").to_pylist()))
    rows, all_vecs = vectors.shard_matrix("images", shards)
    row_of = {
        (s, i): r
        for r, (s, i) in enumerate(
            zip(rows.column("shard").to_pylist(), rows.column("image_id").to_pylist(), strict=True)
        )
    }
    idx = np.array(
        [
            row_of[(s, i)]
            for s, i in zip(
                syn.column("shard").to_pylist(), syn.column("image_id").to_pylist(), strict=True
            )
        ],
        dtype=np.int64,
    )
    sims = np.asarray(syn.column("syn_score").to_numpy(zero_copy_only=False), dtype=np.float32)
    if config.window_low >= 0 and config.window_high >= 0:
        low, high, how = config.window_low, config.window_high, "configured"
    elif encoder.model_name in PAPER_WINDOW_ENCODERS and encoder.pretrained:
        (low, high), how = balance_core.COSINE_WINDOW, "paper"
    else:
        low, high = balance_core.calibrate_window(sims)
        how = "calibrated"
    in_window = balance_core.cosine_window_mask(sims, low, high)
    kept_vecs = all_vecs[idx[in_window]]
    if len(kept_vecs) == 0:
        raise dg.Failure("no image-text pair inside the cosine window")
    k = config.n_clusters or kmeans_core.n_clusters_for(len(kept_vecs), config.images_per_cluster)
    result = kmeans_core.train_kmeans(kept_vecs, k, seed=config.seed)
    labels_kept, _ = kmeans_core.assign(kept_vecs, result.centroids)
    labels = np.full(len(sims), -1, dtype=np.int64)
    labels[in_window] = labels_kept
    out = syn.append_column("in_window", pa.array(in_window)).append_column(
        "cluster", pa.array(labels)
    )
    path = storage.layout.asset_dir("image_clusters") / "assignments.parquet"
    from realsyn_assets.core.io import write_table

    write_table(out, path)
    stats = balance_core.cluster_size_stats(labels_kept)
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.hist(sims, bins=40)
    ax.axvline(low, color="r")
    ax.axvline(high, color="r")
    ax.set_xlabel("image - synthetic text cosine")
    counts = {
        "pairs_in": len(sims),
        "pairs_in_window": int(in_window.sum()),
        "window_low": float(low),
        "window_high": float(high),
        "clusters": k,
        "cluster_gini": float(stats.get("gini", 0.0)),
        "max_cluster_size": float(stats.get("max", 0)),
    }
    meta = stage_metadata(
        metrics,
        "image_clusters",
        "__all__",
        counts,
        {"outside_cosine_window": int((~in_window).sum())},
        out,
        path,
    )
    meta["window_source"] = how
    meta["cosine_histogram"] = png_metadata(fig)
    return dg.MaterializeResult(metadata=meta)


def _composite(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table.column("shard"), table.column("image_id"), "\x1f")


def align(table: pa.Table, keys: pa.Table, name: str) -> pa.Table:
    """Rows of `table` in the order of `keys`, matched on (shard, image_id)."""
    index = pc.index_in(_composite(keys), value_set=_composite(table))
    if index.null_count:
        raise dg.Failure(
            f"{index.null_count} selected images have no {name} row: "
            f"rematerialize {name} for all shards"
        )
    return table.take(index)


def subset_rows(storage: StorageResource, assignments: pa.Table, selected: np.ndarray) -> pa.Table:
    """The selected pairs with their retrieved and synthetic texts and full lineage."""
    chosen = assignments.take(pa.array(selected, pa.int64())).select(
        ["image_id", "shard", "cluster", "syn_score"]
    )
    chosen = chosen.take(
        pc.sort_indices(chosen, [("image_id", "ascending"), ("shard", "ascending")])
    )
    retrieved = align(storage.read_shards("retrieved_texts"), chosen, "retrieved_texts")
    synthetic = align(
        storage.read_shards("synthetic_texts", columns=["image_id", "shard", "syn_text", "tags"]),
        chosen,
        "synthetic_texts",
    )
    sources = align(
        storage.read_shards("extracted_images", columns=["image_id", "shard", "source_ref"]),
        chosen,
        "extracted_images",
    )
    renamed = {"doc_id": "image_doc_id", "position": "image_position", "path": "image_path"}
    table = chosen
    for name in retrieved.column_names:
        if name not in ("image_id", "shard"):
            table = table.append_column(renamed.get(name, name), retrieved.column(name))
    table = table.append_column("syn_text", synthetic.column("syn_text"))
    table = table.append_column("tags", synthetic.column("tags"))
    return table.append_column("raw_image_url", sources.column("source_ref"))


@dg.asset(
    group_name="balance",
    partitions_def=scale_partitions,
    deps=[
        "image_clusters",
        dg.AssetDep("retrieved_texts", partition_mapping=ALL_SHARDS),
        dg.AssetDep("synthetic_texts", partition_mapping=ALL_SHARDS),
    ],
    description="Semantic balance, step 3: at most 20 / 35 / 180 random pairs per image cluster "
    "for 15M / 30M / 100M (nested subsets), exported in the RealSyn schema (parquet + "
    "webdataset tars + data card) with full lineage.",
)
def balanced_subset(
    context: dg.AssetExecutionContext,
    config: BalanceConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    scale = context.partition_key
    cap = balance_core.SCALE_CAPS[scale]
    assignments = read_table(storage.layout.asset_dir("image_clusters") / "assignments.parquet")
    in_window = np.asarray(assignments.column("in_window").to_numpy(zero_copy_only=False))
    candidates = np.flatnonzero(in_window)
    labels = np.asarray(assignments.column("cluster").to_numpy())[candidates]
    selected = candidates[balance_core.cap_per_cluster(labels, cap, seed=config.seed)]
    table = subset_rows(storage, assignments, selected)
    table = table.append_column(
        "split",
        pa.array(
            eval_split(
                table.column("image_id").to_pylist(), config.eval_fraction, config.min_eval_images
            )
        ),
    )
    out_dir = storage.layout.asset_dir("balanced_subset") / scale
    parquet = export_core.write_parquet_atomic(table, out_dir / "realsyn.parquet")
    tars = export_core.write_webdataset(
        table, out_dir / "webdataset", samples_per_shard=config.samples_per_tar
    )
    sizes = np.bincount(labels[labels >= 0]) if len(labels) else np.zeros(1, np.int64)
    expected = int(np.minimum(sizes, cap).sum())
    stats = {
        "samples": table.num_rows,
        "expected_samples": expected,
        "cap_per_cluster": cap,
        "clusters": int((sizes > 0).sum()),
        "candidate_pairs": len(candidates),
        "train_samples": int(pc.sum(pc.equal(table.column("split"), "train")).as_py() or 0),
        "eval_samples": int(pc.sum(pc.equal(table.column("split"), "eval")).as_py() or 0),
        "webdataset_shards": len(tars),
    }
    export_core.write_data_card(
        out_dir / "DATA_CARD.md",
        scale=scale,
        stats={
            **stats,
            "encoder": encoder.get().identity,
            "note": "per-cluster caps are the paper's; cluster count scaled by the paper's ratio",
        },
        columns=table.column_names,
    )
    meta = stage_metadata(metrics, "balanced_subset", scale, stats, None, table, parquet)
    meta["data_card"] = dg.MetadataValue.path(str(out_dir / "DATA_CARD.md"))
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(asset="image_clusters", description="The cosine window keeps 50-100% of pairs.")
def cosine_window_sane(metrics: MetricsResource) -> Result:
    counts = metrics.counts("image_clusters", "__all__")
    n, kept = counts.get("pairs_in", 0), counts.get("pairs_in_window", 0)
    frac = kept / n if n else 0.0
    return check_result(
        0.5 <= frac <= 1.0 and counts.get("clusters", 0) > 0,
        f"{frac:.1%} of {int(n)} pairs in the window",
        kept_fraction=float(frac),
    )


@dg.asset_check(
    asset="balanced_subset",
    partitions_def=scale_partitions,
    description="Subset size = the cap rule's expectation; caps respected; ids unique.",
)
def subset_size_within_target(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> Result:
    import duckdb

    scale = context.partition_key
    counts = metrics.counts("balanced_subset", scale)
    path = storage.layout.asset_dir("balanced_subset") / scale / "realsyn.parquet"
    con = duckdb.connect()
    n, distinct, biggest = con.execute(
        "SELECT count(*), count(DISTINCT image_id), "
        "(SELECT max(c) FROM (SELECT count(*) c FROM read_parquet(?) GROUP BY cluster)) "
        "FROM read_parquet(?)",
        [str(path), str(path)],
    ).fetchone()
    con.close()
    cap = counts.get("cap_per_cluster", 0)
    ok = n == counts.get("expected_samples") and n == distinct and biggest <= cap and n > 0
    return check_result(
        ok,
        f"{n} samples (expected {int(counts.get('expected_samples', -1))}), "
        f"largest cluster {biggest} <= cap {int(cap)}",
        samples=int(n),
    )
