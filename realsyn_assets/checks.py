"""Asset checks: the data-quality report of every stage, mostly read from the DuckDB metrics.

Every asset has at least one check. Per-shard and per-scale checks are partitioned like their
asset, so each partition's materialization is checked where it happened.
"""

import math
import warnings

import dagster as dg
import numpy as np

from realsyn_assets.partitions import scale_partitions, shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource, VectorStoreResource

# Partitioned asset checks are a Dagster preview feature; we rely on them knowingly.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")

MAX_SINGLE_REASON_SHARE = 0.9  # one rejection reason taking > 90% of all input is suspicious
Result = dg.AssetCheckResult


def _result(passed: bool, description: str, **metadata) -> Result:
    return Result(passed=bool(passed), description=description, metadata=metadata)


def _funnel(
    metrics: MetricsResource, stage: str, key: str, n_in: str, n_out: str, n_rej: str | None = None
) -> Result:
    counts = metrics.counts(stage, key)
    if not counts:
        return _result(False, f"no metrics recorded for {stage}/{key}")
    total, kept = counts.get(n_in, 0), counts.get(n_out, 0)
    reasons = metrics.rejection_counts(stage, key)
    top_reason, top = max(reasons.items(), key=lambda kv: kv[1], default=("", 0))
    problems = []
    if total > 0 and kept == 0:
        problems.append("the stage removed everything")
    if n_rej is not None and total != kept + counts.get(n_rej, 0):
        problems.append(f"{n_in} != {n_out} + {n_rej}")
    if n_rej is not None and sum(reasons.values()) != counts.get(n_rej, 0):
        problems.append("rejections by reason do not add up")
    if total > 0 and top / total > MAX_SINGLE_REASON_SHARE:
        problems.append(f"reason {top_reason!r} removed {top / total:.0%} of the input")
    return _result(
        not problems,
        "; ".join(problems) or "funnel consistent",
        kept=int(kept),
        total=int(total),
        kept_fraction=float(kept / total) if total else 0.0,
        top_reason=top_reason,
    )


def _shard_check(asset: str, name: str, description: str):
    return dg.asset_check(
        asset=asset, name=name, description=description, partitions_def=shard_partitions
    )


