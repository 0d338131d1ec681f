"""retrieve: sentence k-means and hierarchical image -> sentence retrieval (paper §3.2)."""

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.assets._common import png_metadata, stage_metadata
from realsyn_assets.assets.embed import shard_vectors
from realsyn_assets.core import kmeans as kmeans_core
from realsyn_assets.core import retrieval as retrieval_core
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource, VectorStoreResource
from realsyn_assets.resources.storage import read_table, save_npy, write_table

ALL_SHARDS = dg.AllPartitionMapping()
MODES = ("hierarchical", "exact", "in_document")


class SentenceClusterConfig(dg.Config):
    sentences_per_cluster: int = kmeans_core.SENTENCES_PER_CLUSTER  # paper: 0.84B / 2M ~ 420
    n_clusters: int = 0  # 0 = derive from sentences_per_cluster
    niter: int = 20
    seed: int = 0


class RetrievalConfig(dg.Config):
    mode: str = "hierarchical"  # hierarchical (paper) | exact | in_document (MMC4-style)
    k: int = 3  # paper: 3 realistic texts per image
    n_probe: int = 1  # paper: the single nearest cluster
    recall_sample: int = 256  # images checked against exact search (recall@k metadata)


def kept_rows(table: pa.Table, dedup: pa.Table, id_column: str) -> pa.Table:
    """Rows of an embedding table whose (shard, id) survived dedup."""
    kept = dedup.filter(dedup.column("kept"))
    keys = pc.binary_join_element_wise(kept.column("shard"), kept.column(id_column), "\x1f")
    mine = pc.binary_join_element_wise(table.column("shard"), table.column(id_column), "\x1f")
    return table.filter(pc.is_in(mine, value_set=keys))


@dg.asset(
    group_name="retrieve",
    deps=[
        dg.AssetDep("sentence_dedup", partition_mapping=ALL_SHARDS),
        dg.AssetDep("sentence_embeddings", partition_mapping=ALL_SHARDS),
    ],
    description="k-means over every kept sentence embedding (paper: 2M clusters for 0.84B "
    "sentences, ~420 per cluster; scaled by that ratio here) with each sentence's assignment: "
    "the first level of hierarchical retrieval.",
)
def sentence_clusters(
    context: dg.AssetExecutionContext,
    config: SentenceClusterConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
) -> dg.MaterializeResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    home = storage.layout
    dedup = storage.read_shards("sentence_dedup", columns=["sentence_id", "shard", "kept"])
    table = vectors.read("sentences", shards=sorted(set(dedup.column("shard").to_pylist())))
    table = kept_rows(table, dedup, "sentence_id")
    members, matrix = table.drop_columns(["vector"]), shard_vectors_matrix(table)
    if members.num_rows == 0:
        raise dg.Failure("no kept sentences: nothing to cluster")
    k = config.n_clusters or kmeans_core.n_clusters_for(
        members.num_rows, config.sentences_per_cluster
    )
    context.log.info(f"k-means: {members.num_rows} sentences -> {k} clusters")
    result = kmeans_core.train_kmeans(matrix, k, seed=config.seed, niter=config.niter)
    labels, sims = kmeans_core.assign(matrix, result.centroids)
    members = members.append_column("cluster", pa.array(labels)).append_column(
        "similarity", pa.array(sims)
    )
    out_dir = home.asset_dir("sentence_clusters")
    save_npy(result.centroids.astype(np.float32), out_dir / "centroids.npy")
    save_npy(matrix, out_dir / "vectors.npy")
    write_table(members, out_dir / "members.parquet")

    sizes = np.bincount(labels, minlength=k)
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.hist(sizes, bins=min(30, max(5, k)))
    ax.set_xlabel("sentences per cluster")
    ax.set_ylabel("clusters")
    counts = {
        "sentences": members.num_rows,
        "clusters": k,
        "train_points": result.train_points,
        "objective": float(result.objective),
        "mean_similarity": float(sims.mean()),
        "empty_clusters": int((sizes == 0).sum()),
        "max_cluster_size": int(sizes.max()),
        "kmeans_seconds": float(result.seconds),
    }
    meta = stage_metadata(
        metrics, "sentence_clusters", "__all__", counts, None, members, out_dir / "members.parquet"
    )
    meta["cluster_sizes"] = png_metadata(fig)
    return dg.MaterializeResult(metadata=meta)


def recall_against_exact(
    result, image_vecs: np.ndarray, sentence_vecs: np.ndarray, k: int, sample: int
) -> float:
    """recall@k of this retrieval against brute force on a deterministic sample of images."""
    n = len(image_vecs)
    rows = np.linspace(0, n - 1, num=min(n, sample)).round().astype(np.int64)
    exact = retrieval_core.retrieve_exact(image_vecs[rows], np.asarray(sentence_vecs), k=k)
    approx = retrieval_core.RetrievalResult(result.indices[rows], result.scores[rows])
    return float(retrieval_core.recall_at_k(approx, exact))


