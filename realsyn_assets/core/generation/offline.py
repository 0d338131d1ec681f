"""Deterministic rule-based fusion on CPU: the generator of tests, the demo and air-gapped runs."""

from __future__ import annotations

import re
from collections.abc import Sequence

from realsyn_assets.core.generation.cleaning import SPACE
from realsyn_assets.core.generation.prompts import FusionInput
from realsyn_assets.core.generation.tags import DEFAULT_STOPWORDS, WORD

_CAPTION_LEADS = re.compile(
    r"^\s*(?:(?:a|an|the)\s+)?(?:close[- ]up\s+)?(?:picture|photo(?:graph)?|image|view|shot|"
    r"illustration|drawing|painting)\s+of\s+|^\s*there\s+(?:is|are)\s+",
    re.IGNORECASE,
)
_CLITIC = re.compile(r"\s+('(?:s|re|ve|ll|d|m|t)\b|n't\b)", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?%)\]}])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{])\s+")
_SPLIT_DIGITS = re.compile(r"\b\d(?: \d\b)+")


def _detokenise(text: str) -> str:
    """Undo the CLIP-BPE look of released realistic texts ("it 's", "( x )", "2 0 1 9")."""
    text = SPACE.sub(" ", text).strip()
    text = _SPLIT_DIGITS.sub(lambda m: m.group(0).replace(" ", ""), text)
    text = _CLITIC.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    return text


def _stem(word: str) -> str:
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _content_stems(text: str) -> set[str]:
    return {_stem(w) for w in WORD.findall(text.lower()) if w not in DEFAULT_STOPWORDS}


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _strip_end(text: str) -> str:
    return text.strip().rstrip(".!?;:, ").strip()


class OfflineFusionGenerator:
    """Deterministic rule-based fusion: caption subject first, realistic details, two new tags.

    Not a language model: it exists so the pipeline, tests and demo run on CPU without weights.
    Output shape: "<Caption>: <realistic details>, with <tag> and <tag>." — every content word
    of the realistic text survives, only tags that add something new are appended, and the same
    input always yields the same sentence.
    """

    name = "offline"

    def __init__(self, max_words: int = 77, max_tags: int = 2):
        self.max_words = max_words
        self.max_tags = max_tags

    def fuse(self, item: FusionInput) -> str:
        caption = _strip_end(_CAPTION_LEADS.sub("", SPACE.sub(" ", item.caption or "")))
        details = _strip_end(_detokenise(item.realistic_text or ""))
        cap_stems = _content_stems(caption)
        det_stems = _content_stems(details)
        if details and det_stems and det_stems <= cap_stems:
            details = ""  # the realistic text adds nothing the caption lacks
        mentioned = cap_stems | det_stems

        tags: list[str] = []
        for tag in item.tags:
            tag = SPACE.sub(" ", (tag or "").strip().lower())
            stems = _content_stems(tag)
            if not tag or not stems or stems <= mentioned:
                continue
            tags.append(tag)
            mentioned |= stems
            if len(tags) >= self.max_tags:
                break

        tag_words = sum(len(t.split()) for t in tags) + (2 if tags else 0)
        budget = max(self.max_words - len(caption.split()) - tag_words, 8)
        if details:
            words = details.split()
            if len(words) > budget:
                details = _strip_end(" ".join(words[:budget]))

        if caption and details:
            head = f"{_capitalise(caption)}: {details}"
        else:
            head = _capitalise(caption or details)
        if tags:
            tag_text = " and ".join(tags)
            head = f"{head}, with {tag_text}" if head else f"An image of {tag_text}"
        if not head:
            return "An image."
        words = head.split()
        if len(words) > self.max_words:
            head = _strip_end(" ".join(words[: self.max_words]))
        return head + "."

    def generate(self, items: Sequence[FusionInput]) -> list[str]:
        return [self.fuse(item) for item in items]
