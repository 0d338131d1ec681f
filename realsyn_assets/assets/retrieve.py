"""retrieve: sentence k-means and hierarchical image -> sentence retrieval (paper §3.2)."""

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from realsyn_assets.assets._checks import Result, check_result, shard_check, zero_rows_result
from realsyn_assets.assets._common import png_metadata, stage_metadata
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.core.retrieval import clustering, retrieved
from realsyn_assets.core.retrieval import kmeans as kmeans_core
from realsyn_assets.demo.hook import demo_scorer
from realsyn_assets.names import (
    CORPUS,
    Asset,
    Group,
    RetrievedTextsMetrics,
    SentenceClustersMetrics,
    SentenceDedupMetrics,
)
from realsyn_assets.partitions import ALL_SHARDS, shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource, VectorStoreResource
from realsyn_assets.resources.vectors import table_vectors


class SentenceClusterConfig(dg.Config):
    sentences_per_cluster: int = Field(
        kmeans_core.SENTENCES_PER_CLUSTER,
        description="Sentences per k-means cluster when n_clusters is 0 (paper: 0.84B sentences "
        "in 2M clusters, ~420 each).",
    )
    n_clusters: int = Field(
        0, description="Number of clusters; 0 = derive it from sentences_per_cluster."
    )
    niter: int = Field(20, description="k-means iterations.")
    seed: int = Field(0, description="Seed of the k-means initialisation.")
    recluster: bool = Field(
        False,
        description="False: keep the fitted centroids and only assign new sentences (drift is "
        "reported); True: fit k-means again on everything (what `recluster_sentences_job` and "
        "`realsyn recluster` set).",
    )
    drift_threshold: float = Field(
        kmeans_core.DRIFT_RECLUSTER_THRESHOLD,
        description="Relative drop of the new sentences' centroid similarity (vs the fit) above "
        "which re-clustering is reported as due.",
    )
    target_recall: float = Field(
        0.95,
        description="Adaptive probing: calibrate the centroid-score margin that reaches this "
        "recall@k against exact search on held-out images (probe.json); 0 = off.",
    )
    max_probe: int = Field(32, description="Most clusters one image may probe.")
    calibration_images: int = Field(
        500, description="Images (of the calibration half) used to calibrate the probe margin."
    )
    k: int = Field(3, description="Texts per image the probe margin is calibrated for.")


class RetrievalConfig(dg.Config):
    mode: retrieved.Mode = Field(
        "hierarchical",
        description="hierarchical: nearest sentence cluster first, then the best sentences in it "
        "(paper); exact: brute force over every sentence; in_document: only the image's own "
        "document (MMC4-style baseline).",
    )
    k: int = Field(3, description="Realistic texts retrieved per image (paper: 3).")
    n_probe: int = Field(
        1, description="Nearest clusters every image searches (paper: the single nearest)."
    )
    adaptive_probing: bool = Field(
        True,
        description="Also probe the clusters within the margin calibrated by sentence_clusters "
        "(probe.json); False = exactly the paper's n_probe clusters.",
    )
    recall_sample: int = Field(
        256, description="Images checked against exact search (the recall_at_k_vs_exact metric)."
    )


@dg.asset(
    group_name=Group.RETRIEVE,
    deps=[
        dg.AssetDep(Asset.SENTENCE_DEDUP, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.SENTENCE_EMBEDDINGS, partition_mapping=ALL_SHARDS),
        dg.AssetDep(Asset.IMAGE_EMBEDDINGS, partition_mapping=ALL_SHARDS),
    ],
    description="k-means over every kept sentence embedding (paper: 2M clusters for 0.84B "
    "sentences, ~420 per cluster; scaled by that ratio here) with each sentence's assignment: "
    "the first level of hierarchical retrieval. Fitted once, then new shards' sentences are "
    "assigned to the kept centroids and drift is measured; re-clustering is the explicit "
    "`recluster_sentences_job` (or `realsyn recluster`).",
)
def sentence_clusters(
    context: dg.AssetExecutionContext,
    config: SentenceClusterConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
) -> dg.MaterializeResult:
    dedup = storage.read_shards(Asset.SENTENCE_DEDUP, columns=["sentence_id", "shard", "kept"])
    shards = sorted(set(dedup.column("shard").to_pylist()))
    members, matrix = retrieved.kept_rows(
        *vectors.shard_matrix("sentences", shards), dedup, "sentence_id"
    )
    if members.num_rows == 0:
        raise dg.Failure("no kept sentences: nothing to cluster")
    out_dir = storage.layout.asset_dir(Asset.SENTENCE_CLUSTERS)
    keys = clustering.sentence_keys(members)
    run = clustering.cluster_sentences(
        keys,
        matrix,
        out_dir,
        recluster=config.recluster,
        n_clusters=config.n_clusters,
        sentences_per_cluster=config.sentences_per_cluster,
        seed=config.seed,
        niter=config.niter,
        drift_threshold=config.drift_threshold,
        log=context.log.info,
    )
    for reason in run.recluster_reasons:
        context.log.warning(f"re-clustering is due: {reason}")
    members, ordered, labels = clustering.save_clustering(out_dir, run, members, keys, matrix)
    images = vectors.read("images", columns=["image_id", "vector"])
    probing = clustering.calibrate_probing(
        images.column("image_id").to_pylist(),
        lambda rows: table_vectors(images.take(pa.array(rows))),
        ordered,
        run.centroids,
        labels,
        k=config.k,
        target_recall=config.target_recall,
        max_probe=config.max_probe,
        calibration_images=config.calibration_images,
    )
    clustering.save_probing(out_dir, probing)
    counts = _cluster_counts(run, members.num_rows, probing)
    path = out_dir / clustering.MEMBERS
    meta = stage_metadata(metrics, Asset.SENTENCE_CLUSTERS, CORPUS, counts, None, members, path)
    meta["cluster_sizes"] = png_metadata(_cluster_size_plot(run.sizes))
    meta["mode"] = run.mode
    meta["fit_reason"] = run.fit_reason
    meta["recluster_reasons"] = "; ".join(run.recluster_reasons) or "-"
    return dg.MaterializeResult(metadata=meta)


