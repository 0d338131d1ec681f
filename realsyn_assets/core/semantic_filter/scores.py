"""Per-sentence semantic scores (entropy, perplexity), computed once when the statistics are fit.

Why: the entropy filter needs the whole word-count table and the offline perplexity needs the
whole-corpus n-gram model. The fit holds both in memory anyway (the n-gram window is calibrated
on exactly these leave-one-out perplexities), so the per-shard semantic filter looks the scores
up instead of scoring again and reloading the tables once per shard. The scores are tied to a
shard's sentence ids and to the fit by fingerprints: a shard re-extracted after the fit, or a
score file left over from an older fit, is scored afresh instead of being looked up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from realsyn_assets.core.io import write_table

SCORES_DIR = "sentence_scores"
_IDS_KEY, _FIT_KEY = b"ids_sha1", b"fit_id"


def ids_fingerprint(ids: Sequence[str]) -> str:
    """sha1 over a shard's sentence ids in row order (order matters: scores are row-aligned)."""
    digest = hashlib.sha1()
    for sid in ids:
        digest.update(sid.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def fit_fingerprint(shard_fingerprints: dict[str, str], scorer: str) -> str:
    """One id for a fit: which shards, with which sentences, under which scorer."""
    parts = [scorer] + [f"{shard}={fp}" for shard, fp in sorted(shard_fingerprints.items())]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def entropies(texts: Sequence[str], words: pa.Table) -> np.ndarray:
    """Normalised entropy (paper Eq. 1) of each text under the corpus word counts (word, count)."""
    from realsyn_assets.core.semantic_filter.entropy import normalised_entropy

    counts = dict(
        zip(words.column("word").to_pylist(), words.column("count").to_pylist(), strict=True)
    )
    total = sum(counts.values())
    return np.array([normalised_entropy(t, counts, total) for t in texts], np.float32)


def score_path(folder: Path, shard: str) -> Path:
    return folder / SCORES_DIR / f"{shard}.parquet"


def save_scores(
    folder: Path,
    shard: str,
    ids_sha1: str,
    fit_id: str,
    entropy: np.ndarray,
    perplexity: np.ndarray | None,
) -> Path:
    """Row-aligned scores of one shard; perplexity None = scored later (e.g. GPT-2 per shard)."""
    ppl = (
        pa.array(np.asarray(perplexity, np.float64))
        if perplexity is not None
        else pa.nulls(len(entropy), pa.float64())
    )
    table = pa.table({"entropy": pa.array(np.asarray(entropy, np.float32)), "perplexity": ppl})
    table = table.replace_schema_metadata({_IDS_KEY: ids_sha1.encode(), _FIT_KEY: fit_id.encode()})
    return write_table(table, score_path(folder, shard))


def load_scores(
    folder: Path, shard: str, ids: Sequence[str], fit_id: str | None
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(entropy, perplexity or None) for exactly these ids under this fit, else None."""
    path = score_path(folder, shard)
    if fit_id is None or not path.exists():
        return None
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if meta.get(_FIT_KEY, b"").decode() != fit_id or table.num_rows != len(ids):
        return None
    if meta.get(_IDS_KEY, b"").decode() != ids_fingerprint(ids):
        return None
    entropy = table.column("entropy").to_numpy().astype(np.float32)
    ppl_column = table.column("perplexity")
    ppl = None if ppl_column.null_count else ppl_column.to_numpy().astype(np.float64)
    return entropy, ppl