def demo_precision(
    home, out: pa.Table, image_vecs, members: pa.Table, sentence_vecs, k: int
) -> dict:
    """On the demo corpus: fraction of retrieved texts that describe the image's ground-truth
    content, next to the same figure for in-document (MMC4-style) assignment."""
    from realsyn_assets.core.bootstrap import retrieval_precision
    from realsyn_assets.core.demo_corpus import load_ground_truth

    truth = load_ground_truth(home.ground_truth)
    ids = out.column("image_id").to_pylist()
    retrieved = list(
        zip(*(out.column(f"text{j + 1}_id").to_pylist() for j in range(k)), strict=True)
    )

    def labelled(image_id: str) -> bool:
        return truth.image_concept(image_id) is not None

    ours = retrieval_precision(ids, retrieved, truth.describes, labelled)
    in_doc = retrieval_core.retrieve_in_document(
        out.column("doc_id").to_pylist(),
        image_vecs,
        members.column("doc_id").to_pylist(),
        np.asarray(sentence_vecs),
        k=1,
    )
    sentence_ids = members.column("sentence_id").to_pylist()
    baseline = retrieval_precision(
        ids,
        [[sentence_ids[i] if i >= 0 else None] for i in in_doc.indices[:, 0]],
        truth.describes,
        labelled,
    )
    scores = {f"gt_{name}": float(v) for name, v in ours.items() if name.startswith("precision")}
    scores["gt_in_document_precision_text1"] = float(baseline.get("precision_text1", 0.0))
    return scores


def shard_vectors_matrix(table: pa.Table) -> np.ndarray:
    from realsyn_assets.resources.vectors import table_vectors

    return table_vectors(table) if table.num_rows else np.zeros((0, 1), np.float32)


@dg.asset(
    group_name="retrieve",
    partitions_def=shard_partitions,
    deps=["image_dedup", "image_embeddings", "sentence_clusters"],
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
    if config.mode not in MODES:
        raise dg.Failure(f"retrieval mode {config.mode!r} not in {MODES}")
    home = storage.layout
    key = context.partition_key
    dedup = read_table(
        home.partition_file("image_dedup", key), columns=["image_id", "shard", "kept"]
    )
    rows, img_vecs = shard_vectors(vectors, "images", [key], "image_id")
    img_table = kept_rows(
        rows.append_column("_row", pa.array(np.arange(rows.num_rows))), dedup, "image_id"
    )
    img_vecs = (
        img_vecs[np.asarray(img_table.column("_row").to_numpy(), dtype=np.int64)]
        if img_table.num_rows
        else np.zeros((0, max(1, img_vecs.shape[1])), np.float32)
    )
    cdir = home.asset_dir("sentence_clusters")
    members = read_table(cdir / "members.parquet")
    sent_vecs = np.load(cdir / "vectors.npy", mmap_mode="r")
    if config.mode == "hierarchical":
        centroids = np.load(cdir / "centroids.npy")
        index = retrieval_core.build_cluster_index(
            members.column("cluster").to_numpy(), len(centroids)
        )
        result = retrieval_core.retrieve_hierarchical(
            img_vecs, sent_vecs, centroids, index, k=config.k, n_probe=config.n_probe
        )
    elif config.mode == "exact":
        result = retrieval_core.retrieve_exact(img_vecs, np.asarray(sent_vecs), k=config.k)
    else:
        result = retrieval_core.retrieve_in_document(
            img_table.column("doc_id").to_pylist(),
            img_vecs,
            members.column("doc_id").to_pylist(),
            np.asarray(sent_vecs),
            k=config.k,
        )

    out = img_table.select(["image_id", "shard", "doc_id", "position", "path"])
    lookup = {
        name: members.column(name).to_pylist()
        for name in ("sentence_id", "text", "doc_id", "position")
    }
    for j in range(config.k):
        idx = result.indices[:, j] if len(out) else np.zeros(0, np.int64)
        scores = result.scores[:, j] if len(out) else np.zeros(0, np.float32)
        valid = idx >= 0
        for name, column in (
            ("text", "text"),
            ("id", "sentence_id"),
            ("doc_id", "doc_id"),
            ("position", "position"),
        ):
            values = [lookup[column][i] if ok else None for i, ok in zip(idx, valid, strict=True)]
            out = out.append_column(
                f"text{j + 1}_{name}" if name != "text" else f"text{j + 1}",
                pa.array(values, pa.int32() if name == "position" else pa.string()),
            )
        out = out.append_column(
            f"text{j + 1}_score", pa.array(np.where(valid, scores, np.nan).astype(np.float32))
        )
    n_valid = result.valid_counts() if len(out) else np.zeros(0, np.int64)
    out = out.append_column("n_texts", pa.array(np.asarray(n_valid, dtype=np.int32)))
    path = write_table(out, home.partition_file("retrieved_texts", key))
    top = result.scores[:, 0] if len(out) else np.zeros(0, np.float32)
    counts = {
        "images": out.num_rows,
        "images_with_k_texts": int((n_valid == config.k).sum()),
        "mean_top1_score": float(np.nanmean(top)) if len(top) else 0.0,
    }
    if len(out) and config.mode != "exact":
        counts[f"recall_at_{config.k}_vs_exact"] = recall_against_exact(
            result, img_vecs, sent_vecs, config.k, config.recall_sample
        )
    if home.ground_truth is not None and len(out):
        counts.update(demo_precision(home, out, img_vecs, members, sent_vecs, config.k))
    meta = stage_metadata(metrics, "retrieved_texts", key, counts, None, out, path)
    meta["mode"] = config.mode
    return dg.MaterializeResult(metadata=meta)