def _cluster_counts(run: clustering.SentenceClustering, n_sentences: int, probing: dict) -> dict:
    M = SentenceClustersMetrics
    sizes = run.sizes
    counts = {
        M.SENTENCES: n_sentences,
        M.CLUSTERS: run.state.n_clusters,
        M.ASSIGNED_NOW: run.n_new,
        M.FIT_SENTENCES: run.state.fit_sentences,
        M.MEAN_SIMILARITY: float(run.similarity.mean()),
        M.FIT_MEAN_SIMILARITY: run.state.fit_mean_similarity,
        M.DRIFT: run.drift,
        M.RECLUSTER_DUE: float(bool(run.recluster_reasons)),
        M.EMPTY_CLUSTERS: int((sizes == 0).sum()),
        M.MAX_CLUSTER_SIZE: int(sizes.max()),
        M.KMEANS_SECONDS: run.state.fit_seconds,
    }
    if probing["margin"] is not None:
        counts[M.PROBE_MARGIN] = float(probing["margin"])
        counts[M.CALIBRATION_RECALL_AT_3] = float(probing["sample_recall"])
        counts[M.CALIBRATION_RECALL_SINGLE_CLUSTER] = float(probing["sample_recall_single_cluster"])
        counts[M.MEAN_PROBES] = float(probing["mean_probes"])
    return counts


