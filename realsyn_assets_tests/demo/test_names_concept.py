"""DemoScorer.names_concept: a text names an image's colour and shape (any synonym, whole words)."""

from __future__ import annotations

from realsyn_assets.demo.corpus import GroundTruth
from realsyn_assets.demo.hook import DemoScorer
from realsyn_assets.demo.scoring import names_concept


def _scorer() -> DemoScorer:
    images = {
        "img-red-star": {"concept": "red star", "noise": None},
        "img-green-cross": {"concept": "green cross", "noise": None},
        "img-unlabelled": {"concept": None, "noise": "tiny"},
    }
    return DemoScorer(GroundTruth(images=images, sentences={}, documents=[]))


def test_names_colour_and_shape_with_synonyms_and_any_case():
    assert names_concept("red star", "A crimson STARBURST over the sea.")
    assert names_concept("red star", "two cherry-red five-pointed stars")
    assert names_concept("green cross", "An emerald plus sign on the grass.")
    assert names_concept("blue ring", "Three navy hoops drift by.")


def test_needs_both_colour_and_shape():
    assert not names_concept("red star", "a red circle")
    assert not names_concept("red star", "a blue star")
    assert not names_concept("red star", "")
    assert not names_concept("red star", None)


def test_whole_words_only():
    # "starry" is not "star", "reddish" is not "red", "bored" holds no colour.
    assert not names_concept("red star", "a reddish glow under a starry sky")
    assert not names_concept("red star", "a bored star")
    # A hyphenated synonym counts only as a whole: "leaf-green" is green, "jet-black" is black.
    assert names_concept("green circle", "a leaf-green disc")
    assert not names_concept("red ring", "a cherry-redwood ring")


def test_scorer_returns_none_for_unlabelled_images():
    scorer = _scorer()
    flags = scorer.names_concept(
        ["img-red-star", "img-green-cross", "img-unlabelled", "img-unknown"],
        ["A scarlet star.", "A jade circle.", "A red star.", "A red star."],
    )
    assert flags == [True, False, None, None]
