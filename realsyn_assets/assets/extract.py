"""extract: images and sentences out of the documents, with quality filters (paper §3.1)."""

from collections import Counter

import dagster as dg
import numpy as np
import pyarrow as pa

from realsyn_assets.assets._checks import Result, check_result, funnel_check, shard_check
from realsyn_assets.assets._common import rejection_counts, stage_metadata
from realsyn_assets.core.ids import image_id, sentence_id
from realsyn_assets.core.images import extract as image_core
from realsyn_assets.core.ingest.documents import fetch_image_bytes
from realsyn_assets.core.io import atomic_write_bytes, read_table, write_table
from realsyn_assets.core.semantic_filter.entropy import WORD_PATTERN
from realsyn_assets.core.semantic_filter.perplexity import (
    PAPER_PPL_WINDOW,
    PAPER_SEMANTIC_KEEP_FRACTION,
    NGramScorer,
    calibrate_window,
)
from realsyn_assets.core.semantic_filter.scores import (
    entropies,
    fit_fingerprint,
    ids_fingerprint,
    save_scores,
)
from realsyn_assets.core.text import sentences as sentence_core
from realsyn_assets.core.text.cat import cat_rejection
from realsyn_assets.partitions import shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource

DUPLICATE_IN_SHARD = "duplicate_in_shard"


class ImageExtractConfig(dg.Config):
    min_side: int = 100  # paper: shorter side >= 100 px
    max_aspect: float = 3.0  # paper: aspect ratio within [1/3, 3]
    output_max_side: int = 512


class SentenceExtractConfig(dg.Config):
    min_words: int = 3  # paper: 3..81 words
    max_words: int = 81
    cat_filter: bool = True  # paper: caption complexity >= C1 and an action (CAT)
    min_complexity: int = 1
    require_action: bool = True


@dg.asset(
    group_name="extract",
    partitions_def=shard_partitions,
    deps=["raw_documents"],
    description="Decoded, quality-filtered images of one shard (shorter side >= 100 px, aspect in "
    "[1/3, 3]) saved as normalised JPEG files; every rejected slot is kept with its reason.",
)
def extracted_images(
    context: dg.AssetExecutionContext,
    config: ImageExtractConfig,
    storage: StorageResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    home = storage.layout
    key = context.partition_key
    docs = read_table(home.partition_file("raw_documents", key))
    slots = docs.filter(pa.compute.equal(docs.column("kind"), "image")).to_pylist()

    kept_rows, rejected_rows, todo = [], [], []
    first_seen: dict[str, dict] = {}
    for slot in slots:
        base = {
            "shard": key,
            "doc_id": slot["doc_id"],
            "position": slot["position"],
            "source_ref": slot["image_ref"],
        }
        data, reason, detail = fetch_image_bytes(
            slot["image_ref"],
            slot["image_bytes"],
            allow_download=storage.allow_download,
            timeout_s=storage.download_timeout_s,
            max_bytes=storage.max_image_bytes,
        )
        if data is None:
            rejected_rows.append({**base, "image_id": None, "reason": reason, "detail": detail})
            continue
        iid = image_id(data)
        if iid in first_seen:
            rejected_rows.append(
                {
                    **base,
                    "image_id": iid,
                    "reason": DUPLICATE_IN_SHARD,
                    "detail": f"same bytes as {first_seen[iid]['doc_id']}",
                }
            )
            continue
        first_seen[iid] = base
        todo.append((iid, base, data))

    filter_config = image_core.ImageFilterConfig(
        min_side=config.min_side,
        max_aspect=config.max_aspect,
        output_max_side=config.output_max_side,
    )
    context.log.info(
        f"{key}: decoding {len(todo)} unique images with {storage.cpu_workers()} workers"
    )
    results = image_core.process_images(
        [(data, home.image_path(iid)) for iid, _, data in todo],
        filter_config,
        workers=storage.cpu_workers(),
    )
    for (iid, base, _), result in zip(todo, results, strict=True):
        if result.kept:
            kept_rows.append(
                {
                    **base,
                    "image_id": iid,
                    "path": result.output_path,
                    "width": result.width,
                    "height": result.height,
                    "phash": result.phash,
                }
            )
        else:
            rejected_rows.append(
                {**base, "image_id": iid, "reason": result.reason, "detail": result.detail}
            )

    kept = pa.Table.from_pylist(kept_rows, schema=KEPT_IMAGE_SCHEMA)
    rejected = pa.Table.from_pylist(rejected_rows, schema=REJECTED_SCHEMA)
    out = write_table(kept, home.partition_file("extracted_images", key))
    write_table(rejected, home.partition_file("extracted_images", key, ".rejected.parquet"))
    reasons = rejection_counts([r["reason"] for r in rejected_rows])
    counts = {
        "images_in": len(slots),
        "images_kept": kept.num_rows,
        "images_rejected": rejected.num_rows,
    }
    return dg.MaterializeResult(
        metadata=stage_metadata(metrics, "extracted_images", key, counts, reasons, kept, out)
    )


KEPT_IMAGE_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("shard", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("source_ref", pa.string()),
        ("path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("phash", pa.int64()),
    ]
)
REJECTED_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("source_ref", pa.string()),
        ("image_id", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)
KEPT_SENTENCE_SCHEMA = pa.schema(
    [
        ("sentence_id", pa.string()),
        ("shard", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("sent_index", pa.int32()),
        ("text", pa.string()),
        ("n_words", pa.int32()),
    ]
)
REJECTED_SENTENCE_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("sent_index", pa.int32()),
        ("text", pa.string()),
        ("reason", pa.string()),
    ]
)


