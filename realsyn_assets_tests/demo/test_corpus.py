"""Tests for the built-in demo corpus: layout, determinism, and that every label is true."""

from __future__ import annotations

import difflib
import io
import json
import time
from collections import Counter
from pathlib import Path

import imagehash
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFile

from realsyn_assets.core import ids
from realsyn_assets.demo.corpus import (
    DemoCorpus,
    GroundTruth,
    generate_demo_corpus,
    load_ground_truth,
)
from realsyn_assets.demo.vocabulary import (
    ACTION_VERB_FORMS,
    BOILERPLATE,
    CONCEPTS,
    IMAGE_NOISE_CLASSES,
    SENTENCE_NOISE_CLASSES,
    noise_class,
)


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory) -> tuple[DemoCorpus, GroundTruth, float]:
    root = tmp_path_factory.mktemp("demo_default")
    start = time.perf_counter()
    corpus = generate_demo_corpus(root)
    elapsed = time.perf_counter() - start
    return corpus, load_ground_truth(root), elapsed


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _load_strict(path: Path) -> None:
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as img:
            img.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _shard_rows(corpus: DemoCorpus) -> dict[str, dict]:
    """doc id -> row as stored (jsonl: image paths; parquet: image bytes)."""
    rows = {}
    for path in corpus.shard_paths:
        if path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                rows[row["id"]] = row
        else:
            for row in pq.read_table(path).to_pylist():
                rows[row["id"]] = row
    return rows


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = generate_demo_corpus(tmp_path / "a", n_docs=40, seed=3)
    b = generate_demo_corpus(tmp_path / "b", n_docs=40, seed=3)
    c = generate_demo_corpus(tmp_path / "c", n_docs=40, seed=4)
    files_a, files_b, files_c = _files(a.root), _files(b.root), _files(c.root)
    assert len(files_a) > 100
    assert files_a.keys() == files_b.keys()
    for name, data in files_a.items():
        assert files_b[name] == data, f"{name} differs between two runs with the same seed"
    for name in ("shard-000.jsonl", "shard-003.parquet", "ground_truth.json"):
        assert files_c[name] != files_a[name]


# ------------------------------------------------------------------------------ layout


def test_shard_layout_and_formats(default_corpus) -> None:
    corpus, gt, _ = default_corpus
    root = corpus.root
    names = [p.name for p in corpus.shard_paths]
    assert names == ["shard-000.jsonl", "shard-001.jsonl", "shard-002.jsonl", "shard-003.parquet"]
    assert corpus.ground_truth_path == root / "ground_truth.json"
    assert (root / "README.md").read_text().startswith("# RealSyn demo corpus")

    n_docs = 0
    for path in corpus.shard_paths[:-1]:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            n_docs += 1
            assert list(row) == ["id", "url", "texts", "images"]
            assert row["url"].startswith("https://demo.realsyn.invalid/doc/")
            assert len(row["texts"]) == len(row["images"]) > 0
            for text, image in zip(row["texts"], row["images"], strict=True):
                assert (text is None) != (image is None)
                if image is not None:
                    assert image.startswith("images/") and (root / image).is_file()
                else:
                    assert isinstance(text, str) and text[-1] in ".!?"

    table = pq.read_table(corpus.shard_paths[-1])
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("url").type == pa.string()
    assert table.schema.field("texts").type == pa.list_(pa.string())
    assert table.schema.field("images").type == pa.list_(pa.binary())
    docs = {d["id"]: d for d in gt.documents}
    for row in table.to_pylist():
        n_docs += 1
        doc = docs[row["id"]]
        assert doc["shard"] == 3 and doc["shard_file"] == "shard-003.parquet"
        assert len(row["texts"]) == len(row["images"]) == doc["n_items"]
        for text, image in zip(row["texts"], row["images"], strict=True):
            assert (text is None) != (image is None)
        for slot in doc["images"]:
            embedded = row["images"][slot["position"]]
            assert embedded == (root / slot["path"]).read_bytes()
            assert ids.image_id(embedded) == slot["image_id"]
    assert n_docs == len(gt.documents) == 240
    assert [d["shard"] for d in gt.documents] == sorted(d["shard"] for d in gt.documents)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_demo_corpus(tmp_path, n_docs=0)
    with pytest.raises(ValueError):
        generate_demo_corpus(tmp_path, n_docs=3, n_shards=4)


