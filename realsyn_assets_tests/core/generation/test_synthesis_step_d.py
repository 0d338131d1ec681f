"""The synthetic_texts step's core: calibrated tags (zero tags possible), the grounded rewrite
(fixes a wrong colour the caption and image agree on, keeps a right text1, deterministic), the
content cache (zero calls on rerun, regenerate on model / prompt change) and the invalid-output
policy (fallback / drop, counted)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from realsyn_assets.core.generation import synthesis, tagging
from realsyn_assets.core.generation.offline import GroundedRewriteFusion, substitute
from realsyn_assets.core.generation.prompts import FusionInput

DIM = 64
KINDS = {
    "colour": ["red", "blue", "green", "yellow"],
    "shape": ["circle", "square", "star"],
    "scene": ["grass", "sky", "sea"],
}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _rand(name: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(DIM)


class WordEncoder:
    """A toy text tower: a text is the sum of its word vectors; words of one kind (colours,
    shapes, scenes) share a component, so "red" is nearer "blue" than "circle"."""

    identity = "toy-encoder"
    dim = DIM

    def __init__(self):
        self.calls = 0

    def word(self, w: str) -> np.ndarray:
        for kind, words in KINDS.items():
            if w in words:
                return _unit(0.8 * _unit(_rand("kind:" + kind)) + 0.6 * _unit(_rand(w)))
        return 0.15 * _unit(_rand(w))  # function words: small

    def encode_texts(self, texts):
        self.calls += 1
        out = []
        for t in texts:
            words = [w.strip(".,").lower() for w in str(t).split()]
            v = sum((self.word(w) for w in words if w), np.zeros(DIM)) + 1e-3 * _rand("bias")
            out.append(_unit(v))
        return np.asarray(out, np.float32).reshape(len(texts), DIM)


def image(*words: str) -> np.ndarray:
    enc = WordEncoder()
    return _unit(sum(enc.word(w) for w in words))


# ---- tags ------------------------------------------------------------------------------------


def test_calibrated_threshold_allows_zero_tags_and_caps():
    vocab = ["red", "circle", "grass", "dog"]
    sims = np.array([[0.9, 0.8, 0.2, 0.1], [0.3, 0.25, 0.2, 0.1]], np.float32)
    labels = tagging.mention_labels(vocab, [["a red circle"], ["nothing here"]])
    assert labels.tolist() == [[True, True, False, False], [False] * 4]
    cal = tagging.calibrate_threshold(sims, labels)
    assert cal.threshold == pytest.approx(0.8) and cal.f1 == pytest.approx(1.0)
    tags, scores = tagging.select_calibrated(sims, vocab, cal.threshold, max_tags=5)
    assert tags == [["red", "circle"], []]  # the second image gets no tag at all
    assert scores[0] == pytest.approx([0.9, 0.8])
    capped, _ = tagging.select_calibrated(sims, vocab, cal.threshold, max_tags=1)
    assert capped == [["red"], []]


def test_calibration_without_any_mention_gives_no_tags():
    sims = np.array([[0.5, 0.4]], np.float32)
    cal = tagging.calibrate_threshold(sims, np.zeros((1, 2), bool))
    assert cal.positives == 0 and cal.threshold > 0.5
    assert tagging.select_calibrated(sims, ["a", "b"], cal.threshold, 5)[0] == [[]]


def test_tag_list_file_merges_first(tmp_path):
    path = tmp_path / "tags.txt"
    path.write_text("Beach\n# comment\n\nsunset  # note\nbeach\n")
    user = tagging.read_tag_list(path)
    assert user == ["beach", "sunset"]
    assert tagging.merge_vocabulary(user, ["sunset", "dog", "cat"], size=3) == [
        "beach",
        "sunset",
        "dog",
    ]
    assert tagging.read_tag_list("") == []
    with pytest.raises(FileNotFoundError):
        tagging.read_tag_list(tmp_path / "missing.txt")


# ---- grounded rewrite ------------------------------------------------------------------------


def test_rewrite_fixes_a_wrong_colour_when_caption_and_image_agree():
    fusion = GroundedRewriteFusion(encoder=WordEncoder())
    item = FusionInput("Here you see a red circle on the grass", "a photo of a blue circle", [])
    out = fusion.generate([item], image("blue", "circle", "grass")[None, :])[0]
    assert out == "Here you see a blue circle on the grass."


def test_rewrite_keeps_a_right_text1_and_is_deterministic():
    item = FusionInput("Two red circles on the grass", "a blue circle", ["grass"])
    vec = image("red", "circle", "grass")[None, :]
    a = GroundedRewriteFusion(encoder=WordEncoder()).generate([item], vec)
    b = GroundedRewriteFusion(encoder=WordEncoder()).generate([item, item], np.repeat(vec, 2, 0))
    assert a[0] == "Two red circles on the grass." == b[0] == b[1]


def test_rewrite_appends_new_tags_and_never_returns_empty():
    fusion = GroundedRewriteFusion(encoder=None, max_tags=2)
    out = fusion.fuse(FusionInput("a quiet street", None, ["street", "car", "tree", "moon"]))
    assert out == "A quiet street, with car and tree."
    assert fusion.fuse(FusionInput("", None, [])) == "An image."
    assert fusion.fuse(FusionInput("", "a photo of a red car.", [])) == "A red car."


def test_substitute_keeps_number_and_case():
    assert substitute("Two Red wedges and a wedge", "wedges", "circle") == (
        "Two Red circles and a circle"
    )
    assert substitute("Red sky", "red", "blue") == "Blue sky"


# ---- cache and policy through run_shard ------------------------------------------------------


class CountingCaptioner:
    backend = "toy"

    def __init__(self, model="cap-1", captions=None):
        self.model, self.calls, self.items = model, 0, 0
        self.captions = captions

    def caption(self, items):
        self.calls += 1
        self.items += len(items)
        return [self.captions[Path(it.image_path).stem] for it in items]


class CountingGenerator:
    name = "toy"

    def __init__(self, model="gen-1", outputs=None):
        self.model, self.calls, self.items = model, 0, 0
        self.outputs = outputs or {}

    def generate(self, items, image_vecs=None):
        self.calls += 1
        self.items += len(items)
        return [
            self.outputs.get(it.realistic_text, f"{it.caption} seen: {it.realistic_text}.")
            for it in items
        ]


class Input:
    def __init__(self, image_path, vector):
        self.image_path, self.vector = image_path, vector


def _inputs() -> synthesis.ShardInputs:
    rows = [
        ("img_a", "a red circle on the grass", ("red", "circle", "grass")),
        ("img_b", "a blue square in the sky", ("blue", "square", "sky")),
        ("img_c", "a green star on the sea", ("green", "star", "sea")),
    ]
    return synthesis.ShardInputs(
        image_ids=[r[0] for r in rows],
        image_paths=[f"/x/{r[0]}.jpg" for r in rows],
        image_vecs=np.stack([image(*r[2]) for r in rows]).astype(np.float32),
        texts=[[r[1], None, None] for r in rows],
        text_ids=[[f"snt_{r[0]}", None, None] for r in rows],
    )


CAPTIONS = {
    "img_a": "a red circle",
    "img_b": "a blue square",
    "img_c": "a green star",
}


def _run(tmp_path, captioner, generator, policy="fallback", prompt="p1"):
    enc = WordEncoder()
    vocab = ["red", "blue", "green", "circle", "square", "star"]
    tag_vecs = enc.encode_texts(vocab)
    cfg = synthesis.StepConfig(policy, 3, prompt, tmp_path / "_cache", "shard-000", enc.identity)
    return synthesis.run_shard(
        _inputs(), captioner, Input, "cv1", generator, enc, vocab, tag_vecs, cfg
    )


def test_rerun_makes_zero_calls_and_model_or_prompt_change_regenerates(tmp_path):
    cap, gen = CountingCaptioner(captions=CAPTIONS), CountingGenerator()
    first = _run(tmp_path, cap, gen)
    assert first.info["generated_now"] == 3 and first.info["captions_generated_now"] == 3
    cap2, gen2 = CountingCaptioner(captions=CAPTIONS), CountingGenerator()
    second = _run(tmp_path, cap2, gen2)
    assert (cap2.calls, gen2.calls) == (0, 0)
    assert second.info["generated_now"] == 0 and second.info["cache_hits"] == 3
    assert second.table.equals(first.table)
    gen3 = CountingGenerator(model="gen-2")
    assert _run(tmp_path, CountingCaptioner(captions=CAPTIONS), gen3).info["generated_now"] == 3
    gen4 = CountingGenerator(model="gen-2")
    _run(tmp_path, CountingCaptioner(captions=CAPTIONS), gen4, prompt="p2")
    assert gen4.items == 3
    cap5 = CountingCaptioner(model="cap-2", captions=CAPTIONS)
    _run(tmp_path, cap5, CountingGenerator(model="gen-2"), prompt="p2")
    assert cap5.items == 3  # a new captioner model captions again


BAD = {
    "a blue square in the sky": "I'm sorry, but I can't help with that request.",
    "a green star on the sea": "",
}


def test_policy_fallback_replaces_and_flags(tmp_path):
    result = _run(tmp_path, CountingCaptioner(captions=CAPTIONS), CountingGenerator(outputs=BAD))
    rows = result.table.to_pylist()
    assert [r["image_id"] for r in rows] == ["img_a", "img_b", "img_c"]
    assert rows[0]["syn_flags"] == []
    assert "refusal" in rows[1]["syn_flags"] and synthesis.FALLBACK in rows[1]["syn_flags"]
    assert rows[2]["syn_flags"] == ["empty", synthesis.FALLBACK]
    assert "sorry" not in rows[1]["syn_text"].lower() and rows[2]["syn_text"]
    assert result.info["invalid"] == 2 and result.info["fallback"] == 2
    assert result.syn_failures["refusal"] == 1 and result.syn_failures["empty"] == 1


def test_policy_drop_removes_and_counts(tmp_path):
    gen = CountingGenerator(outputs=BAD)
    result = _run(tmp_path, CountingCaptioner(captions=CAPTIONS), gen, policy="drop")
    assert result.table.column("image_id").to_pylist() == ["img_a"]
    assert result.info["dropped"] == 2 and result.info["invalid"] == 2
    again = _run(
        tmp_path,
        CountingCaptioner(captions=CAPTIONS),
        CountingGenerator(outputs=BAD),
        policy="drop",
    )
    assert again.info["generated_now"] == 0 and again.info["dropped"] == 2


def test_invalid_caption_is_flagged_and_not_used(tmp_path):
    captions = {**CAPTIONS, "img_b": "I'm sorry, I cannot describe images."}
    gen = CountingGenerator()
    result = _run(tmp_path, CountingCaptioner(captions=captions), gen)
    rows = result.table.to_pylist()
    assert "refusal" in rows[1]["caption_flags"]
    assert rows[1]["syn_text"].startswith("None seen")  # the fusion got no caption
    assert result.caption_failures["refusal"] == 1
