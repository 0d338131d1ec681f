"""Tests for realsyn_assets.core.text.sentences: splitting, word counts, URL/emoji rules, filter order."""

from __future__ import annotations

import time

import pytest

from realsyn_assets.core.text.sentences import (
    REJECT_EMOJI,
    REJECT_EMPTY,
    REJECT_TOO_LONG,
    REJECT_TOO_SHORT,
    REJECT_URL,
    SentenceFilterConfig,
    count_words,
    has_emoji,
    has_url,
    sentence_rejection,
    split_sentences,
)

# --------------------------------------------------------------------------- splitting


def test_split_paragraph_with_abbreviations_and_decimals():
    text = (
        "Dr. Smith moved to the U.S. in 2019 and paid $3.50 for coffee. "
        "Prices rose 2.5% last year. Is that a lot? Mr. Jones thinks so!"
    )
    assert split_sentences(text) == [
        "Dr. Smith moved to the U.S. in 2019 and paid $3.50 for coffee.",
        "Prices rose 2.5% last year.",
        "Is that a lot?",
        "Mr. Jones thinks so!",
    ]


def test_split_blank_line_is_a_hard_boundary_and_whitespace_is_collapsed():
    text = "  A heading without a period\n\n  The body   starts\nhere. Second one.  \n"
    assert split_sentences(text) == [
        "A heading without a period",
        "The body starts here.",
        "Second one.",
    ]


@pytest.mark.parametrize("text", [None, "", "   ", "\n\n\n", 17])
def test_split_robust_to_empty_and_non_strings(text):
    assert split_sentences(text) == []


def test_split_bytes_and_no_terminal_punctuation():
    assert split_sentences(b"caf\xc3\xa9 is open") == ["café is open"]
    assert split_sentences("no period at all") == ["no period at all"]


def test_split_huge_text_is_fast_and_complete():
    paragraph = "The cat sat on the mat. It was 3.5 m long. Dr. Who agreed. "
    text = "\n\n".join([paragraph * 50] * 40)  # ~120 kB, 6000 sentences
    t0 = time.perf_counter()
    out = split_sentences(text)
    assert time.perf_counter() - t0 < 10
    assert len(out) == 6000
    assert out[:3] == ["The cat sat on the mat.", "It was 3.5 m long.", "Dr. Who agreed."]


# --------------------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("sentence", "words"),
    [
        ("", 0),
        ("   ", 0),
        ("one", 1),
        ("Hello -- world & co.", 3),  # "--" and "&" have no letter/digit
        ("U.S. 3.5 don't … ___", 3),
        ("a_b _", 1),
        ("Ça va très bien", 4),
        ("2024 was 1 year", 4),
    ],
)
def test_count_words(sentence, words):
    assert count_words(sentence) == words


# --------------------------------------------------------------------------- URL


@pytest.mark.parametrize(
    "sentence",
    [
        "See https://example.org/a?b=1 for details.",
        "Read it at HTTP://EXAMPLE.ORG today.",
        "Docs on ftp://files.example.net are old.",
        "Visit www.example.com for more.",
        "Shop at Amazon.com this week.",
        "Find the slides at example.com/slides now.",
        "Short link bit.ly/3xYz shared.",
        "The story ran on news.bbc.co.uk yesterday.",
        "Write to jane@gmail.com if needed.",
        "See example.museum/exhibits for pictures.",
    ],
)
def test_url_positives(sentence):
    assert has_url(sentence)
    assert sentence_rejection(sentence) == REJECT_URL


@pytest.mark.parametrize(
    "sentence",
    [
        "Many fruits, e.g. apples, are sweet.",
        "The U.S. economy grew 2.5% in 2023.",
        "Pi is roughly 3.14159 in value.",
        "She earned a Ph.D. in 1999.",
        "Run main.py with config.json first.",
        "Version v1.2.3 fixed the bug.",
        "It ended.The next day was sunny.",
        "We met at 5 p.m. near St. Louis.",
        "Node.js is a runtime, i.e. an engine.",
        "Choose tea and/or coffee please.",
    ],
)
def test_url_negatives(sentence):
    assert not has_url(sentence)
    assert sentence_rejection(sentence) is None


# --------------------------------------------------------------------------- emoji


