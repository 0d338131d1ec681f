"""filter: the semantic filter (paper §3.1).

Corpus statistics are fit once over every shard (word counts for the information entropy of
Eq. 1, a perplexity model and its window for Eq. 2); each shard's sentences are then scored
against them and those with entropy < 0.3 or a perplexity outside the window are dropped.
"""

from typing import Literal

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from realsyn_assets.assets._checks import Result, check_result, funnel_check, shard_check
from realsyn_assets.assets._common import code_version, rejection_counts, stage_metadata
from realsyn_assets.core.io import read_table, write_table
from realsyn_assets.core.semantic_filter.entropy import ENTROPY_THRESHOLD
from realsyn_assets.core.semantic_filter.perplexity import PAPER_SEMANTIC_KEEP_FRACTION
from realsyn_assets.core.semantic_filter.sentence_filter import filter_sentences, score_summary
from realsyn_assets.core.semantic_filter.statistics import (
    WORDS_FILE,
    count_words,
    fit_language_model,
)
from realsyn_assets.names import (
    CORPUS,
    Asset,
    Group,
    Kind,
    SemanticFilterMetrics,
    WordStatisticsMetrics,
)
from realsyn_assets.partitions import ALL_SHARDS, shard_partitions
from realsyn_assets.resources import MetricsResource, StorageResource


class WordStatisticsConfig(dg.Config):
    perplexity_scorer: Literal["ngram", "gpt2"] = Field(
        "ngram",
        description="Perplexity model: 'ngram' (offline word trigrams, calibrated window) or "
        "'gpt2' (the paper's GPT-2 with its 30-200 window; needs the `lm` extra).",
    )
    gpt2_model: str = Field(
        "gpt2-large",
        description="GPT-2 model for perplexity_scorer='gpt2': a local path or hub name.",
    )
    keep_fraction: float = Field(
        PAPER_SEMANTIC_KEEP_FRACTION,
        description="Share of sentences the n-gram perplexity window keeps (default: the "
        "paper's semantic stage, 1.16B of 1.82B).",
    )


class SemanticFilterConfig(dg.Config):
    entropy_threshold: float = Field(
        ENTROPY_THRESHOLD,
        description="Sentences whose normalised information entropy is below this are dropped "
        "(paper: 0.3; normalisation in core/semantic_filter/entropy.py).",
    )


