"""CAT-style complexity + action filter (core/text/cat.py)."""

from __future__ import annotations

import json
import time

import pytest

from realsyn_assets.core.text import cat as cf
from realsyn_assets.core.text.cat import (
    REJECT_LOW_COMPLEXITY,
    REJECT_NO_ACTION,
    analyse,
    caption_complexity,
    cat_rejection,
    cat_rejections,
    has_action,
)
from realsyn_assets_tests.conftest import SHARED_DATA

WIKI = SHARED_DATA / "wikipedia_raycharles_interleaved" / "docs.jsonl"
FLICKR = SHARED_DATA / "flickr8k_thumbs_dev" / "captions.jsonl"

DESCRIPTIVE_PROSE = [
    "Three red circles float above a grassy field.",
    "Charles recorded the album in New York in 1959.",
    "A girl going into a wooden building .",
    "A black dog and a spotted dog are fighting",
    "Young girl with pigtails painting outside in the grass .",
    "Styx also covered this song.",
    "He began formal piano studies at the age of nine.",
    "The album was produced by Joe Adams.",
    "A man and a woman walk outside .",
    "Two brown dogs run side by side .",
    "A boy with a dirty face smiles .",
    "After signing with Swing Time Records, he recorded two more hits.",
    "It is primarily a country song, but contains gospel influences.",
    "A little girl in pink dances with her hands on her hips .",
    "Two boys are doing funny poses .",
]

HEADINGS_AND_FRAGMENTS = [
    "Early life",
    "References",
    "Studio album by Ray Charles",
    "Track listing",
    "Produced by Jerry Wexler",
    "Alex Foster – tenor saxophone",
    '" Crying Time " (Buck Owens) – 2:54',
    "Retrieved 7 March 2009 .",
    "Lead vocal and piano by Ray Charles",
    "Stevie Wonder on I Was Made To Love Her",
    "Hit the Road Jack",
    "Album review at AMG",
    "(featuring Johnny Cash) (Kristofferson) – 3:57",
]


@pytest.mark.parametrize("sentence", DESCRIPTIVE_PROSE)
def test_descriptive_prose_is_kept(sentence):
    assert cat_rejection(sentence) is None, cf._tag(sentence)
    assert has_action(sentence)
    assert caption_complexity(sentence) >= 1


@pytest.mark.parametrize("sentence", HEADINGS_AND_FRAGMENTS)
def test_headings_and_fragments_are_rejected(sentence):
    assert cat_rejection(sentence) in (REJECT_LOW_COMPLEXITY, REJECT_NO_ACTION)
    assert not has_action(sentence)


def test_copula_and_verbless_captions_have_no_action():
    # CAT asks for an action: a description without a verb is rejected even if it has objects
    for sentence in (
        "A man in a red shirt .",
        "The dog is brown.",
        "Ray Charles was an American singer.",
    ):
        assert caption_complexity(sentence) >= 2
        assert cat_rejection(sentence) == REJECT_NO_ACTION


def test_noun_verb_homographs_follow_context():
    assert has_action("The band will record a new album.")  # after a modal: verb
    assert has_action("The record sold well.")  # "sold" is the verb, "record" the subject
    assert not has_action("A record of the session")  # after a determiner: noun
    assert has_action("She plays the piano.")
    assert not has_action("His plays and poems")
    assert not has_action("A painting of a dog")
    assert has_action("A girl painting a fence .")


def test_complexity_levels_follow_the_scene_graph():
    assert caption_complexity("") == 0
    assert caption_complexity("In 1959.") == 0  # no object
    assert caption_complexity("References") == 1  # one bare object
    assert caption_complexity("Early life") == 2  # object + attribute
    assert caption_complexity("A dog on a couch .") == 2  # two objects, one relation
    assert caption_complexity("A big dog on a red couch .") == 3
    assert caption_complexity("Three red circles float above a grassy field.") == 4
    info = analyse("Three red circles float above a grassy field.")
    assert (info.objects, info.attributes, info.relations) == (2, 3, 1)
    assert info.complexity <= cf.MAX_COMPLEXITY