@pytest.mark.parametrize(
    "sentence",
    [
        "We loved the trip 😀 so much.",
        "My heart ❤️ is full today.",  # text-default pictograph + VS16
        "The flag 🇫🇷 flew high there.",
        "Press the 1️⃣ key now.",
        "A thumbs up 👍🏽 from me.",
        "The family 👨‍👩‍👧 went out together.",  # ZWJ sequence
        "All tests pass ✅ on CI.",  # BMP, emoji presentation by default
        "She rated it ⭐ five times.",
        "A rocket 🚀 took off today.",
    ],
)
def test_emoji_positives(sentence):
    assert has_emoji(sentence)
    assert sentence_rejection(sentence) == REJECT_EMOJI


@pytest.mark.parametrize(
    "sentence",
    [
        "© 2020 Example Press, all rights reserved.",
        "It was 25°C in the shade.",
        "東京 は 大きい 都市 です",
        "Café crème tastes very good.",
        "Specimens ♂ and ♀ were measured.",
        "The hotel got ★★★★☆ from critics.",
        "Brand™ products sell well here.",
        "हिन्दी क्‍ष text with a ZWJ inside",
        "Arrows → and ← point both ways.",
        "Check ✓ marks the done items.",
        "A dash — and an ellipsis … appear.",
    ],
)
def test_emoji_negatives(sentence):
    assert not has_emoji(sentence)
    assert sentence_rejection(sentence) is None


# --------------------------------------------------------------------------- filter order/bounds


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_word_count_boundaries():
    assert sentence_rejection(words(2)) == REJECT_TOO_SHORT
    assert sentence_rejection(words(3)) is None
    assert sentence_rejection(words(81)) is None
    assert sentence_rejection(words(82)) == REJECT_TOO_LONG
    # punctuation-only tokens do not count towards the minimum
    assert sentence_rejection("Yes -- indeed !") == REJECT_TOO_SHORT


def test_custom_config():
    config = SentenceFilterConfig(min_words=1, max_words=2)
    assert sentence_rejection("Hi", config) is None
    assert sentence_rejection("Hi there you", config) == REJECT_TOO_LONG


@pytest.mark.parametrize(
    ("sentence", "reason"),
    [
        (None, REJECT_EMPTY),
        ("", REJECT_EMPTY),
        ("  \n\t ", REJECT_EMPTY),
        ("www.example.com 😀", REJECT_URL),  # url before emoji
        ("Go 😀", REJECT_EMOJI),  # emoji before too_short
        ("Too short.", REJECT_TOO_SHORT),
        (words(90) + " 😀", REJECT_EMOJI),  # emoji before too_long
        (words(90) + " www.example.com", REJECT_URL),
    ],
)
def test_rejection_order(sentence, reason):
    assert sentence_rejection(sentence) == reason


def test_rule_stage_throughput():
    base = [
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "A man in a red jacket is riding a bicycle down the busy street.",
        "Café owners said the new menu, e.g. soups, sold out by 3.30 p.m.",
        "Two children play football in the park while their parents watch.",
    ]
    sentences = base * 5000
    t0 = time.perf_counter()
    for s in sentences:
        sentence_rejection(s)
    rate = len(sentences) / (time.perf_counter() - t0)
    assert rate > 20_000  # target is >= 50k/s per core; loose bound for noisy CI machines


def test_parallel_split_and_filter_matches_serial():
    from realsyn_assets.core.text.sentences import split_and_filter_blocks

    blocks = [f"Block {i} has a first sentence here. And a second one, {i}!" for i in range(40)]
    blocks += ["see www.example.com now please", "", "Tiny."]
    serial = split_and_filter_blocks(blocks, workers=1)
    parallel = split_and_filter_blocks(blocks, workers=2, batch_blocks=7, min_blocks=0)
    assert parallel == serial
    assert len(serial.starts) == len(blocks) + 1
    assert serial.block(0) == [
        ("Block 0 has a first sentence here.", None),
        ("And a second one, 0!", None),
    ]
    assert serial.block(len(blocks) - 3) == [("see www.example.com now please", "url")]
    assert serial.block(len(blocks) - 2) == []
    assert serial.block(len(blocks) - 1) == [("Tiny.", "too_short")]
    # the worker pool is started once per process and reused by the next call
    from realsyn_assets.core.text import sentences

    pool = next(iter(sentences._POOL.values()))
    again = split_and_filter_blocks(blocks, workers=2, batch_blocks=7, min_blocks=0)
    assert again == serial and next(iter(sentences._POOL.values())) is pool