@dg.asset(
    group_name="extract",
    partitions_def=shard_partitions,
    deps=["raw_documents"],
    description="Sentences of one shard (Punkt-style split) passing the rule filters: no emoji, "
    "no URL, 3..81 words; every rejected sentence is kept with its reason.",
)
def extracted_sentences(
    context: dg.AssetExecutionContext,
    config: SentenceExtractConfig,
    storage: StorageResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    home = storage.layout
    key = context.partition_key
    docs = read_table(
        home.partition_file("raw_documents", key), columns=["doc_id", "position", "kind", "text"]
    )
    rules = sentence_core.SentenceFilterConfig(
        min_words=config.min_words, max_words=config.max_words
    )
    kept_rows, rejected_rows, seen = [], [], set()
    rows = docs.filter(pa.compute.equal(docs.column("kind"), "text")).to_pylist()
    blocks = len(rows)
    split = sentence_core.split_and_filter_blocks(
        [row["text"] for row in rows], rules, workers=storage.cpu_workers()
    )
    for b, row in enumerate(rows):
        for index, (sentence, reason) in enumerate(split.block(b)):
            base = {
                "shard": key,
                "doc_id": row["doc_id"],
                "position": row["position"],
                "sent_index": index,
                "text": sentence,
            }
            if reason is None and config.cat_filter:
                reason = cat_rejection(sentence, config.min_complexity, config.require_action)
            sid = sentence_id(sentence)
            if reason is None and sid in seen:
                reason = DUPLICATE_IN_SHARD
            if reason is not None:
                rejected_rows.append({**base, "reason": reason})
                continue
            seen.add(sid)
            kept_rows.append(
                {**base, "sentence_id": sid, "n_words": sentence_core.count_words(sentence)}
            )
    kept = pa.Table.from_pylist(kept_rows, schema=KEPT_SENTENCE_SCHEMA)
    rejected = pa.Table.from_pylist(rejected_rows, schema=REJECTED_SENTENCE_SCHEMA)
    out = write_table(kept, home.partition_file("extracted_sentences", key))
    write_table(rejected, home.partition_file("extracted_sentences", key, ".rejected.parquet"))
    reasons = rejection_counts([r["reason"] for r in rejected_rows])
    counts = {
        "text_blocks": blocks,
        "sentences_in": kept.num_rows + rejected.num_rows,
        "sentences_kept": kept.num_rows,
        "sentences_rejected": rejected.num_rows,
    }
    return dg.MaterializeResult(
        metadata=stage_metadata(metrics, "extracted_sentences", key, counts, reasons, kept, out)
    )


class WordStatisticsConfig(dg.Config):
    perplexity_scorer: str = "ngram"  # "ngram" (offline, calibrated window) | "gpt2" (paper)
    gpt2_model: str = "gpt2-large"  # local path or hub name, with the `lm` extra
    keep_fraction: float = PAPER_SEMANTIC_KEEP_FRACTION  # n-gram window keeps this share


def fit_language_model(
    storage: StorageResource,
    shards: list[str],
    config: WordStatisticsConfig,
    words: pa.Table,
) -> dict:
    """Fit the offline n-gram scorer on the whole corpus, choose its perplexity window, and
    store every sentence's entropy and perplexity for sentence_dedup (assets/_sentence_scores).

    GPT-2 uses the paper's 30-200 window as is; an n-gram model's perplexities live on another
    scale, so its window keeps the fraction of sentences the paper's semantic stage keeps.
    """
    import json

    home = storage.layout
    out_dir = home.asset_dir("word_statistics")
    tables = [
        read_table(home.partition_file("extracted_sentences", s), columns=["sentence_id", "text"])
        for s in shards
    ]
    texts = [t for table in tables for t in table.column("text").to_pylist()]
    entropy = entropies(texts, words)
    ppl = None
    if config.perplexity_scorer == "gpt2":
        low, high = PAPER_PPL_WINDOW
        window = {"scorer": "gpt2", "model": config.gpt2_model, "low": low, "high": high}
    else:
        model, ppl = NGramScorer.fit_perplexity(texts)
        model.save(out_dir / "ngram.npz")
        low, high = calibrate_window(ppl, config.keep_fraction)
        window = {
            "scorer": "ngram",
            "low": float(low),
            "high": float(high),
            "keep_fraction_target": config.keep_fraction,
            "ppl_median": float(np.median(ppl)) if len(ppl) else 0.0,
        }
    fingerprints = {
        s: ids_fingerprint(t.column("sentence_id").to_pylist())
        for s, t in zip(shards, tables, strict=True)
    }
    window["fit_id"] = fit_fingerprint(fingerprints, window["scorer"])
    window["shards"] = list(shards)
    start = 0
    for shard, table in zip(shards, tables, strict=True):
        stop = start + table.num_rows
        save_scores(
            out_dir,
            shard,
            fingerprints[shard],
            window["fit_id"],
            entropy[start:stop],
            ppl[start:stop] if ppl is not None else None,
        )
        start = stop
    atomic_write_bytes(out_dir / "perplexity_window.json", json.dumps(window).encode())
    return {"ppl_window_low": float(low), "ppl_window_high": float(high)}


@dg.asset(
    group_name="extract",
    deps=[dg.AssetDep("extracted_sentences", partition_mapping=dg.AllPartitionMapping())],
    description="Corpus statistics of every kept sentence of every shard: word counts with DuckDB "
    "(the word probabilities of the entropy filter, paper Eq. 1) and a word trigram model with "
    "its calibrated perplexity window (the offline stand-in for GPT-2 perplexity, paper Eq. 2).",
)
def word_statistics(
    context: dg.AssetExecutionContext,
    config: WordStatisticsConfig,
    storage: StorageResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    import duckdb

    home = storage.layout
    shards = [
        s for s in home.shard_order() if home.partition_file("extracted_sentences", s).exists()
    ]
    files = [str(home.partition_file("extracted_sentences", s)) for s in shards]
    if not files:
        raise dg.Failure("no extracted_sentences shard is materialized yet")
    con = duckdb.connect()
    table = con.sql(
        "SELECT word, count(*)::BIGINT AS count FROM ("
        "  SELECT unnest(regexp_extract_all(lower(text), ?)) AS word FROM read_parquet(?)"
        ") GROUP BY word ORDER BY count DESC, word",
        params=[WORD_PATTERN, files],
    ).to_arrow_table()
    con.close()
    total = int(pa.compute.sum(table.column("count")).as_py() or 0)
    out = write_table(table, storage.layout.asset_dir("word_statistics") / "words.parquet")
    with metrics.connect() as mcon:
        mcon.execute(
            "CREATE OR REPLACE TABLE word_statistics AS SELECT * FROM read_parquet(?)", [str(out)]
        )
    top = Counter(
        dict(
            zip(
                table.column("word").to_pylist()[:20],
                table.column("count").to_pylist()[:20],
                strict=True,
            )
        )
    )
    counts = {"shards": len(files), "vocabulary": table.num_rows, "words_total": total}
    counts.update(fit_language_model(storage, shards, config, table))
    meta = stage_metadata(metrics, "word_statistics", "__all__", counts, None, table, out)
    meta["top_words"] = dg.MetadataValue.json(dict(top))
    return dg.MaterializeResult(metadata=meta)


@shard_check("extracted_images", "image_funnel", "slots = kept + rejected; no reason dominates.")
def image_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return funnel_check(
        metrics,
        "extracted_images",
        context.partition_key,
        "images_in",
        "images_kept",
        "images_rejected",
    )


@shard_check("extracted_sentences", "sentence_funnel", "in = kept + rejected; no reason dominates.")
def sentence_funnel(context: dg.AssetCheckExecutionContext, metrics: MetricsResource) -> Result:
    return funnel_check(
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
    return check_result(
        ok,
        "vocabulary and totals match" if ok else f"mismatch: {counts} vs {total}",
        vocabulary=int(total[1]),
        words_total=int(total[0]),
    )
