"""validate_text: each failure kind caught, and real captions / fused sentences passing."""

from __future__ import annotations

import pytest

from realsyn_assets.core.generation.validation import (
    FAILURE_KINDS,
    clip_token_count,
    normalise,
    validate_text,
)

WEB = "my puppy max loves the waves at carmel beach in 2019, it's his favourite spot"
CAPTION = "a dog running on the beach"
INPUTS = (WEB, CAPTION)

GOOD = [
    "A brown dog running on the wet sand.",
    "Max, a puppy, runs through the waves at Carmel beach in 2019, his favourite spot.",
    "Three red triangles lie in front of a bare grey screen.",
    "The Eiffel Tower in Paris lit up at night, seen from the Trocadéro.",
    "A man in St. Louis walks his two dogs past the old harbour at dusk.",
    "A dog and a cat and a bird sit on a sofa.",
    "Visit the old lighthouse at https://www.example.org/trip-shapes/15135 in spring.",
]


@pytest.mark.parametrize("text", GOOD)
def test_real_captions_and_fusions_pass(text):
    assert validate_text(text, INPUTS) == []


def test_kinds_are_the_published_tuple():
    assert FAILURE_KINDS == ("empty", "echo", "refusal", "repetition", "too_long", "garbage")


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_empty(text):
    assert validate_text(text, INPUTS) == ["empty"]


@pytest.mark.parametrize(
    "text",
    [
        WEB,
        WEB.upper(),
        "My puppy Max loves the waves at Carmel beach in 2019 -- it's his favourite spot!",
        "A dog running on the beach.",
        f"Here is the caption: {CAPTION}.",
        f"{WEB}. {CAPTION}.",  # the clues joined one after the other
    ],
)
def test_echo(text):
    assert "echo" in validate_text(text, INPUTS)


@pytest.mark.parametrize(
    "text",
    [
        f"{WEB}, with sand and waves.",  # the input plus new tag content: a fusion
        "A puppy named Max runs through the waves at Carmel beach in 2019.",
        CAPTION,  # no inputs given: nothing to echo
    ],
)
def test_not_echo(text):
    inputs = () if text == CAPTION else INPUTS
    assert "echo" not in validate_text(text, inputs)


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that request.",
        "I am sorry, I cannot describe this image.",
        "As an AI language model, I cannot see images.",
        "I cannot assist with creating that caption.",
        "Sorry, but I won't generate that.",
        "I apologize, but this request violates my guidelines.",
        "I'm unable to process images.",
        "Unfortunately I can't view the image you provided.",
    ],
)
def test_refusal(text):
    assert "refusal" in validate_text(text, INPUTS)


@pytest.mark.parametrize(
    "text",
    [
        "A sorry-looking dog sits in the rain at the harbour.",
        "A sign reading 'cannot park here' next to a red bus.",
        "An AI robot toy on a wooden table.",
    ],
)
def test_not_refusal(text):
    assert "refusal" not in validate_text(text, INPUTS)


@pytest.mark.parametrize(
    "text",
    [
        "a dog on the beach a dog on the beach a dog on the beach",
        "The the the dog runs.",
        "beach beach dog beach sand beach beach",
    ],
)
def test_repetition(text):
    assert "repetition" in validate_text(text, INPUTS)


def test_not_repetition_for_a_normal_sentence_with_articles():
    assert "repetition" not in validate_text("A dog and a cat on a sofa by a window.", ())


def test_too_long_counts_clip_tokens():
    short = "A dog running on the beach."
    assert clip_token_count(short) == 9  # 7 BPE tokens + start + end
    long = " ".join(f"word{i}" for i in range(60))
    assert clip_token_count(long) > 77
    assert "too_long" in validate_text(long, ())
    assert "too_long" not in validate_text(short, ())


def test_too_long_with_custom_counter_and_budget():
    def count(text):
        return len(text.split())

    assert validate_text("one two three four", (), max_tokens=3, count_tokens=count) == ["too_long"]
    assert validate_text("one two three", (), max_tokens=3, count_tokens=count) == []


@pytest.mark.parametrize(
    "text",
    [
        "ingthe ofwalk stbeachre dsto rmeach ghtlhouse",  # sub-word soup
        "### ### @@@@@ !!!!! ?????",
        "a dog\x00 on the beach",  # control character
        "x" * 45 + " on the beach",  # one run-on token
        "12 34 56 78 90 11 22 33",
        "\ufffd\ufffd dog",
    ],
)
def test_garbage(text):
    assert "garbage" in validate_text(text, ())


def test_several_kinds_at_once_in_canonical_order():
    text = ("I'm sorry " * 30).strip()
    kinds = validate_text(text, ())
    assert kinds[:2] == ["refusal", "repetition"] and "too_long" in kinds
    assert kinds == [k for k in FAILURE_KINDS if k in kinds]


def test_normalise():
    assert normalise("  A DOG, on the   beach!! ") == "a dog on the beach"