# ------------------------------------------------------------------------------ ground truth ids


def test_ground_truth_ids_match_files_and_texts(default_corpus) -> None:
    corpus, gt, _ = default_corpus
    root = corpus.root
    listed = {f["path"] for f in gt.image_files}
    assert listed == {p.relative_to(root).as_posix() for p in (root / "images").iterdir()}
    for f in gt.image_files:
        data = (root / f["path"]).read_bytes()
        assert ids.image_id(data) == f["image_id"] and len(data) == f["n_bytes"]
        assert f["image_id"] in gt.images

    rows = _shard_rows(corpus)
    slot_ids, occurrence_ids = Counter(), Counter()
    for doc in gt.documents:
        row = rows[doc["id"]]
        for slot in doc["images"]:
            stored = row["images"][slot["position"]]
            data = stored if isinstance(stored, bytes) else (root / stored).read_bytes()
            assert ids.image_id(data) == slot["image_id"]
            slot_ids[slot["image_id"]] += 1
        for block in doc["texts"]:
            texts = [s["text"] for s in block["sentences"]]
            assert row["texts"][block["position"]] == " ".join(texts)
            for sent in block["sentences"]:
                assert ids.sentence_id(sent["text"]) == sent["sentence_id"]
                occurrence_ids[sent["sentence_id"]] += 1
        assert doc["n_items"] == len(doc["images"]) + len(doc["texts"])
    assert slot_ids.keys() == gt.images.keys()
    assert all(gt.images[i]["n_references"] == n for i, n in slot_ids.items())
    assert occurrence_ids.keys() == gt.sentences.keys()
    assert all(gt.sentences[s]["count"] == n for s, n in occurrence_ids.items())
    first_texts = {rec["text"] for rec in gt.sentences.values()}
    assert all(ids.sentence_id(t) in gt.sentences for t in first_texts)


def test_sizes_match_the_plan(default_corpus) -> None:
    _, gt, elapsed = default_corpus
    s = gt.summary
    assert 600 <= s["n_image_slots"] <= 800
    assert 2000 <= s["n_sentences"] <= 4000
    assert s["n_unique_images"] < s["n_image_files"] <= s["n_image_slots"]
    assert s["n_unique_sentences"] < s["n_sentences"]
    assert elapsed < 20, f"default corpus took {elapsed:.1f}s"


def test_ground_truth_api(default_corpus) -> None:
    corpus, gt, _ = default_corpus
    again = load_ground_truth(corpus.ground_truth_path)
    assert again.images == gt.images and again.params["n_docs"] == 240
    assert len(CONCEPTS) == 48 and "red circle" in CONCEPTS

    describing = [r for r in gt.sentences.values() if r["kind"] == "describe" and r["image_id"]]
    rec = describing[0]
    assert gt.describes(rec["image_id"], rec["sentence_id"])
    assert (
        gt.image_concept(rec["image_id"])
        == gt.sentence_concept(rec["sentence_id"])
        == rec["concept"]
    )
    other = next(r for r in gt.images.values() if r["concept"] not in (None, rec["concept"]))
    assert not gt.describes(other["image_id"], rec["sentence_id"])
    boiler = next(r for r in gt.sentences.values() if r["kind"] == "boilerplate")
    assert gt.sentence_noise(boiler["sentence_id"]) == "boilerplate"
    assert gt.sentence_concept(boiler["sentence_id"]) is None
    assert not gt.describes(rec["image_id"], boiler["sentence_id"])
    tiny = next(r for r in gt.images.values() if r["noise"] == "tiny")
    assert gt.image_noise(tiny["image_id"]) == "tiny"
    assert gt.image_noise("img_missing") is None and gt.sentence_concept("snt_missing") is None
    assert noise_class("near_duplicate_of:img_1") == "near_duplicate"
    assert noise_class("exact_duplicate_of:img_1") == "exact_duplicate"
    assert noise_class("url") == "url" and noise_class(None) is None