def test_thresholds_are_configurable():
    assert cat_rejection("References", min_complexity=2, require_action=False) == (
        REJECT_LOW_COMPLEXITY
    )
    assert cat_rejection("Studio album by Ray Charles", require_action=False) is None
    assert cat_rejection("Studio album by Ray Charles", min_complexity=4) == REJECT_LOW_COMPLEXITY
    assert cat_rejection("A dog runs .", min_complexity=0) is None


@pytest.mark.parametrize("bad", [None, "", "   ", 42, "!!! ...", "\u2013 \u2014", "\udce9\udce9"])
def test_bad_input_is_a_rejection_not_a_crash(bad):
    assert cat_rejection(bad) in (REJECT_LOW_COMPLEXITY, REJECT_NO_ACTION)
    assert caption_complexity(bad) == 0


def test_unicode_and_long_input():
    assert cat_rejection("Angélica María recorded the Spanish version for her album.") is None
    long_sentence = " ".join(["The band played the song in the hall."] * 200)
    assert cat_rejection(long_sentence) is None


def test_deterministic_and_batch_matches_single():
    sentences = DESCRIPTIVE_PROSE + HEADINGS_AND_FRAGMENTS
    first = cat_rejections(sentences)
    cf._PIECE_CACHE.clear()
    second = [cat_rejection(s) for s in sentences]
    assert first == second


def test_lexicon_is_a_few_hundred_verbs_with_inflections():
    sizes = cf.lexicon_size()
    assert sizes["base_verbs"] >= 300
    assert sizes["word_forms"] > 3 * sizes["base_verbs"]
    for form in ("walks", "walked", "walking", "ran", "written", "stopped", "carried", "dying"):
        assert cf._LEXICON[form] in cf._VERBS_ALL, form


def test_speed_is_tens_of_thousands_per_second():
    sentences = [
        f"A {adj} dog number {i} runs across the {place} with a ball ."
        for i, (adj, place) in enumerate(
            (a, p) for a in ("black", "small", "happy", "wet") for p in ("park", "beach", "yard")
        )
    ] * 400
    cf._PIECE_CACHE.clear()
    start = time.process_time()
    cat_rejections(sentences)
    rate = len(sentences) / max(time.process_time() - start, 1e-9)
    # >= 20k/s measured on an idle core; the bound leaves room for a loaded test machine
    assert rate > 5_000, rate


# --------------------------------------------------------------------------- real data


def _wiki_rule_kept() -> list[str]:
    from realsyn_assets.core.text.sentences import sentence_rejection, split_sentences

    out = []
    with WIKI.open() as fh:
        for line in fh:
            for text in json.loads(line)["texts"]:
                if text:
                    out.extend(s for s in split_sentences(text) if sentence_rejection(s) is None)
    return out


@pytest.mark.skipif(not FLICKR.exists(), reason="shared Flickr8k sample not available")
def test_flickr_human_captions_nearly_all_pass():
    captions = []
    with FLICKR.open() as fh:
        for line in fh:
            captions.extend(json.loads(line)["captions"])
    reasons = cat_rejections(captions)
    passed = sum(r is None for r in reasons) / len(captions)
    assert len(captions) == 4330
    # measured 0.920; the rest are mostly verb-less captions ("A man in a red shirt .")
    assert passed >= 0.88, passed
    assert all(r in (None, REJECT_NO_ACTION, REJECT_LOW_COMPLEXITY) for r in reasons)


@pytest.mark.skipif(not WIKI.exists(), reason="shared Wikipedia sample not available")
def test_wikipedia_sentences_keep_prose_and_drop_listings():
    sentences = _wiki_rule_kept()
    reasons = cat_rejections(sentences)
    kept = sum(r is None for r in reasons) / len(sentences)
    # measured 0.51: track listings, personnel credits, citations and copula sentences go
    assert 0.35 <= kept <= 0.7, kept
    prose = [s for s in sentences if len(s.split()) >= 8 and s.endswith(".")]
    prose_kept = sum(cat_rejection(s) is None for s in prose) / len(prose)
    assert prose_kept >= 0.85, prose_kept  # measured 0.92
    listing = [s for s in sentences if " – " in s and s.rstrip()[-1].isdigit()]
    assert len(listing) > 50
    listing_kept = sum(cat_rejection(s) is None for s in listing) / len(listing)
    assert listing_kept <= 0.1, listing_kept