def _cluster_size_plot(sizes: np.ndarray):
    """Histogram of sentences per cluster (a matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.hist(sizes, bins=min(30, max(5, len(sizes))))
    ax.set_xlabel("sentences per cluster")
    ax.set_ylabel("clusters")
    return fig


@dg.asset(
    group_name=Group.RETRIEVE,
    partitions_def=shard_partitions,
    deps=[Asset.IMAGE_DEDUP, Asset.IMAGE_EMBEDDINGS, Asset.SENTENCE_CLUSTERS],
    description="For every kept image of one shard, the 3 most similar realistic sentences: "
    "nearest sentence cluster first, then the best sentences inside it (paper §3.2), with "
    "scores and source ids.",
)
def retrieved_texts(
    context: dg.AssetExecutionContext,
    config: RetrievalConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
) -> dg.MaterializeResult:
    M = RetrievedTextsMetrics
    home, key = storage.layout, context.partition_key
    dedup = read_table(
        home.partition_file(Asset.IMAGE_DEDUP, key), columns=["image_id", "shard", "kept"]
    )
    images, img_vecs = retrieved.kept_rows(
        *vectors.shard_matrix("images", [key]), dedup, "image_id"
    )
    store = clustering.StoredClustering.open(home.asset_dir(Asset.SENTENCE_CLUSTERS))
    result, probing = retrieved.retrieve_images(
        store,
        config.mode,
        images,
        img_vecs,
        k=config.k,
        n_probe=config.n_probe,
        adaptive_probing=config.adaptive_probing,
    )
    out = retrieved.retrieved_table(images, store.members, result, config.k)
    path = write_table(out, home.partition_file(Asset.RETRIEVED_TEXTS, key))
    counts = {
        M.IMAGES: out.num_rows,
        M.IMAGES_WITH_K_TEXTS: int((out.column("n_texts").to_numpy() == config.k).sum()),
        M.MEAN_TOP1_SCORE: retrieved.mean_top1_score(result, out.num_rows),
    }
    if out.num_rows and config.mode != "exact":
        counts[M.recall_vs_exact(config.k)] = retrieved.sampled_recall_against_exact(
            result,
            out.column("image_id").to_pylist(),
            img_vecs,
            store.vectors,
            config.k,
            config.recall_sample,
        )
    if config.mode == "hierarchical" and probing.get("margin") is not None:
        counts[M.PROBE_MARGIN] = float(probing["margin"])
    scorer = demo_scorer(home)
    if scorer is not None and out.num_rows:
        counts.update(
            scorer.retrieval_scores(out, img_vecs, store.members, store.vectors, config.k)
        )
    meta = stage_metadata(metrics, Asset.RETRIEVED_TEXTS, key, counts, None, out, path)
    meta["mode"] = config.mode
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(
    asset=Asset.SENTENCE_CLUSTERS,
    description="Every kept sentence is assigned; few empty clusters.",
)
def clusters_cover_sentences(metrics: MetricsResource) -> Result:
    M = SentenceClustersMetrics
    counts = metrics.counts(Asset.SENTENCE_CLUSTERS, CORPUS)
    kept = metrics.total(Asset.SENTENCE_DEDUP, SentenceDedupMetrics.SENTENCES_KEPT)
    k = counts.get(M.CLUSTERS, 0)
    empty = counts.get(M.EMPTY_CLUSTERS, 0)
    ok = counts.get(M.SENTENCES) == kept and k > 0 and empty <= 0.5 * k
    return check_result(
        ok,
        f"{int(counts.get(M.SENTENCES, 0))} assigned of {int(kept)} kept; "
        f"{int(empty)} of {int(k)} clusters empty",
        clusters=int(k),
    )


@dg.asset_check(
    asset=Asset.SENTENCE_CLUSTERS,
    description="The kept centroids still describe the sentences (drift and growth below the "
    "re-clustering limits); warns when `recluster_sentences_job` is due.",
)
def clusters_current(metrics: MetricsResource) -> Result:
    M = SentenceClustersMetrics
    counts = metrics.counts(Asset.SENTENCE_CLUSTERS, CORPUS)
    due = bool(counts.get(M.RECLUSTER_DUE, 0.0))
    drift = counts.get(M.DRIFT, 0.0)
    sentences, at_fit = counts.get(M.SENTENCES, 0), counts.get(M.FIT_SENTENCES, 0)
    return Result(
        passed=not due,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "re-clustering is due: run recluster_sentences_job (`realsyn recluster`)"
            if due
            else f"drift {drift:.3f}, {int(sentences)} sentences vs {int(at_fit)} at the fit"
        ),
        metadata={"drift": float(drift), "assigned_since_fit": int(sentences - at_fit)},
    )


@shard_check(
    Asset.RETRIEVED_TEXTS,
    "three_texts_per_image",
    "Every kept image has 3 distinct texts, scores descending.",
)
def three_texts_per_image(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return _three_texts_ok(storage, context.partition_key)


def _three_texts_ok(storage: StorageResource, key: str) -> Result:
    table = read_table(storage.layout.partition_file(Asset.RETRIEVED_TEXTS, key))
    if table.num_rows == 0:
        return zero_rows_result(f"{key} has no kept image to retrieve texts for", images=0)
    rows = table.select(
        ["text1_id", "text2_id", "text3_id", "text1_score", "text2_score", "text3_score"]
    ).to_pylist()
    missing = sum(1 for r in rows if None in (r["text1_id"], r["text2_id"], r["text3_id"]))
    repeated = sum(1 for r in rows if len({r["text1_id"], r["text2_id"], r["text3_id"]}) < 3)
    unordered = sum(
        1 for r in rows if not (r["text1_score"] >= r["text2_score"] >= r["text3_score"])
    )
    ok = not (missing or repeated or unordered)
    return check_result(
        ok,
        f"{missing} images lack texts, {repeated} repeat a text, {unordered} unordered",
        images=len(rows),
    )


# A guard against a broken index, not the target: adaptive probing is calibrated to 0.95 on
# other images, and even the paper's single cluster stays above it on the demo's few clusters
# (at a million sentences it falls well below; see docs/calibration.md).
MIN_RECALL_VS_EXACT = 0.8


@shard_check(
    Asset.RETRIEVED_TEXTS,
    "hierarchical_recall_vs_exact",
    "Hierarchical retrieval finds >= 80% of the exact top-3 on a sample of images.",
)
def hierarchical_recall_vs_exact(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    return _recall_ok(metrics, context.partition_key)


def _recall_ok(metrics: MetricsResource, key: str) -> Result:
    counts = metrics.counts(Asset.RETRIEVED_TEXTS, key)
    if counts and counts.get(RetrievedTextsMetrics.IMAGES, 0) == 0:
        return zero_rows_result(f"{key} has no kept image: no recall to measure", images=0)
    prefix = RetrievedTextsMetrics.RECALL_AT_PREFIX
    recall = next((v for k, v in counts.items() if k.startswith(prefix)), None)
    if recall is None:
        return check_result(True, "exact retrieval: nothing to compare")
    return check_result(
        recall >= MIN_RECALL_VS_EXACT,
        f"recall vs exact {recall:.3f} (minimum {MIN_RECALL_VS_EXACT})",
        recall=float(recall),
    )