# ------------------------------------------------------------------------------ noise: fractions


def test_every_noise_class_present_at_a_plausible_fraction(default_corpus) -> None:
    _, gt, _ = default_corpus
    slots = Counter(noise_class(s["noise"]) for s in gt.image_slots())
    n_slots = sum(slots.values())
    for kind in IMAGE_NOISE_CLASSES:
        assert 0.03 <= slots[kind] / n_slots <= 0.08, (kind, slots[kind], n_slots)
    assert 0.6 <= slots[None] / n_slots <= 0.8
    sents = Counter(noise_class(s["noise"]) for s in gt.sentence_occurrences())
    n_sents = sum(sents.values())
    for kind in SENTENCE_NOISE_CLASSES:
        assert 0.03 <= sents[kind] / n_sents <= 0.08, (kind, sents[kind], n_sents)
    assert gt.summary["sentence_classes"]["clean"] == sents[None]


# ------------------------------------------------------------------------------ noise: images


def test_image_quality_noise_is_real(default_corpus) -> None:
    corpus, gt, _ = default_corpus
    root = corpus.root
    modes = Counter()
    for rec in gt.images.values():
        path = root / rec["path"]
        if rec["noise"] == "corrupt":
            with pytest.raises(Exception):  # noqa: B017 - any decoder error is the point
                _load_strict(path)
            continue
        _load_strict(path)
        with Image.open(path) as img:
            w, h = img.size
            modes[img.mode] += 1
        assert (w, h) == (rec["width"], rec["height"])
        short, long = min(w, h), max(w, h)
        if rec["noise"] == "tiny":
            assert short < 100 and long <= 3 * short
        elif rec["noise"] == "extreme_aspect":
            assert short >= 100 and long > 3 * short
        elif rec["noise"] is None:
            assert 160 <= short and long <= 320 and 0.6 <= w / h <= 1.7
        else:  # near-duplicates: resized/cropped copies of normal images
            assert short >= 100 and long <= 3 * short
    assert modes["P"] >= 1 and modes["RGBA"] >= 1 and modes["RGB"] > 500
    kinds = Counter(r["corrupt_kind"] for r in gt.images.values() if r["noise"] == "corrupt")
    assert set(kinds) == {"truncated", "random_bytes", "empty"} and kinds["empty"] == 1
    empty = next(r for r in gt.images.values() if r["corrupt_kind"] == "empty")
    assert (root / empty["path"]).stat().st_size == 0
    # an empty bytes value in parquet would read as an empty slot, so it lives in a jsonl shard
    assert all(s["shard"] < 3 for s in gt.image_slots() if s["image_id"] == empty["image_id"])


def test_exact_duplicate_images(default_corpus) -> None:
    corpus, gt, _ = default_corpus
    first_seen: dict[str, dict] = {}
    n_dups = 0
    for slot in gt.image_slots():
        if noise_class(slot["noise"]) == "exact_duplicate":
            n_dups += 1
            original = first_seen[slot["image_id"]]
            assert slot["noise"] == f"exact_duplicate_of:{slot['image_id']}"
            assert original["document"] != slot["document"]
            assert original["shard"] < slot["shard"]  # the same image in another shard
        first_seen.setdefault(slot["image_id"], slot)
    assert n_dups >= 30
    copies = [f for f in gt.image_files if noise_class(f["noise"]) == "exact_duplicate"]
    assert copies, "byte-identical copies under another file name"
    for f in copies:
        original = gt.images[f["image_id"]]
        assert f["path"] != original["path"] and f["path"] in original["paths"]
        assert (corpus.root / f["path"]).read_bytes() == (
            corpus.root / original["path"]
        ).read_bytes()


