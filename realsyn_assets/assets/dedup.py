"""dedup: exact, perceptual and semantic near-duplicates across ALL shards (paper §3.1).

Incremental by registration order: a shard is compared with every item of the shards registered
before it (their stored hashes and vectors, nothing recomputed); an item linked, directly or through
its own shard's items, to an earlier item is a duplicate, and inside a shard the first item of a
group is kept. Earlier shards' decisions therefore never change when a shard is added, and reruns
give the same answer (see core/dedup/union_find.py for the union-find).
"""

from collections.abc import Callable

import dagster as dg
import numpy as np
import pyarrow as pa

from realsyn_assets.assets._checks import Result, check_result, funnel_check, shard_check
from realsyn_assets.assets._common import rejection_counts, stage_metadata
from realsyn_assets.core.dedup import union_find as dedup_core
from realsyn_assets.core.io import read_table, save_npy, write_table
from realsyn_assets.core.semantic_filter.entropy import ENTROPY_THRESHOLD
from realsyn_assets.core.semantic_filter.scores import entropies, load_scores
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import (
    EncoderResource,
    MetricsResource,
    StorageResource,
    VectorStoreResource,
)

EXACT, PERCEPTUAL, SEMANTIC = "exact_duplicate", "perceptual_duplicate", "semantic_duplicate"
NEAR_TEXT = "near_duplicate_text"  # sentences: MinHash over word shingles


class ImageDedupConfig(dg.Config):
    # Hamming distance on 64-bit pHash. 12 = max recall at precision >= 0.99 and FP rate <= 1e-5
    # on 974 real photos x 10 edits (scripts/calibrate_dedup.py -> calibration/dedup_thresholds.json)
    phash_max_distance: int = 12
    semantic_threshold: float = 0.95  # cosine of image embeddings
    semantic_with_weak_encoder: bool = False  # random/bootstrap weights: cosine is not "same image"


class SentenceDedupConfig(dg.Config):
    entropy_threshold: float = (
        ENTROPY_THRESHOLD  # paper: 0.3 (normalised, see core/semantic_filter/entropy.py)
    )
    # MinHash Jaccard of char 4-grams. 0.45 maximises recall on generated near-duplicates of the
    # Wikipedia sample (0.965 at precision 1.0), but templated yet different sentences (the demo
    # corpus, boilerplate-heavy sites) share ~0.5 of their 4-grams; 0.65 keeps precision first.
    text_near_duplicate_threshold: float = 0.65
    semantic_threshold: float = 0.95
    semantic_with_weak_encoder: bool = False


def earlier_shards(storage: StorageResource, key: str) -> list[str]:
    order = storage.layout.shard_order()
    return order[: order.index(key)] if key in order else order


def _offset_query_pairs(pairs: np.ndarray, n_earlier: int) -> np.ndarray:
    """Query-mode pairs (query row, target row) -> global pairs, without self pairs."""
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).copy()
    pairs[:, 0] += n_earlier
    return pairs[pairs[:, 0] != pairs[:, 1]]


def exact_pairs(earlier_ids: list[str], current_ids: list[str]) -> np.ndarray:
    index = {iid: i for i, iid in enumerate(earlier_ids)}
    n = len(earlier_ids)
    return np.array(
        [(n + i, index[iid]) for i, iid in enumerate(current_ids) if iid in index], dtype=np.int64
    ).reshape(-1, 2)


def decide(
    n_earlier: int,
    n_current: int,
    stages: list[tuple[str, Callable[[], np.ndarray]]],
) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """Keep mask, reason and representative for the current items, adding pair kinds in order.

    An item's reason is the first pair kind that made it a duplicate.
    """
    n = n_earlier + n_current
    priority = np.arange(n, dtype=np.int64)
    reasons: list[str | None] = [None] * n_current
    pairs: list[np.ndarray] = []
    keep = np.ones(n_current, dtype=bool)
    representative = np.arange(n_earlier, n, dtype=np.int64)
    for name, make_pairs in stages:
        pairs.append(make_pairs())
        mask, rep = dedup_core.select_representatives(n, pairs, priority)
        for i in np.flatnonzero(keep & ~mask[n_earlier:]):
            reasons[i] = name
        keep = mask[n_earlier:]
        representative = rep[n_earlier:]
    return keep, reasons, representative


