"""Corpus statistics of the semantic filter, fit once over every shard (asset word_statistics).

Two things are estimated on the whole corpus: the word counts whose probabilities the entropy
filter uses (paper Eq. 1), and the perplexity model with its window (paper Eq. 2). GPT-2 uses
the paper's 30-200 window as is; the offline n-gram model's perplexities live on another scale,
so its window keeps the fraction of sentences the paper's semantic stage keeps. Every fitted
sentence's scores are stored too (see `scores.py`), so the per-shard filter reuses them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from realsyn_assets.core.io import atomic_write_bytes
from realsyn_assets.core.semantic_filter.entropy import WORD_PATTERN
from realsyn_assets.core.semantic_filter.ngram import NGramScorer
from realsyn_assets.core.semantic_filter.perplexity import (
    PAPER_PPL_WINDOW,
    PAPER_SEMANTIC_KEEP_FRACTION,
    calibrate_window,
)
from realsyn_assets.core.semantic_filter.scores import (
    entropies,
    fit_fingerprint,
    ids_fingerprint,
    save_scores,
)

# Files of the statistics folder.
WORDS_FILE = "words.parquet"  # (word, count), most frequent first
NGRAM_FILE = "ngram.npz"  # the fitted n-gram model (n-gram scorer only)
WINDOW_FILE = "perplexity_window.json"  # scorer, window (low, high), fit id, fitted shards


def count_words(files: Sequence[str]) -> pa.Table:
    """(word, count) over the `text` column of parquet files, with DuckDB; most frequent first,
    ties by word. Tokenised with the entropy filter's pattern."""
    import duckdb

    con = duckdb.connect()
    table = con.sql(
        "SELECT word, count(*)::BIGINT AS count FROM ("
        "  SELECT unnest(regexp_extract_all(lower(text), ?)) AS word FROM read_parquet(?)"
        ") GROUP BY word ORDER BY count DESC, word",
        params=[WORD_PATTERN, list(files)],
    ).to_arrow_table()
    con.close()
    return table


def fit_language_model(
    out_dir: Path,
    shards: Sequence[str],
    tables: Sequence[pa.Table],
    words: pa.Table,
    scorer: str = "ngram",
    gpt2_model: str = "gpt2-large",
    keep_fraction: float = PAPER_SEMANTIC_KEEP_FRACTION,
) -> tuple[float, float]:
    """Choose the perplexity window for `scorer` and store every sentence's scores; returns the
    window (low, high).

    `tables` are the shards' sentences (sentence_id, text), in the order of `shards`. The n-gram
    scorer is fit on all of them and scores each sentence leave-one-out; GPT-2 perplexity is left
    to the per-shard filter (stored as missing).
    """
    texts = [t for table in tables for t in table.column("text").to_pylist()]
    entropy = entropies(texts, words)
    ppl = None
    if scorer == "gpt2":
        low, high = PAPER_PPL_WINDOW
        window = {"scorer": "gpt2", "model": gpt2_model, "low": low, "high": high}
    else:
        model, ppl = NGramScorer.fit_perplexity(texts)
        model.save(out_dir / NGRAM_FILE)
        low, high = calibrate_window(ppl, keep_fraction)
        window = {
            "scorer": "ngram",
            "low": float(low),
            "high": float(high),
            "keep_fraction_target": keep_fraction,
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
    atomic_write_bytes(out_dir / WINDOW_FILE, json.dumps(window).encode())
    return float(low), float(high)