def test_near_duplicate_images_differ_in_bytes_but_look_alike(default_corpus) -> None:
    corpus, gt, _ = default_corpus
    root = corpus.root

    def phash(rec: dict) -> imagehash.ImageHash:
        return imagehash.phash(Image.open(root / rec["path"]))

    near = [r for r in gt.images.values() if noise_class(r["noise"]) == "near_duplicate"]
    assert len(near) >= 30
    assert {r["near_kind"] for r in near} == {"requality", "resize", "crop"}
    for rec in near:
        source = gt.images[rec["noise"].split(":", 1)[1]]
        assert source["noise"] is None and source["concept"] == rec["concept"]
        assert (root / rec["path"]).read_bytes() != (root / source["path"]).read_bytes()
        assert phash(rec) - phash(source) <= 10
    # ... while unrelated normal images are perceptually distinct (no accidental near-duplicates)
    clean = [r for r in gt.images.values() if r["noise"] is None]
    bits = np.array([phash(r).hash.ravel() for r in clean])
    closest = min(
        int(np.count_nonzero(bits[i + 1 :] != bits[i], axis=1).min()) for i in range(len(bits) - 1)
    )
    assert closest > 10


# ------------------------------------------------------------------------------ noise: sentences


def test_sentence_noise_is_real(default_corpus) -> None:
    _, gt, _ = default_corpus
    seen: dict[str, dict] = {}
    for occ in gt.sentence_occurrences():
        text, kind = occ["text"], noise_class(occ["noise"])
        words = len(text.split())
        if kind == "boilerplate":
            assert text in BOILERPLATE
        elif kind == "url":
            assert "http://" in text or "https://" in text or "www." in text
        elif kind == "emoji":
            assert any(ord(ch) > 0x2000 for ch in text) and text.isascii() is False
        elif kind == "too_short":
            assert words <= 2
        elif kind == "too_long":
            assert words > 81
        elif kind == "exact_duplicate":
            original = seen[occ["sentence_id"]]
            assert original["document"] != occ["document"]
            assert ids.normalise_text(original["text"]) == ids.normalise_text(text)
        elif kind == "near_duplicate":
            source = gt.sentences[occ["noise"].split(":", 1)[1]]
            assert source["sentence_id"] != occ["sentence_id"]
            assert difflib.SequenceMatcher(None, source["text"].lower(), text.lower()).ratio() > 0.8
            assert gt.sentence_concept(occ["sentence_id"]) == source["concept"]
        if kind is None and gt.sentences[occ["sentence_id"]]["kind"] != "title":
            assert 3 <= words <= 25 and "http" not in text and "www." not in text
            assert all(ord(ch) < 0x2000 for ch in text)
        seen.setdefault(occ["sentence_id"], occ)
    variants = [o for o in gt.sentence_occurrences() if o["noise"] == "exact_duplicate"]
    assert any(o["text"] != gt.sentences[o["sentence_id"]]["text"] for o in variants), (
        "case variants"
    )
    assert len(set(BOILERPLATE)) >= 15


def test_describing_sentences(default_corpus) -> None:
    _, gt, _ = default_corpus
    describing = [
        r for r in gt.sentences.values() if r["kind"] in ("describe", "follow", "cross", "other")
    ]
    assert len(describing) > 800
    for rec in describing:
        words = rec["text"].rstrip(".!?").split()
        assert 6 <= len(words) <= 25
        assert ACTION_VERB_FORMS & set(words), rec["text"]
        assert rec["concept"] in CONCEPTS and rec["noise"] is None
        if rec["image_id"] is not None:
            assert gt.image_concept(rec["image_id"]) == rec["concept"]
    # wording varies: synonyms of a colour are used, not only its name
    reds = " ".join(r["text"] for r in describing if r["concept"].startswith("red "))
    assert sum(word in reds for word in ("crimson", "scarlet", "cherry-red")) >= 2


def test_descriptions_sit_next_to_their_images(default_corpus) -> None:
    _, gt, _ = default_corpus
    near, total = 0, 0
    for doc in gt.documents:
        blocks = {b["position"]: b for b in doc["texts"]}
        for slot in doc["images"]:
            if gt.image_concept(slot["image_id"]) is None:
                continue
            total += 1
            neighbours = [blocks.get(slot["position"] - 1), blocks.get(slot["position"] + 1)]
            sids = [s["sentence_id"] for b in neighbours if b for s in b["sentences"]]
            near += any(gt.describes(slot["image_id"], sid) for sid in sids)
    assert near / total >= 0.75, (near, total)
    cross = [r for r in gt.sentences.values() if r["kind"] == "cross"]
    assert len(cross) >= 40 and all(r["image_id"] for r in cross)


