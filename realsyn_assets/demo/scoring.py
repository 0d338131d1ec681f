"""Demo-only scoring: how well retrieved or trained-on texts match the demo corpus's ground truth.

Production assets reach this only through `realsyn_assets.demo.hook`; it is meaningless on real data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from realsyn_assets.core.embedding.bootstrap.pairs import nearest_sentence_ids
from realsyn_assets.core.embedding.bootstrap.run import BootstrapRun
from realsyn_assets.core.ids import sentence_id
from realsyn_assets.core.retrieval.search import retrieve_exact, retrieve_in_document
from realsyn_assets.core.training.clip import TrainSample
from realsyn_assets.demo.vocabulary import COLOUR_WORDS, SHAPE_WORDS
from realsyn_assets.names import RetrievedTextsMetrics


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


def retrieved_texts_precision(
    retrieved: pa.Table,
    image_vecs: np.ndarray,
    members: pa.Table,
    sentence_vecs: np.ndarray,
    k: int,
    describes: Callable[[str, str], bool],
    has_concept: Callable[[str], bool],
) -> dict[str, float]:
    """One shard of `retrieved_texts` against the ground truth: the fraction of retrieved texts
    that describe the image's content (per rank and over all ranks), next to the text1 figure of
    in-document (MMC4-style) assignment, and how many labelled images were scored (the weight of
    this shard in the corpus figure)."""
    ids = retrieved.column("image_id").to_pylist()
    texts = list(
        zip(*(retrieved.column(f"text{j + 1}_id").to_pylist() for j in range(k)), strict=True)
    )
    ours = retrieval_precision(ids, texts, describes, has_concept)
    in_doc = retrieve_in_document(
        retrieved.column("doc_id").to_pylist(),
        image_vecs,
        members.column("doc_id").to_pylist(),
        np.asarray(sentence_vecs),
        k=1,
    )
    sentence_ids = members.column("sentence_id").to_pylist()
    baseline = retrieval_precision(
        ids,
        [[sentence_ids[i] if i >= 0 else None] for i in in_doc.indices[:, 0]],
        describes,
        has_concept,
    )
    names = RetrievedTextsMetrics
    scores = {
        f"{names.GT_PREFIX}{name}": float(v)
        for name, v in ours.items()
        if name.startswith("precision")
    }
    scores[names.GT_IN_DOCUMENT_PRECISION_TEXT1] = float(baseline.get("precision_text1", 0.0))
    scores[names.GT_IMAGES_SCORED] = int(ours.get("images_scored", 0))
    return scores


def bootstrap_baselines(truth, run: BootstrapRun, images: pa.Table) -> dict[str, float]:
    """Ground truth for what the bootstrap encoder is compared with and trained on.

    ``precision_*``: the in-document nearest sentence of each evaluated image (no model);
    ``round{r}_label_precision``: the share of round r's training texts that describe their image.
    """

    def labelled(image_id: str) -> bool:
        return truth.image_concept(image_id) is not None

    rows = run.eval_rows
    scores = retrieval_precision(
        [r["image_id"] for r in rows],
        nearest_sentence_ids(run.samples, [r["path"] for r in rows]),
        truth.describes,
        labelled,
    )
    id_of = dict(
        zip(images.column("path").to_pylist(), images.column("image_id").to_pylist(), strict=True)
    )
    for r, result in enumerate(run.results, start=1):
        scores[f"round{r}_label_precision"] = label_precision(
            result.pairs, id_of.__getitem__, truth.describes, labelled, sentence_id
        )
    return scores


@cache
def _concept_patterns(concept: str) -> tuple[re.Pattern, re.Pattern]:
    """(colour, shape) whole-word patterns for a "<colour> <shape>" concept, case-insensitive;
    every synonym and both numbers of every shape form count."""
    colour, shape = concept.split(" ", 1)
    colours = COLOUR_WORDS[colour]
    shapes = [form for pair in SHAPE_WORDS[shape] for form in pair]

    def whole_words(words: Sequence[str]) -> re.Pattern:
        alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        # A hyphen joins words ("cherry-red"), so it counts as part of a word at the edges.
        return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)

    return whole_words(colours), whole_words(shapes)


def names_concept(concept: str | None, text: str | None) -> bool | None:
    """Whether ``text`` names both the colour and the shape of ``concept`` (None: no concept)."""
    if concept is None:
        return None
    if not text:
        return False
    colour, shape = _concept_patterns(concept)
    return bool(colour.search(text)) and bool(shape.search(text))
