"""Built-in demo corpus: small, deterministic, OBELICS-layout interleaved documents with known noise.

Why it exists: `realsyn demo` and the tests need a corpus that runs the whole pipeline offline in
seconds and lets every stage be *scored*. So every item is synthetic and labelled:

* images are drawn procedurally (a concept = colour x shape, on a background scene, 1-5 objects),
* every sentence is written from templates, so we know which concept it describes,
* each noise class the filters must meet is injected at a known fraction (~3-8% each):
  tiny / extreme-aspect / corrupt / exact-duplicate / near-duplicate images, and boilerplate /
  URL / emoji / too-short / too-long / exact-duplicate / near-duplicate sentences.

Layout under ``root``::

    shard-000.jsonl ... shard-{n-2}.jsonl   one JSON document per line, image paths
    shard-{n-1}.parquet                      same documents, images embedded as bytes
    images/                                  the image files (jpg, png, bin)
    ground_truth.json                        what every image / sentence / document is
    README.md                                a few lines for humans
    manifest.json                            parameters + file sizes, written last (reuse check)

Ground truth, two levels (like the pipeline, which ids content):

* ``images`` (image_id -> record) and ``sentences`` (sentence_id -> record) hold the *first*
  occurrence of each content id, with ``count`` = how often it occurs. Their ``noise`` is
  the item's intrinsic noise (``tiny``, ``url``, ``near_duplicate_of:<id>`` ...), null if clean.
* Occurrences carry their own noise: ``documents[*].images[*].noise`` and
  ``documents[*].texts[*].sentences[*].noise``. A repeat of earlier content is tagged there
  (``exact_duplicate_of:<image_id>`` / ``exact_duplicate``), because a repeat has the same id as
  its original and so cannot be told apart at the id level. ``image_files`` lists every file,
  so byte-identical copies saved under another name are tagged ``exact_duplicate_of:<id>``.

Determinism: one ``random.Random(seed)`` drives the plan; every image is drawn from its own
derived seed; nothing depends on time, paths or dict/set iteration order of unseeded data.
With the same Pillow/libjpeg/pyarrow the same seed gives byte-identical files.

Sentence splitting: each text block is sentences joined by single spaces, each ending in
``.``, ``!`` or ``?``, without abbreviations, so a Punkt splitter recovers them exactly.
Note ``ids.normalise_text`` case-folds: a sentence differing from another only by case has the
same id, so case-only variants are emitted as *exact* duplicates; near-duplicate sentences
always change a word or the punctuation.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realsyn_assets.core import ids
from realsyn_assets.core.io import atomic_write_bytes
from realsyn_assets.demo.planner import (
    Doc,
    ImageSpec,
    Plan,
    Planner,
    Sent,
    Slot,
    _n_words,
    _shard_paths,
)
from realsyn_assets.demo.render import _materialise
from realsyn_assets.demo.vocabulary import CONCEPTS, noise_class

GENERATOR_VERSION = 1
MANIFEST_NAME = "manifest.json"
GROUND_TRUTH_NAME = "ground_truth.json"
URL_PREFIX = "https://demo.realsyn.invalid/doc/"


@dataclass(frozen=True)
class DemoCorpus:
    root: Path
    shard_paths: list[Path]  # in shard order
    ground_truth_path: Path


@dataclass
class GroundTruth:
    """Labels of the demo corpus; see the module docstring for the two levels (id / occurrence)."""

    images: dict[str, dict]  # image_id -> record of its first occurrence
    sentences: dict[str, dict]  # sentence_id -> record of its first occurrence
    documents: list[dict]
    image_files: list[dict] = field(default_factory=list)  # one per file under images/
    params: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def image_concept(self, image_id: str) -> str | None:
        rec = self.images.get(image_id)
        return rec["concept"] if rec else None

    def sentence_concept(self, sentence_id: str) -> str | None:
        rec = self.sentences.get(sentence_id)
        return rec["concept"] if rec else None

    def describes(self, image_id: str, sentence_id: str) -> bool:
        """True when both have the same non-null concept."""
        concept = self.image_concept(image_id)
        return concept is not None and concept == self.sentence_concept(sentence_id)

    def image_noise(self, image_id: str) -> str | None:
        """Intrinsic noise of the image content; repeats are tagged per slot (image_slots)."""
        rec = self.images.get(image_id)
        return rec["noise"] if rec else None

    def sentence_noise(self, sentence_id: str) -> str | None:
        """Intrinsic noise of the sentence; repeats are tagged per occurrence (sentence_occurrences)."""
        rec = self.sentences.get(sentence_id)
        return rec["noise"] if rec else None

    def image_slots(self) -> Iterator[dict]:
        """Every image slot of every document, in corpus order, with its occurrence noise."""
        for doc in self.documents:
            for slot in doc["images"]:
                yield {"document": doc["id"], "shard": doc["shard"], **slot}

    def sentence_occurrences(self) -> Iterator[dict]:
        """Every emitted sentence, in corpus order, with its occurrence noise."""
        for doc in self.documents:
            for block in doc["texts"]:
                for sent in block["sentences"]:
                    yield {
                        "document": doc["id"],
                        "shard": doc["shard"],
                        "position": block["position"],
                        **sent,
                    }


def load_ground_truth(root_or_file: Path | str) -> GroundTruth:
    path = Path(root_or_file)
    if path.is_dir():
        path = path / GROUND_TRUTH_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    return GroundTruth(
        images=data["images"],
        sentences=data["sentences"],
        documents=data["documents"],
        image_files=data.get("image_files", []),
        params=data.get("params", {}),
        summary=data.get("summary", {}),
    )


def generate_demo_corpus(
    root: Path | str, n_docs: int = 240, n_shards: int = 4, seed: int = 0
) -> DemoCorpus:
    """Write the corpus under root (atomic per file; if root already holds a corpus made with the same
    parameters, reuse it and return quickly)."""
    if n_docs < 1 or n_shards < 1:
        raise ValueError("n_docs and n_shards must be >= 1")
    if n_shards > n_docs:
        raise ValueError(f"n_shards ({n_shards}) > n_docs ({n_docs}): every shard needs a document")
    root = Path(root)
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_docs": n_docs,
        "n_shards": n_shards,
        "seed": seed,
    }
    corpus = DemoCorpus(root, _shard_paths(root, n_shards), root / GROUND_TRUTH_NAME)
    old_manifest = _read_manifest(root)
    if old_manifest is not None and _manifest_matches(root, old_manifest, params):
        return corpus

    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)  # a half-rewritten corpus is never "complete"
    plan = Planner(n_docs, n_shards, seed).build()
    written = _write_corpus(root, plan, params)
    if old_manifest is not None:  # remove files of a previous corpus that this one does not have
        for rel in old_manifest.get("files", {}):
            if rel not in written and not Path(rel).is_absolute() and ".." not in Path(rel).parts:
                (root / rel).unlink(missing_ok=True)
    manifest = {"params": params, "files": written}
    atomic_write_bytes(
        root / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True).encode()
    )
    return corpus


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _manifest_matches(root: Path, manifest: dict, params: dict) -> bool:
    if manifest.get("params") != params:
        return False
    try:
        return all(
            (root / rel).stat().st_size == size for rel, size in manifest.get("files", {}).items()
        )
    except OSError:
        return False


def _write_corpus(root: Path, plan: Plan, params: dict) -> dict[str, int]:
    """Materialise images, write every file atomically; returns {relative path: size}."""
    (root / "images").mkdir(exist_ok=True)
    written: dict[str, int] = {}

    def put(rel: str, data: bytes) -> None:
        atomic_write_bytes(root / rel, data)
        written[rel] = len(data)

    hashes: list[np.ndarray] = []  # phashes of the normal images drawn so far
    for spec in plan.specs:  # creation order: a duplicate's source always comes first
        _materialise(spec, hashes)
        put(spec.name, spec.data)

    rows = [_document_row(doc) for doc in plan.docs]
    for shard in range(plan.n_shards):
        shard_rows = [
            (doc, row) for doc, row in zip(plan.docs, rows, strict=True) if doc.shard == shard
        ]
        path = _shard_paths(root, plan.n_shards)[shard]
        if path.suffix == ".jsonl":
            lines = [json.dumps(row, ensure_ascii=False) for _, row in shard_rows]
            put(path.name, ("\n".join(lines) + "\n").encode("utf-8"))
        else:
            put(
                path.name,
                _parquet_bytes([doc for doc, _ in shard_rows], [row for _, row in shard_rows]),
            )

    truth = _ground_truth(plan, params)
    put(GROUND_TRUTH_NAME, json.dumps(truth, ensure_ascii=False, indent=1).encode("utf-8"))
    put("README.md", _readme(truth).encode("utf-8"))
    return written


def _block_text(block: list[Sent]) -> str:
    return " ".join(s.text for s in block)


def _document_row(doc: Doc) -> dict:
    texts: list[str | None] = []
    images: list[str | None] = []
    for block in doc.blocks:
        if isinstance(block, Slot):
            texts.append(None)
            images.append(block.spec.name)
        else:
            texts.append(_block_text(block))
            images.append(None)
    return {"id": doc.doc_id, "url": f"{URL_PREFIX}{doc.index}", "texts": texts, "images": images}


def _parquet_bytes(docs: list[Doc], rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    embedded = [[b.spec.data if isinstance(b, Slot) else None for b in doc.blocks] for doc in docs]
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.string()),
            "url": pa.array([r["url"] for r in rows], pa.string()),
            "texts": pa.array([r["texts"] for r in rows], pa.list_(pa.string())),
            "images": pa.array(embedded, pa.list_(pa.binary())),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _ground_truth(plan: Plan, params: dict) -> dict:
    images: dict[str, dict] = {}
    sentences: dict[str, dict] = {}
    documents = []
    slot_noise: dict[str, int] = {}
    sent_noise: dict[str, int] = {}
    n_slots = n_sents = 0
    for doc in plan.docs:
        doc_images, doc_texts = [], []
        for pos, block in enumerate(doc.blocks):
            if isinstance(block, Slot):
                spec = block.spec
                intrinsic = _intrinsic_image_noise(spec)
                if spec.image_id in images:
                    rec = images[spec.image_id]
                    rec["n_references"] += 1
                    rec["documents"].append(doc.doc_id)
                    if spec.name not in rec["paths"]:
                        rec["paths"].append(spec.name)
                    noise = (
                        intrinsic
                        if intrinsic and spec.kind != "copy"
                        else f"exact_duplicate_of:{spec.image_id}"
                    )
                else:
                    images[spec.image_id] = _image_record(spec, intrinsic, doc)
                    noise = intrinsic
                doc_images.append(
                    {"position": pos, "image_id": spec.image_id, "path": spec.name, "noise": noise}
                )
                n_slots += 1
                key = noise_class(noise) or ("png" if spec.kind == "png" else "clean")
                slot_noise[key] = slot_noise.get(key, 0) + 1
            else:
                occ = []
                for sent in block:
                    sid = ids.sentence_id(sent.text)
                    intrinsic = _intrinsic_sentence_noise(sent)
                    if sid in sentences:
                        sentences[sid]["count"] += 1
                        noise = (
                            intrinsic
                            if intrinsic not in (None, "exact_duplicate")
                            else "exact_duplicate"
                        )
                    else:
                        if intrinsic == "exact_duplicate":  # a copy whose original is not earlier
                            intrinsic = None
                        sentences[sid] = _sentence_record(sent, sid, intrinsic, doc)
                        noise = intrinsic
                    occ.append({"sentence_id": sid, "text": sent.text, "noise": noise})
                    n_sents += 1
                    key = noise_class(noise) or "clean"
                    sent_noise[key] = sent_noise.get(key, 0) + 1
                doc_texts.append({"position": pos, "sentences": occ})
        documents.append(
            {
                "id": doc.doc_id,
                "url": f"{URL_PREFIX}{doc.index}",
                "shard": doc.shard,
                "shard_file": _shard_paths(Path("."), plan.n_shards)[doc.shard].name,
                "n_items": len(doc.blocks),
                "images": doc_images,
                "texts": doc_texts,
            }
        )
    image_files = []
    for spec in plan.specs:
        noise = (
            f"exact_duplicate_of:{spec.image_id}"
            if spec.kind == "copy"
            else _intrinsic_image_noise(spec)
        )
        image_files.append(
            {
                "path": spec.name,
                "image_id": spec.image_id,
                "noise": noise,
                "n_bytes": len(spec.data),
            }
        )
    summary = {
        "n_documents": len(documents),
        "n_image_slots": n_slots,
        "n_image_files": len(image_files),
        "n_unique_images": len(images),
        "n_sentences": n_sents,
        "n_unique_sentences": len(sentences),
        "image_slot_classes": dict(sorted(slot_noise.items())),
        "sentence_classes": dict(sorted(sent_noise.items())),
    }
    return {
        "params": params,
        "concepts": CONCEPTS,
        "summary": summary,
        "images": images,
        "image_files": image_files,
        "sentences": sentences,
        "documents": documents,
    }


def _intrinsic_image_noise(spec: ImageSpec) -> str | None:
    if spec.kind in ("tiny", "extreme_aspect", "corrupt"):
        return spec.kind
    if spec.kind == "near_duplicate":
        return f"near_duplicate_of:{spec.source.image_id}"
    if spec.kind == "copy":
        return f"exact_duplicate_of:{spec.source.image_id}"
    return None


def _image_record(spec: ImageSpec, noise: str | None, doc: Doc) -> dict:
    return {
        "image_id": spec.image_id,
        "path": spec.name,
        "paths": [spec.name],
        "concept": spec.concept,
        "scene": spec.scene if spec.concept else None,
        "count": spec.count if spec.concept else None,
        "noise": noise,
        "width": spec.width,
        "height": spec.height,
        "format": {"jpg": "jpeg", "png": "png"}.get(spec.ext) if spec.kind != "corrupt" else None,
        "mode": spec.png_mode
        if spec.kind == "png"
        else ("RGB" if spec.kind != "corrupt" else None),
        "corrupt_kind": spec.corrupt_kind,
        "near_kind": spec.near_kind,
        "n_bytes": len(spec.data),
        "n_references": 1,
        "documents": [doc.doc_id],
        "shard": doc.shard,
    }


def _intrinsic_sentence_noise(sent: Sent) -> str | None:
    if sent.noise == "near_duplicate":
        return f"near_duplicate_of:{ids.sentence_id(sent.source.text)}"
    return sent.noise


def _sentence_record(sent: Sent, sid: str, noise: str | None, doc: Doc) -> dict:
    return {
        "sentence_id": sid,
        "text": sent.text,
        "concept": sent.concept,
        "image_id": sent.image.image_id if sent.image is not None else None,
        "noise": noise,
        "kind": sent.kind,
        "n_words": _n_words(sent.text),
        "count": 1,
        "document": doc.doc_id,
        "shard": doc.shard,
    }


def _readme(truth: dict) -> str:
    p, s = truth["params"], truth["summary"]
    return (
        "# RealSyn demo corpus\n\n"
        f"Synthetic interleaved web documents in the OBELICS layout (seed {p['seed']}, "
        f"{p['n_docs']} documents, {p['n_shards']} shards; generator v{p['generator_version']}).\n"
        "Images are drawn procedurally (a concept = colour x shape on a background scene); sentences "
        "come from templates, so `ground_truth.json` knows what every image and sentence shows and "
        "which noise class (tiny / extreme-aspect / corrupt / duplicate images; boilerplate / URL / "
        "emoji / too-short / too-long / duplicate sentences) it was injected as.\n\n"
        f"- image slots: {s['n_image_slots']} ({s['n_unique_images']} unique images)\n"
        f"- sentences: {s['n_sentences']} ({s['n_unique_sentences']} unique)\n"
        "- `shard-*.jsonl`: image paths relative to this folder; the last shard is parquet with "
        "embedded image bytes.\n"
        "Generated by `realsyn_assets.demo.corpus.generate_demo_corpus`.\n"
    )
