"""Demo-only scoring: how well retrieved or trained-on texts match the demo corpus's ground truth.

Production assets reach this only through `realsyn_assets.demo.hook`; it is meaningless on real data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from realsyn_assets.core.retrieval.search import retrieve_exact
from realsyn_assets.core.training.clip import TrainSample


def retrieval_precision(
    image_ids: Sequence[str],
    retrieved: Sequence[Sequence[str | None]],
    describes: Callable[[str, str], bool],
    has_concept: Callable[[str], bool],
) -> dict[str, float]:
    """Fraction of retrieved texts that describe the image, per rank and over all ranks.

    Only images with a ground-truth concept count. Missing texts count as misses.
    """
    hits: list[list[bool]] = []
    for image_id, texts in zip(image_ids, retrieved, strict=True):
        if not has_concept(image_id):
            continue
        hits.append([bool(t) and describes(image_id, t) for t in texts])
    if not hits:
        return {"images_scored": 0}
    matrix = np.array(hits, dtype=float)
    result = {"images_scored": int(len(matrix)), "precision_all": float(matrix.mean())}
    for j in range(matrix.shape[1]):
        result[f"precision_text{j + 1}"] = float(matrix[:, j].mean())
    return result


def label_precision(
    samples: Sequence[TrainSample],
    image_id_of: Callable[[str], str],
    describes: Callable[[str, str], bool],
    has_concept: Callable[[str], bool],
    sentence_id: Callable[[str], str],
) -> float:
    """Fraction of training texts that describe their image (ground truth), over labelled images."""
    flags = [
        describes(image_id_of(s.image_path), sentence_id(t))
        for s in samples
        if has_concept(image_id_of(s.image_path))
        for t in s.texts
    ]
    return float(np.mean(flags)) if flags else float("nan")


def ground_truth_tables(truth, root: Path | str) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(items, images, sentences) as a perfect extraction of the demo corpus would keep them.

    For tests and experiments on the bootstrap alone: no Dagster run, no extraction filters.
    Noisy images and sentences are left out; every text block keeps its position.
    """
    root = Path(root)
    items: dict[str, list] = {"doc_id": [], "position": [], "kind": []}
    imgs: dict[str, list] = {"image_id": [], "doc_id": [], "position": [], "path": []}
    sents: dict[str, list] = {"sentence_id": [], "doc_id": [], "position": [], "text": []}
    for doc in truth.documents:
        for slot in doc["images"]:
            items["doc_id"].append(doc["id"])
            items["position"].append(slot["position"])
            items["kind"].append("image")
            if slot["noise"] is None and truth.image_noise(slot["image_id"]) is None:
                for key, value in zip(
                    imgs,
                    (slot["image_id"], doc["id"], slot["position"], str(root / slot["path"])),
                    strict=True,
                ):
                    imgs[key].append(value)
        for block in doc["texts"]:
            items["doc_id"].append(doc["id"])
            items["position"].append(block["position"])
            items["kind"].append("text")
            for sent in block["sentences"]:
                if sent["noise"] is None:
                    for key, value in zip(
                        sents,
                        (sent["sentence_id"], doc["id"], block["position"], sent["text"]),
                        strict=True,
                    ):
                        sents[key].append(value)
    return pa.table(items), pa.table(imgs), pa.table(sents)


def top1_precision(
    image_vecs: np.ndarray,
    sentence_vecs: np.ndarray,
    image_ids: Sequence[str],
    sentence_ids: Sequence[str],
    truth,
) -> dict[str, float]:
    """Ground-truth precision of exact top-3 retrieval over every sentence (demo corpus)."""
    top = retrieve_exact(image_vecs, sentence_vecs, k=3).indices
    return retrieval_precision(
        list(image_ids),
        [[sentence_ids[j] for j in row] for row in top],
        truth.describes,
        lambda i: truth.image_concept(i) is not None,
    )