@dg.asset(
    group_name=Group.FILTER,
    deps=[dg.AssetDep(Asset.EXTRACTED_SENTENCES, partition_mapping=ALL_SHARDS)],
    code_version=code_version("1", WordStatisticsConfig),
    kinds={Kind.DUCKDB, Kind.PARQUET},
    description="Corpus statistics of every kept sentence of every shard: word counts with DuckDB "
    "(the word probabilities of the entropy filter, paper Eq. 1; `data/word_statistics/"
    "words.parquet` and the DuckDB table `word_statistics`) and a word trigram model with its "
    "calibrated perplexity window (the offline stand-in for GPT-2 perplexity, paper Eq. 2; "
    "ngram.npz, perplexity_window.json), plus every sentence's scores in sentence_scores/. "
    "A rerun refits on the shards materialized at that time.",
)
def word_statistics(
    context: dg.AssetExecutionContext,
    config: WordStatisticsConfig,
    storage: StorageResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    home = storage.layout
    shards = [
        s for s in home.shard_order() if home.partition_file(Asset.EXTRACTED_SENTENCES, s).exists()
    ]
    files = [str(home.partition_file(Asset.EXTRACTED_SENTENCES, s)) for s in shards]
    if not files:
        raise dg.Failure("no extracted_sentences shard is materialized yet")
    table = count_words(files)
    total = int(pa.compute.sum(table.column("count")).as_py() or 0)
    folder = home.asset_dir(Asset.WORD_STATISTICS)
    out = write_table(table, folder / WORDS_FILE)
    with metrics.connect() as mcon:
        mcon.execute(
            f"CREATE OR REPLACE TABLE {Asset.WORD_STATISTICS} AS SELECT * FROM read_parquet(?)",
            [str(out)],
        )
    sentences = [
        read_table(home.partition_file(Asset.EXTRACTED_SENTENCES, s), ["sentence_id", "text"])
        for s in shards
    ]
    low, high = fit_language_model(
        folder,
        shards,
        sentences,
        table,
        scorer=config.perplexity_scorer,
        gpt2_model=config.gpt2_model,
        keep_fraction=config.keep_fraction,
    )
    M = WordStatisticsMetrics
    counts = {M.SHARDS: len(files), M.VOCABULARY: table.num_rows, M.WORDS_TOTAL: total}
    counts.update({M.PPL_WINDOW_LOW: low, M.PPL_WINDOW_HIGH: high})
    meta = stage_metadata(metrics, Asset.WORD_STATISTICS, CORPUS, counts, None, table, out)
    words, word_counts = (
        table.column("word").to_pylist()[:20],
        table.column("count").to_pylist()[:20],
    )
    meta["top_words"] = dg.MetadataValue.json(dict(zip(words, word_counts, strict=True)))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name=Group.FILTER,
    partitions_def=shard_partitions,
    deps=[Asset.EXTRACTED_SENTENCES, Asset.WORD_STATISTICS],
    code_version=code_version("1", SemanticFilterConfig),
    kinds={Kind.PARQUET},
    description="Semantic filter for one shard's sentences (paper §3.1): information entropy with "
    "corpus word probabilities (< 0.3 dropped), then the perplexity window; one row per "
    "sentence with both scores and the reason it was dropped, in "
    "`data/semantic_filter/<shard>.parquet`. A rerun rewrites the shard's file.",
)
def semantic_filter(
    context: dg.AssetExecutionContext,
    config: SemanticFilterConfig,
    storage: StorageResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    home = storage.layout
    key = context.partition_key
    sentences = read_table(
        home.partition_file(Asset.EXTRACTED_SENTENCES, key), columns=["sentence_id", "text"]
    )
    ids = sentences.column("sentence_id").to_pylist()
    texts = sentences.column("text").to_pylist()
    folder = home.asset_dir(Asset.WORD_STATISTICS)
    result = filter_sentences(folder, key, ids, texts, config.entropy_threshold)
    kept = np.array([r is None for r in result.reasons], dtype=bool)
    table = pa.table(
        {
            "sentence_id": pa.array(ids, pa.string()),
            "entropy": pa.array(result.entropy),
            "perplexity": pa.array(result.perplexity, pa.float64()),
            "kept": pa.array(kept),
            "reason": pa.array(result.reasons, pa.string()),
        }
    )
    out = write_table(table, home.partition_file(Asset.SEMANTIC_FILTER, key))
    entropy_mean, perplexity_median = score_summary(result.entropy, result.perplexity)
    M = SemanticFilterMetrics
    counts = {
        M.SENTENCES_IN: len(ids),
        M.SENTENCES_KEPT: int(kept.sum()),
        M.SENTENCES_REJECTED: int((~kept).sum()),
        M.SCORES_FROM_WORD_STATISTICS: int(result.reused),
        M.ENTROPY_MEAN: entropy_mean,
        M.PERPLEXITY_MEDIAN: perplexity_median,
    }
    reasons = rejection_counts(result.reasons)
    meta = stage_metadata(metrics, Asset.SEMANTIC_FILTER, key, counts, reasons, table, out)
    meta["ppl_window"] = dg.MetadataValue.json(list(result.window))
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(
    asset=Asset.WORD_STATISTICS,
    blocking=True,
    description="The DuckDB word table holds a non-empty vocabulary whose size and total count "
    "match what word_statistics recorded (ERROR, blocking: the entropy filter of every shard "
    "reads these probabilities). Metadata: `value` = words counted in the table, `threshold` "
    "= words recorded.",
)
def word_counts_consistent(storage: StorageResource, metrics: MetricsResource) -> Result:
    M = WordStatisticsMetrics
    counts = metrics.counts(Asset.WORD_STATISTICS, CORPUS)
    total, vocabulary = metrics.query(
        f"SELECT coalesce(sum(count), 0), count(*) FROM {Asset.WORD_STATISTICS}"
    )[0]
    recorded_total = int(counts.get(M.WORDS_TOTAL, -1))
    recorded_vocabulary = int(counts.get(M.VOCABULARY, -1))
    ok = vocabulary > 0 and total == recorded_total and vocabulary == recorded_vocabulary
    return check_result(
        ok,
        "vocabulary and totals match"
        if ok
        else f"table: {int(vocabulary)} words, {int(total)} in all; recorded: "
        f"{recorded_vocabulary} words, {recorded_total} in all",
        value=int(total),
        threshold=recorded_total,
        vocabulary=int(vocabulary),
        recorded_vocabulary=recorded_vocabulary,
    )


@shard_check(
    Asset.SEMANTIC_FILTER,
    "semantic_filter_funnel",
    "Sentences in = kept + rejected and the reasons add up (ERROR, blocking: sentence_dedup "
    "carries these decisions over); one reason (low entropy, perplexity) rejecting more than "
    "90% is a WARN; a shard that keeps nothing is a '0 rows' WARN.",
    blocking=True,
)
def semantic_filter_funnel(
    context: dg.AssetCheckExecutionContext, metrics: MetricsResource
) -> Result:
    M = SemanticFilterMetrics
    return funnel_check(
        metrics,
        Asset.SEMANTIC_FILTER,
        context.partition_key,
        M.SENTENCES_IN,
        M.SENTENCES_KEPT,
        M.SENTENCES_REJECTED,
    )
