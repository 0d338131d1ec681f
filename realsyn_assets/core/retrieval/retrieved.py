"""The `retrieved_texts` step for one shard: the images that survived dedup, their search over the
stored sentence clustering, the output table, and a sampled recall against exact search."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.evaluation import recall_against_exact
from realsyn_assets.core.retrieval.cluster_state import calibration_mask
from realsyn_assets.core.retrieval.clustering import StoredClustering
from realsyn_assets.core.retrieval.index import RetrievalResult, build_cluster_index
from realsyn_assets.core.retrieval.search import (
    retrieve_exact,
    retrieve_hierarchical,
    retrieve_in_document,
)

# Retrieval modes: the paper's cluster-first search, brute force, and MMC4-style assignment.
Mode = Literal["hierarchical", "exact", "in_document"]
MODES: tuple[str, ...] = get_args(Mode)
DEFAULT_MAX_PROBE = 32  # when probe.json does not say (no adaptive probing calibrated)


def kept_rows(
    rows: pa.Table, matrix: np.ndarray, dedup: pa.Table, id_column: str
) -> tuple[pa.Table, np.ndarray]:
    """The rows (and their vectors) whose (shard, id) the dedup table marks as kept."""
    kept = dedup.filter(dedup.column("kept"))
    keys = pc.binary_join_element_wise(kept.column("shard"), kept.column(id_column), "\x1f")
    mine = pc.binary_join_element_wise(rows.column("shard"), rows.column(id_column), "\x1f")
    mask = pc.is_in(mine, value_set=keys)
    return rows.filter(mask), matrix[np.asarray(mask.to_numpy(zero_copy_only=False), bool)]


def retrieve_images(
    store: StoredClustering,
    mode: str,
    images: pa.Table,
    image_vecs: np.ndarray,
    *,
    k: int,
    n_probe: int,
    adaptive_probing: bool,
) -> tuple[RetrievalResult, dict]:
    """Top-k sentences per image in one of `MODES`, and the probing used (probe.json, or {}).

    hierarchical: nearest cluster(s) first, plus those within the calibrated probe margin when
    `adaptive_probing`; exact: every sentence; in_document: the image's own document only.
    """
    if mode not in MODES:
        raise ValueError(f"retrieval mode {mode!r} not in {MODES}")
    members, sentence_vecs = store.members, store.vectors
    if mode == "exact":
        return retrieve_exact(image_vecs, np.asarray(sentence_vecs), k=k), {}
    if mode == "in_document":
        result = retrieve_in_document(
            images.column("doc_id").to_pylist(),
            image_vecs,
            members.column("doc_id").to_pylist(),
            np.asarray(sentence_vecs),
            k=k,
        )
        return result, {}
    centroids = store.centroids()
    index = build_cluster_index(members.column("cluster").to_numpy(), len(centroids))
    probing = store.probing() if adaptive_probing else {}
    result = retrieve_hierarchical(
        image_vecs,
        sentence_vecs,
        centroids,
        index,
        k=k,
        n_probe=n_probe,
        probe_margin=probing.get("margin"),
        max_probe=int(probing.get("max_probe") or DEFAULT_MAX_PROBE),
        sentences_sorted=bool(np.array_equal(index.order, np.arange(len(index.order)))),
    )
    return result, probing


def retrieved_table(
    images: pa.Table, members: pa.Table, result: RetrievalResult, k: int
) -> pa.Table:
    """One row per image: its ids and, per rank j, `text{j}` with the sentence's id, document,
    position and score (nulls / NaN where fewer than k were found), then `n_texts`."""
    out = images.select(["image_id", "shard", "doc_id", "position", "path"])
    lookup = {
        name: members.column(name).to_pylist()
        for name in ("sentence_id", "text", "doc_id", "position")
    }
    for j in range(k):
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
    return out.append_column("n_texts", pa.array(np.asarray(n_valid, dtype=np.int32)))


def mean_top1_score(result: RetrievalResult, n_images: int) -> float:
    """Mean score of every image's best sentence (0.0 without images)."""
    top = result.scores[:, 0] if n_images else np.zeros(0, np.float32)
    return float(np.nanmean(top)) if len(top) else 0.0


def sampled_recall_against_exact(
    result: RetrievalResult,
    image_ids: list[str],
    image_vecs: np.ndarray,
    sentence_vecs: np.ndarray,
    k: int,
    sample: int,
) -> float:
    """recall@k of this retrieval against brute force on a deterministic sample of images, drawn
    from those not used to calibrate probing (all images when every one was)."""
    eligible = ~calibration_mask(image_ids)
    pool = np.arange(len(image_vecs))
    if eligible.any():
        pool = pool[eligible]
    rows = pool[np.linspace(0, len(pool) - 1, num=min(len(pool), sample)).round().astype(int)]
    exact = retrieve_exact(image_vecs[rows], np.asarray(sentence_vecs), k=k)
    approx = RetrievalResult(result.indices[rows], result.scores[rows])
    return float(recall_against_exact(approx, exact))