@_shard_check("raw_documents", "documents_parsed", "Most documents parse; none silently lost.")
def documents_parsed(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return _funnel(
        metrics,
        "raw_documents",
        context.partition_key,
        "documents_in",
        "documents_kept",
        "documents_rejected",
    )


@_shard_check("extracted_images", "image_funnel", "slots = kept + rejected; no reason dominates.")
def image_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return _funnel(
        metrics,
        "extracted_images",
        context.partition_key,
        "images_in",
        "images_kept",
        "images_rejected",
    )


@_shard_check(
    "extracted_sentences", "sentence_funnel", "in = kept + rejected; no reason dominates."
)
def sentence_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return _funnel(
        metrics,
        "extracted_sentences",
        context.partition_key,
        "sentences_in",
        "sentences_kept",
        "sentences_rejected",
    )


@dg.asset_check(asset="word_statistics", description="Word counts add up to the corpus size.")
def word_counts_consistent(storage: StorageResource, metrics: MetricsResource) -> Result:
    counts = metrics.counts("word_statistics", "__all__")
    total = metrics.query("SELECT coalesce(sum(count), 0), count(*) FROM word_statistics")[0]
    ok = (
        counts.get("vocabulary", 0) > 0
        and total[0] == counts.get("words_total")
        and total[1] == counts.get("vocabulary")
    )
    return _result(
        ok,
        "vocabulary and totals match" if ok else f"mismatch: {counts} vs {total}",
        vocabulary=int(total[1]),
        words_total=int(total[0]),
    )


def _vectors_ok(
    vectors: VectorStoreResource,
    metrics: MetricsResource,
    table: str,
    key: str,
    source_stage: str,
    source_metric: str,
    id_column: str,
) -> Result:
    from realsyn_assets.resources.vectors import table_vectors

    rows = vectors.read(table, shards=[key], columns=[id_column, "vector"])
    matrix = table_vectors(rows)
    expected = int(metrics.counts(source_stage, key).get(source_metric, -1))
    norms = np.linalg.norm(matrix, axis=1) if len(matrix) else np.ones(0)
    finite = bool(np.isfinite(matrix).all())
    unit = bool(np.all(np.abs(norms - 1) < 1e-3))
    unique = len(set(rows.column(id_column).to_pylist())) == rows.num_rows
    problems = [
        p
        for p, bad in (
            ("non-finite values", not finite),
            ("not unit-norm", not unit),
            (f"{rows.num_rows} rows != {expected} kept items", rows.num_rows != expected),
            ("duplicate ids", not unique),
        )
        if bad
    ]
    return _result(
        not problems,
        "; ".join(problems) or "finite, unit-norm, one row per item",
        rows=rows.num_rows,
        norm_min=float(norms.min()) if len(norms) else 1.0,
        norm_max=float(norms.max()) if len(norms) else 1.0,
    )


@_shard_check(
    "image_embeddings", "image_vectors_valid", "Finite, unit-norm, one row per kept image."
)
def image_vectors_valid(
    context: dg.AssetCheckExecutionContext, vectors: VectorStoreResource, metrics: MetricsResource
) -> Result:
    return _vectors_ok(
        vectors,
        metrics,
        "images",
        context.partition_key,
        "extracted_images",
        "images_kept",
        "image_id",
    )


@_shard_check(
    "sentence_embeddings", "sentence_vectors_valid", "Finite, unit-norm, one row per kept sentence."
)
def sentence_vectors_valid(
    context: dg.AssetCheckExecutionContext, vectors: VectorStoreResource, metrics: MetricsResource
) -> Result:
    return _vectors_ok(
        vectors,
        metrics,
        "sentences",
        context.partition_key,
        "extracted_sentences",
        "sentences_kept",
        "sentence_id",
    )


def _no_duplicate_survivors(storage: StorageResource, asset: str, id_column: str) -> Result:
    import duckdb

    files = [str(p) for p in storage.shard_files(asset)]
    con = duckdb.connect()
    dupes, kept = con.execute(
        f"SELECT count(*) - count(DISTINCT {id_column}), count(*) FROM read_parquet(?) WHERE kept",
        [files],
    ).fetchone()
    con.close()
    return _result(
        dupes == 0 and kept > 0,
        f"{dupes} duplicate ids among {kept} survivors across {len(files)} shards",
        duplicates=int(dupes),
        survivors=int(kept),
    )


@_shard_check(
    "image_dedup", "unique_image_survivors", "No image id survives twice across all shards."
)
def unique_image_survivors(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return _no_duplicate_survivors(storage, "image_dedup", "image_id")


@_shard_check("image_dedup", "image_dedup_funnel", "Dedup keeps something; counts add up.")
def image_dedup_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return _funnel(
        metrics, "image_dedup", context.partition_key, "images_in", "images_kept", "images_removed"
    )


@_shard_check(
    "sentence_dedup",
    "unique_sentence_survivors",
    "No sentence id survives twice across all shards.",
)
def unique_sentence_survivors(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return _no_duplicate_survivors(storage, "sentence_dedup", "sentence_id")


@_shard_check(
    "sentence_dedup",
    "sentence_dedup_funnel",
    "Semantic + redundancy filters keep something; counts add up.",
)
def sentence_dedup_funnel(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    return _funnel(
        metrics,
        "sentence_dedup",
        context.partition_key,
        "sentences_in",
        "sentences_kept",
        "sentences_removed",
    )


@dg.asset_check(
    asset="sentence_clusters", description="Every kept sentence is assigned; few empty clusters."
)
def clusters_cover_sentences(metrics: MetricsResource) -> Result:
    counts = metrics.counts("sentence_clusters", "__all__")
    kept = metrics.total("sentence_dedup", "sentences_kept")
    k = counts.get("clusters", 0)
    empty = counts.get("empty_clusters", 0)
    ok = counts.get("sentences") == kept and k > 0 and empty <= 0.5 * k
    return _result(
        ok,
        f"{int(counts.get('sentences', 0))} assigned of {int(kept)} kept; "
        f"{int(empty)} of {int(k)} clusters empty",
        clusters=int(k),
    )


@dg.asset_check(
    asset="sentence_clusters",
    description="The kept centroids still describe the sentences (drift and growth below the "
    "re-clustering limits); warns when `recluster_sentences_job` is due.",
)
def clusters_current(metrics: MetricsResource) -> Result:
    counts = metrics.counts("sentence_clusters", "__all__")
    due = bool(counts.get("recluster_due", 0.0))
    return Result(
        passed=not due,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "re-clustering is due: run recluster_sentences_job (`realsyn recluster`)"
            if due
            else f"drift {counts.get('drift', 0.0):.3f}, "
            f"{int(counts.get('sentences', 0))} sentences vs {int(counts.get('fit_sentences', 0))} "
            "at the fit"
        ),
        metadata={
            "drift": float(counts.get("drift", 0.0)),
            "assigned_since_fit": int(counts.get("sentences", 0) - counts.get("fit_sentences", 0)),
        },
    )


@_shard_check(
    "retrieved_texts",
    "three_texts_per_image",
    "Every kept image has 3 distinct texts, scores descending.",
)
def three_texts_per_image(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    from realsyn_assets.core.io import read_table

    table = read_table(storage.layout.partition_file("retrieved_texts", context.partition_key))
    rows = table.select(
        ["text1_id", "text2_id", "text3_id", "text1_score", "text2_score", "text3_score"]
    ).to_pylist()
    missing = sum(1 for r in rows if None in (r["text1_id"], r["text2_id"], r["text3_id"]))
    repeated = sum(1 for r in rows if len({r["text1_id"], r["text2_id"], r["text3_id"]}) < 3)
    unordered = sum(
        1 for r in rows if not (r["text1_score"] >= r["text2_score"] >= r["text3_score"])
    )
    ok = not (missing or repeated or unordered)
    return _result(
        ok,
        f"{missing} images lack texts, {repeated} repeat a text, {unordered} unordered",
        images=len(rows),
    )


@_shard_check(
    "synthetic_texts", "synthetic_text_present", "Every image has a non-empty synthetic text."
)
def synthetic_text_present(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    counts = metrics.counts("synthetic_texts", context.partition_key)
    images = metrics.counts("retrieved_texts", context.partition_key).get("images", -1)
    ok = counts.get("empty_syn_text", 1) == 0 and counts.get("images") == images
    scores_ok = math.isfinite(counts.get("mean_syn_score", float("nan")))
    return _result(
        ok and scores_ok,
        f"{int(counts.get('empty_syn_text', -1))} empty of {int(counts.get('images', 0))}",
        images=int(counts.get("images", 0)),
    )


@dg.asset_check(asset="image_clusters", description="The cosine window keeps 50-100% of pairs.")
def cosine_window_sane(metrics: MetricsResource) -> Result:
    counts = metrics.counts("image_clusters", "__all__")
    n, kept = counts.get("pairs_in", 0), counts.get("pairs_in_window", 0)
    frac = kept / n if n else 0.0
    return _result(
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
    return _result(
        ok,
        f"{n} samples (expected {int(counts.get('expected_samples', -1))}), "
        f"largest cluster {biggest} <= cap {int(cap)}",
        samples=int(n),
    )


@dg.asset_check(
    asset="clip_checkpoint",
    partitions_def=scale_partitions,
    description="Training lowered the loss and wrote a checkpoint.",
)
def training_lowered_loss(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, metrics: MetricsResource
) -> Result:
    counts = metrics.counts("clip_checkpoint", context.partition_key)
    exists = (
        storage.layout.asset_dir("clip_checkpoint") / context.partition_key / "checkpoint.pt"
    ).exists()
    first, last = counts.get("loss_first", float("nan")), counts.get("loss_last", float("nan"))
    return _result(
        exists and last < first,
        f"loss {first:.3f} -> {last:.3f}; checkpoint exists: {exists}",
        loss_first=float(first),
        loss_last=float(last),
    )


@dg.asset_check(
    asset="clip_evaluation",
    partitions_def=scale_partitions,
    description="Recall metrics are valid probabilities, measured on held-out images.",
)
def evaluation_valid(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    counts = metrics.counts("clip_evaluation", context.partition_key)
    recalls = {k: v for k, v in counts.items() if "R@" in k}
    ok = (
        bool(recalls)
        and all(0.0 <= v <= 1.0 for v in recalls.values())
        and counts.get("eval_images", 0) >= 2
    )
    return _result(
        ok,
        f"{len(recalls)} recall metrics on {int(counts.get('eval_images', 0))} images",
        **{k.replace("@", "_at_"): float(v) for k, v in recalls.items()},
    )


@dg.asset_check(
    asset="quality_report", description="Both funnels are non-increasing and end above zero."
)
def funnels_monotone(storage: StorageResource) -> Result:
    import json

    report = json.loads((storage.layout.asset_dir("quality_report") / "report.json").read_text())
    problems = []
    for name in ("image_funnel", "sentence_funnel"):
        counts = [row["count"] for row in report[name]]
        if any(b > a for a, b in zip(counts, counts[1:], strict=False)):
            problems.append(f"{name} increases")
        if not counts or counts[-1] == 0:
            problems.append(f"{name} ends at zero")
    return _result(not problems, "; ".join(problems) or "funnels monotone and non-empty")


@dg.asset_check(
    asset="bootstrap_encoder",
    description="The bootstrap run lowered its loss and retrieves better than random weights.",
)
def bootstrap_beats_random(metrics: MetricsResource) -> Result:
    counts = metrics.counts("bootstrap_encoder", "__all__")
    if not counts:
        return _result(True, "not trained: a configured pretrained model or checkpoint is used")
    # ground-truth precision when the home holds the demo corpus, else same-document agreement
    metric = "precision_text1" if "bootstrap_precision_text1" in counts else "top1_same_document"
    ours, random = counts.get(f"bootstrap_{metric}", 0.0), counts.get(f"random_{metric}", 0.0)
    lowered = counts.get("loss_last", 1e9) < counts.get("loss_first", 0.0)
    return _result(
        lowered and ours > random,
        f"{metric}: bootstrap {ours:.3f} vs random {random:.3f}; "
        f"loss {counts.get('loss_first', 0):.3f} -> {counts.get('loss_last', 0):.3f}",
        bootstrap=float(ours),
        random=float(random),
    )


# Demo corpus, 240 documents (~610 mined pairs): the bootstrap's top-1 precision is ~0.90 and
# in-document nearest text ~0.55. Corpora with few pairs (the e2e test's 48 documents) are
# too small to hold the bar, so it applies from BOOTSTRAP_GT_MIN_PAIRS pairs.
BOOTSTRAP_GT_MIN_PAIRS = 300
BOOTSTRAP_GT_MARGIN = 0.1


@dg.asset_check(
    asset="bootstrap_encoder",
    description="On the demo corpus (ground truth; >= 300 mined pairs), the bootstrap's top-1 "
    "retrieved sentence describes the image clearly more often (+0.1) than in-document "
    "nearest text does.",
)
def bootstrap_beats_in_document(metrics: MetricsResource) -> Result:
    counts = metrics.counts("bootstrap_encoder", "__all__")
    ours = counts.get("bootstrap_precision_text1")
    base = counts.get("in_document_precision_text1")
    if ours is None or base is None:
        return _result(True, "no ground truth (not the demo corpus) or not trained")
    summary = f"top-1 precision: bootstrap {ours:.3f} vs in-document nearest text {base:.3f}"
    pairs = int(counts.get("pairs", 0))
    if pairs < BOOTSTRAP_GT_MIN_PAIRS:
        return _result(
            True, f"{summary} (bar not applied: {pairs} pairs)", bootstrap=ours, in_document=base
        )
    return _result(
        ours >= base + BOOTSTRAP_GT_MARGIN, summary, bootstrap=float(ours), in_document=float(base)
    )


# A guard against a broken index, not the target: adaptive probing is calibrated to 0.95 on
# other images; the paper's single cluster (adaptive_probing=false) gives ~0.85-0.95 on the
# demo's 3-5 clusters but only 0.65-0.7 at a million sentences (`realsyn bench retrieval`).
MIN_RECALL_VS_EXACT = 0.8


@_shard_check(
    "retrieved_texts",
    "hierarchical_recall_vs_exact",
    "Hierarchical retrieval finds >= 80% of the exact top-3 on a sample of images.",
)
def hierarchical_recall_vs_exact(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    counts = metrics.counts("retrieved_texts", context.partition_key)
    recall = next((v for k, v in counts.items() if k.startswith("recall_at_")), None)
    if recall is None:
        return _result(True, "exact retrieval: nothing to compare")
    return _result(
        recall >= MIN_RECALL_VS_EXACT,
        f"recall vs exact {recall:.3f} (minimum {MIN_RECALL_VS_EXACT})",
        recall=float(recall),
    )


ALL_CHECKS = [
    hierarchical_recall_vs_exact,
    bootstrap_beats_random,
    bootstrap_beats_in_document,
    documents_parsed,
    image_funnel,
    sentence_funnel,
    word_counts_consistent,
    image_vectors_valid,
    sentence_vectors_valid,
    unique_image_survivors,
    image_dedup_funnel,
    unique_sentence_survivors,
    sentence_dedup_funnel,
    clusters_cover_sentences,
    clusters_current,
    three_texts_per_image,
    synthetic_text_present,
    cosine_window_sane,
    subset_size_within_target,
    training_lowered_loss,
    evaluation_valid,
    funnels_monotone,
]