def test_punkt_splitter_recovers_every_sentence(default_corpus) -> None:
    from nupunkt.models import load_default_model

    tokenizer = load_default_model()
    _, gt, _ = default_corpus
    for doc in gt.documents:
        for block in doc["texts"]:
            texts = [s["text"] for s in block["sentences"]]
            assert tokenizer.tokenize(" ".join(texts)) == texts


# ------------------------------------------------------------------------------ scale and reuse


def test_scales_linearly_with_n_docs(tmp_path: Path) -> None:
    small = load_ground_truth(generate_demo_corpus(tmp_path / "s", n_docs=40).root).summary
    large = load_ground_truth(generate_demo_corpus(tmp_path / "l", n_docs=80).root).summary
    for key in ("n_image_slots", "n_sentences", "n_image_files"):
        assert 1.6 <= large[key] / small[key] <= 2.4, (key, small[key], large[key])
    assert 90 <= small["n_image_slots"] <= 150 and 330 <= small["n_sentences"] <= 700
    for kind in IMAGE_NOISE_CLASSES:  # even a small corpus has every noise class
        assert small["image_slot_classes"].get(kind, 0) >= 1
    for kind in SENTENCE_NOISE_CLASSES:
        assert small["sentence_classes"].get(kind, 0) >= 1


def test_single_shard_is_parquet(tmp_path: Path) -> None:
    corpus = generate_demo_corpus(tmp_path, n_docs=12, n_shards=1, seed=5)
    assert [p.name for p in corpus.shard_paths] == ["shard-000.parquet"]
    assert pq.read_table(corpus.shard_paths[0]).num_rows == 12
    assert not list(tmp_path.glob("*.jsonl"))


def test_reuses_a_matching_corpus_and_replaces_a_different_one(tmp_path: Path) -> None:
    first = generate_demo_corpus(tmp_path, n_docs=40)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    start = time.perf_counter()
    again = generate_demo_corpus(tmp_path, n_docs=40)
    assert time.perf_counter() - start < 0.5
    assert again == first
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}

    # a damaged file is detected (size check) and the corpus is rebuilt
    shard = tmp_path / "shard-000.jsonl"
    original = shard.read_bytes()
    shard.write_bytes(original[:100])
    generate_demo_corpus(tmp_path, n_docs=40)
    assert shard.read_bytes() == original

    # other parameters: rebuilt, and the old corpus's extra shards are removed
    other = generate_demo_corpus(tmp_path, n_docs=40, n_shards=2)
    assert [p.name for p in other.shard_paths] == ["shard-000.jsonl", "shard-001.parquet"]
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == [
        "shard-000.jsonl",
        "shard-001.parquet",
    ]
    assert json.loads((tmp_path / "manifest.json").read_text())["params"]["n_shards"] == 2
    gt = load_ground_truth(tmp_path)
    assert {f["path"] for f in gt.image_files} == {
        p.relative_to(tmp_path).as_posix() for p in (tmp_path / "images").iterdir()
    }
    assert not list(tmp_path.rglob("*.tmp"))


def test_corpus_does_not_depend_on_its_location(tmp_path: Path) -> None:
    a = generate_demo_corpus(tmp_path / "x" / "deep", n_docs=10, n_shards=2, seed=9)
    b = generate_demo_corpus(str(tmp_path / "y"), n_docs=10, n_shards=2, seed=9)
    assert isinstance(b.root, Path)
    assert _files(a.root) == _files(b.root)
    row = json.loads(a.shard_paths[0].read_text().splitlines()[0])
    image = next(i for i in row["images"] if i)
    assert not Path(image).is_absolute()
    assert Image.open(io.BytesIO((a.root / image).read_bytes())).size[0] > 0