def aligned_vectors(
    vectors: VectorStoreResource,
    table_name: str,
    id_column: str,
    shards: list[str],
    ids: list[str],
    key: str,
) -> np.ndarray:
    """Vectors for (shard, id) rows in the given order, read from LanceDB."""
    rows, matrix = vectors.shard_matrix(table_name, sorted(set(shards)))
    order = {
        (s, i): r
        for r, (s, i) in enumerate(
            zip(rows.column("shard").to_pylist(), rows.column(id_column).to_pylist(), strict=True)
        )
    }
    idx = np.array([order.get(pair, -1) for pair in zip(shards, ids, strict=True)], dtype=np.int64)
    if (idx < 0).any():
        raise dg.Failure(
            f"{table_name} embeddings missing for {int((idx < 0).sum())} rows: "
            f"materialize the embeddings of {key} and of all earlier shards first"
        )
    return matrix[idx]


def semantic_stage(matrix: np.ndarray, n_earlier: int, threshold: float):
    return SEMANTIC, lambda: _offset_query_pairs(
        dedup_core.cosine_pairs(matrix, threshold, query=matrix[n_earlier:]), n_earlier
    )


def _trusted(encoder: EncoderResource, force: bool) -> bool:
    """Semantic dedup needs an encoder whose cosine means "same picture": a configured
    pretrained model or checkpoint. Random and bootstrap weights only with `force`."""
    return force or encoder.kind() in ("pretrained", "checkpoint")


