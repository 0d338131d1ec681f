"""balance: image-text cosine window, image k-means, per-cluster caps per scale (paper §3.3)."""

import dagster as dg
import pydantic

from realsyn_assets.assets._checks import Result, check_result
from realsyn_assets.assets._common import png_metadata, stage_metadata
from realsyn_assets.core.balance import clusters as clusters_core
from realsyn_assets.core.balance import export as export_core
from realsyn_assets.core.balance import sampling as balance_core
from realsyn_assets.core.balance import subset as subset_core
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.core.retrieval import kmeans as kmeans_core
from realsyn_assets.names import CORPUS, Asset, Group
from realsyn_assets.names import BalancedSubsetMetrics as BM
from realsyn_assets.names import ImageClustersMetrics as CM
from realsyn_assets.partitions import ALL_SHARDS, scale_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)

ASSIGNMENTS = "assignments.parquet"
SUBSET_FILE = "realsyn.parquet"
DATA_CARD = "DATA_CARD.md"


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
    seed: int = pydantic.Field(0, description="k-means seed.")


class BalanceConfig(dg.Config):
    seed: int = pydantic.Field(
        0, description="Seed of each cluster's random order (the same order at every scale)."
    )
    eval_fraction: float = pydantic.Field(
        0.05, description="Share held out (by image-id hash) for clip_evaluation."
    )
    min_eval_images: int = pydantic.Field(
        16, description="Images held out at least, so small subsets still get an eval set."
    )
    samples_per_tar: int = pydantic.Field(1000, description="Samples per WebDataset tar shard.")


@dg.asset(
    group_name=Group.BALANCE,
    deps=[
        dg.AssetDep(Asset.SYNTHETIC_TEXTS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.IMAGE_EMBEDDINGS, partition_mapping=ALL_SHARDS),
    ],
    description="Semantic balance, step 1-2: drop pairs whose image-synthetic-text cosine is "
    "outside the window (paper 0.51-0.61 for EVA02-CLIP; calibrated to keep the paper's 85% for "
    "other encoders), then k-means over the kept image embeddings (~168 images per cluster).",
)
def image_clusters(
    config: ImageClusterConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    syn = storage.read_shards(Asset.SYNTHETIC_TEXTS, columns=["image_id", "shard", "syn_score"])
    rows, all_vecs = vectors.shard_matrix("images", sorted(set(syn.column("shard").to_pylist())))
    sims = clusters_core.pair_similarities(syn)
    low, high, how = balance_core.choose_window(
        sims, (config.window_low, config.window_high), encoder.model_name, encoder.pretrained
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
        )
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    out = clusters_core.assignments(syn, found)
    path = write_table(out, storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS)
    counts = {
        CM.PAIRS_IN: len(sims),
        CM.PAIRS_IN_WINDOW: int(found.in_window.sum()),
        CM.WINDOW_LOW: float(low),
        CM.WINDOW_HIGH: float(high),
        CM.CLUSTERS: found.n_clusters,
        CM.CLUSTER_GINI: float(found.size_stats.get("gini", 0.0)),
        CM.MAX_CLUSTER_SIZE: float(found.size_stats.get("max", 0)),
    }
    rejected = {"outside_cosine_window": int((~found.in_window).sum())}
    meta = stage_metadata(metrics, Asset.IMAGE_CLUSTERS, CORPUS, counts, rejected, out, path)
    meta["window_source"] = how
    meta["cosine_histogram"] = png_metadata(clusters_core.cosine_histogram(sims, low, high))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name=Group.BALANCE,
    partitions_def=scale_partitions,
    deps=[
        Asset.IMAGE_CLUSTERS,
        dg.AssetDep(Asset.RETRIEVED_TEXTS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.SYNTHETIC_TEXTS, partition_mapping=ALL_SHARDS),
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
    assignments = read_table(storage.layout.asset_dir(Asset.IMAGE_CLUSTERS) / ASSIGNMENTS)
    selection = balance_core.select_balanced(assignments, cap, seed=config.seed)
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
    tars = export_core.write_webdataset(
        table,
        out_dir / "webdataset",
        samples_per_shard=config.samples_per_tar,
        image_root=storage.layout.root,
    )
    stats = {
        BM.SAMPLES: table.num_rows,
        BM.EXPECTED_SAMPLES: selection.expected_samples,
        BM.CAP_PER_CLUSTER: cap,
        BM.CLUSTERS: selection.clusters,
        BM.CANDIDATE_PAIRS: selection.candidate_pairs,
        BM.TRAIN_SAMPLES: subset_core.split_size(table, subset_core.TRAIN_SPLIT),
        BM.EVAL_SAMPLES: subset_core.split_size(table, subset_core.EVAL_SPLIT),
        BM.WEBDATASET_SHARDS: len(tars),
    }
    export_core.write_data_card(
        out_dir / DATA_CARD,
        scale=scale,
        stats={
            **stats,
            "encoder": encoder.get().identity,
            "note": "per-cluster caps are the paper's; cluster count scaled by the paper's ratio",
        },
        columns=table.column_names,
    )
    meta = stage_metadata(metrics, Asset.BALANCED_SUBSET, scale, stats, None, table, parquet)
    meta["data_card"] = dg.MetadataValue.path(str(out_dir / DATA_CARD))
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(asset=Asset.IMAGE_CLUSTERS, description="The cosine window keeps 50-100% of pairs.")
def cosine_window_sane(metrics: MetricsResource) -> Result:
    counts = metrics.counts(Asset.IMAGE_CLUSTERS, CORPUS)
    n, kept = counts.get(CM.PAIRS_IN, 0), counts.get(CM.PAIRS_IN_WINDOW, 0)
    frac = kept / n if n else 0.0
    return check_result(
        0.5 <= frac <= 1.0 and counts.get(CM.CLUSTERS, 0) > 0,
        f"{frac:.1%} of {int(n)} pairs in the window",
        kept_fraction=float(frac),
    )


@dg.asset_check(
    asset=Asset.BALANCED_SUBSET,
    partitions_def=scale_partitions,
    description="Subset size = the cap rule's expectation; caps respected; ids unique.",
)
def subset_size_within_target(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> Result:
    import duckdb

    scale = context.partition_key
    counts = metrics.counts(Asset.BALANCED_SUBSET, scale)
    path = storage.layout.asset_dir(Asset.BALANCED_SUBSET) / scale / SUBSET_FILE
    con = duckdb.connect()
    n, distinct, biggest = con.execute(
        "SELECT count(*), count(DISTINCT image_id), "
        "(SELECT max(c) FROM (SELECT count(*) c FROM read_parquet(?) GROUP BY cluster)) "
        "FROM read_parquet(?)",
        [str(path), str(path)],
    ).fetchone()
    con.close()
    cap = counts.get(BM.CAP_PER_CLUSTER, 0)
    expected = counts.get(BM.EXPECTED_SAMPLES)
    ok = n == expected and n == distinct and biggest <= cap and n > 0
    return check_result(
        ok,
        f"{n} samples (expected {int(counts.get(BM.EXPECTED_SAMPLES, -1))}), "
        f"largest cluster {biggest} <= cap {int(cap)}",
        samples=int(n),
    )