@dg.asset(
    group_name="dedup",
    partitions_def=shard_partitions,
    deps=["extracted_images", "image_embeddings"],
    description="Redundancy filter for one shard's images against every earlier shard: exact "
    "(same bytes), perceptual (pHash Hamming) and semantic (embedding cosine) duplicates, grouped "
    "with union-find; one deterministic representative per group.",
)
def image_dedup(
    context: dg.AssetExecutionContext,
    config: ImageDedupConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    home = storage.layout
    key = context.partition_key
    cols = ["image_id", "shard", "doc_id", "position", "path", "phash"]
    current = read_table(home.partition_file("extracted_images", key), columns=cols)
    before = earlier_shards(storage, key)
    earlier = (
        storage.read_shards("extracted_images", before, columns=["image_id", "shard", "phash"])
        if storage.shard_files("extracted_images", before)
        else None
    )
    e_ids = earlier.column("image_id").to_pylist() if earlier is not None else []
    c_ids = current.column("image_id").to_pylist()
    n_e = len(e_ids)

    def hashes(table: pa.Table | None) -> np.ndarray:
        if table is None or table.num_rows == 0:
            return np.zeros(0, dtype=np.uint64)
        return (
            np.asarray(table.column("phash").to_numpy(zero_copy_only=False))
            .astype(np.int64)
            .view(np.uint64)
        )

    all_hashes = np.concatenate([hashes(earlier), hashes(current)])
    stages = [
        (EXACT, lambda: exact_pairs(e_ids, c_ids)),
        (
            PERCEPTUAL,
            lambda: _offset_query_pairs(
                dedup_core.hamming_pairs(
                    all_hashes, config.phash_max_distance, query=hashes(current)
                ),
                n_e,
            ),
        ),
    ]
    semantic = _trusted(encoder, config.semantic_with_weak_encoder)
    if semantic and current.num_rows:
        e_shards = earlier.column("shard").to_pylist() if earlier is not None else []
        matrix = aligned_vectors(
            vectors, "images", "image_id", e_shards + [key] * len(c_ids), e_ids + c_ids, key
        )
        stages.append(semantic_stage(matrix, n_e, config.semantic_threshold))
    else:
        context.log.info(
            "semantic image dedup skipped: encoder has random weights "
            "(configure a pretrained model or checkpoint, or force it in config)"
        )
    keep, reasons, rep = decide(n_e, len(c_ids), stages)
    all_ids = e_ids + c_ids
    out_table = (
        current.drop_columns(["phash"])
        .append_column("kept", pa.array(keep))
        .append_column("reason", pa.array(reasons, pa.string()))
        .append_column(
            "duplicate_of",
            pa.array(
                [None if k else all_ids[r] for k, r in zip(keep, rep, strict=True)], pa.string()
            ),
        )
    )
    out = write_table(out_table, home.partition_file("image_dedup", key))
    counts = {
        "images_in": len(c_ids),
        "images_kept": int(keep.sum()),
        "images_removed": int((~keep).sum()),
        "compared_with_earlier": n_e,
        "semantic_enabled": int(semantic),
    }
    return dg.MaterializeResult(
        metadata=stage_metadata(
            metrics, "image_dedup", key, counts, rejection_counts(reasons), out_table, out
        )
    )


def semantic_scores(
    storage: StorageResource, shard: str, ids: list[str], texts: list[str]
) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """(entropy, perplexity, window low, window high, reused) for one shard's sentences.

    word_statistics stores both scores for every sentence it was fit on; they are reused when
    the shard still holds exactly those sentences. Otherwise (a shard extracted after the fit,
    or GPT-2 perplexity, which is scored per shard) they are computed here; re-materializing
    word_statistics folds new shards into the corpus statistics.
    """
    import json

    from realsyn_assets.core.semantic_filter.perplexity import GPT2Scorer, NGramScorer

    folder = storage.layout.asset_dir("word_statistics")
    window = json.loads((folder / "perplexity_window.json").read_text())
    low, high = float(window["low"]), float(window["high"])
    cached = load_scores(folder, shard, ids, window.get("fit_id"))
    entropy, ppl = cached if cached is not None else (None, None)
    reused = ppl is not None
    if entropy is None:
        entropy = entropies(texts, read_table(folder / "words.parquet"))
    if ppl is None and not texts:
        ppl = np.zeros(0, np.float64)
    elif ppl is None and window["scorer"] == "gpt2":
        ppl = np.asarray(GPT2Scorer(window["model"]).perplexity(texts), np.float64)
    elif ppl is None:
        # Sentences the model was fit on have stored leave-one-out scores; these were not part
        # of the fit, so they are scored as they are (leave-one-out on a sentence the model never
        # counted drives probabilities to zero and the perplexity to infinity).
        model = NGramScorer.load(folder / "ngram.npz")
        ppl = np.asarray(model.perplexity(texts), np.float64)
    return entropy, ppl, low, high, reused


def text_signatures(
    storage: StorageResource, shard: str, texts: list[str] | None = None
) -> np.ndarray:
    """MinHash signatures of a shard's extracted sentences, stored once and reused by later shards."""
    from realsyn_assets.core.dedup.minhash import minhash_signatures

    path = storage.layout.partition_file("sentence_dedup", shard, ".minhash.npy")
    if texts is None and path.exists():
        return np.load(path)
    if texts is None:
        texts = (
            read_table(
                storage.layout.partition_file("extracted_sentences", shard), columns=["text"]
            )
            .column("text")
            .to_pylist()
        )
    signatures = minhash_signatures(texts)
    save_npy(signatures, path)
    return signatures


@dg.asset(
    group_name="dedup",
    partitions_def=shard_partitions,
    deps=["extracted_sentences", "sentence_embeddings", "word_statistics"],
    description="Semantic and redundancy filters for one shard's sentences: information entropy "
    "with corpus word probabilities (< 0.3 dropped) and the perplexity window, then exact "
    "(normalised text), near-duplicate (MinHash) and semantic (embedding cosine) duplicates "
    "against every earlier shard.",
)
def sentence_dedup(
    context: dg.AssetExecutionContext,
    config: SentenceDedupConfig,
    storage: StorageResource,
    metrics: MetricsResource,
    vectors: VectorStoreResource,
    encoder: EncoderResource,
) -> dg.MaterializeResult:
    from realsyn_assets.core.dedup.minhash import near_duplicate_pairs
    from realsyn_assets.core.semantic_filter.perplexity import window_rejections

    home = storage.layout
    key = context.partition_key
    current = read_table(
        home.partition_file("extracted_sentences", key),
        columns=["sentence_id", "shard", "doc_id", "position", "sent_index", "text"],
    )
    texts = current.column("text").to_pylist()
    c_ids = current.column("sentence_id").to_pylist()
    # semantic filter (paper §3.1): information entropy, then perplexity window
    entropy, ppl, low, high, reused = semantic_scores(storage, key, c_ids, texts)
    semantic_reasons = [
        "low_entropy" if h < config.entropy_threshold else r
        for h, r in zip(entropy, window_rejections(ppl, low, high), strict=True)
    ]

    # redundancy filter: exact, near-duplicate text (MinHash), semantic (embeddings)
    before = earlier_shards(storage, key)
    earlier = (
        storage.read_shards("extracted_sentences", before, columns=["sentence_id", "shard"])
        if storage.shard_files("extracted_sentences", before)
        else None
    )
    e_ids = earlier.column("sentence_id").to_pylist() if earlier is not None else []
    n_e = len(e_ids)
    e_shards = earlier.column("shard").to_pylist() if earlier is not None else []
    signatures = (
        np.concatenate(
            [text_signatures(storage, s) for s in dict.fromkeys(e_shards)]
            + [text_signatures(storage, key, texts)]
        )
        if texts
        else np.zeros((0, 64), np.uint64)
    )
    stages = [
        (EXACT, lambda: exact_pairs(e_ids, c_ids)),
        (
            NEAR_TEXT,
            lambda: _offset_query_pairs(
                near_duplicate_pairs(
                    signatures, config.text_near_duplicate_threshold, query=signatures[n_e:]
                ),
                n_e,
            ),
        ),
    ]
    semantic = _trusted(encoder, config.semantic_with_weak_encoder)
    if semantic and current.num_rows:
        matrix = aligned_vectors(
            vectors, "sentences", "sentence_id", e_shards + [key] * len(c_ids), e_ids + c_ids, key
        )
        stages.append(semantic_stage(matrix, n_e, config.semantic_threshold))
    keep, reasons, rep = decide(n_e, len(c_ids), stages)
    all_ids = e_ids + c_ids
    final_reasons = [sr or r for sr, r in zip(semantic_reasons, reasons, strict=True)]
    final_keep = np.array([r is None for r in final_reasons], dtype=bool)
    out_table = (
        current.append_column("entropy", pa.array(entropy))
        .append_column("perplexity", pa.array(ppl, pa.float64()))
        .append_column("kept", pa.array(final_keep))
        .append_column("reason", pa.array(final_reasons, pa.string()))
        .append_column(
            "duplicate_of",
            pa.array(
                [None if k else all_ids[r] for k, r in zip(keep, rep, strict=True)], pa.string()
            ),
        )
    )
    out = write_table(out_table, home.partition_file("sentence_dedup", key))
    counts = {
        "sentences_in": len(c_ids),
        "sentences_kept": int(final_keep.sum()),
        "sentences_removed": int((~final_keep).sum()),
        "after_semantic_filter": int(sum(r is None for r in semantic_reasons)),
        "compared_with_earlier": n_e,
        "semantic_enabled": int(semantic),
        "scores_from_word_statistics": int(reused),
        "entropy_mean": float(entropy.mean()) if len(entropy) else 0.0,
        "perplexity_median": float(np.median(ppl)) if len(ppl) else 0.0,
    }
    return dg.MaterializeResult(
        metadata=stage_metadata(
            metrics, "sentence_dedup", key, counts, rejection_counts(final_reasons), out_table, out
        )
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
    return check_result(
        dupes == 0 and kept > 0,
        f"{dupes} duplicate ids among {kept} survivors across {len(files)} shards",
        duplicates=int(dupes),
        survivors=int(kept),
    )


@shard_check(
    "image_dedup", "unique_image_survivors", "No image id survives twice across all shards."
)
def unique_image_survivors(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return _no_duplicate_survivors(storage, "image_dedup", "image_id")


@shard_check("image_dedup", "image_dedup_funnel", "Dedup keeps something; counts add up.")
def image_dedup_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return funnel_check(
        metrics, "image_dedup", context.partition_key, "images_in", "images_kept", "images_removed"
    )


@shard_check(
    "sentence_dedup",
    "unique_sentence_survivors",
    "No sentence id survives twice across all shards.",
)
def unique_sentence_survivors(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Result:
    return _no_duplicate_survivors(storage, "sentence_dedup", "sentence_id")


@shard_check(
    "sentence_dedup",
    "sentence_dedup_funnel",
    "Semantic + redundancy filters keep something; counts add up.",
)
def sentence_dedup_funnel(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    return funnel_check(
        metrics,
        "sentence_dedup",
        context.partition_key,
        "sentences_in",
        "sentences_kept",
        "sentences_removed",
    )
