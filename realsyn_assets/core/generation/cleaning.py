"""Turning raw LLM output into one training caption: no preamble, label, quotes or markup, one
sentence, at most `max_words` words."""

from __future__ import annotations

import re

_PREFIX = re.compile(
    r"^\s*(?:"
    r"(?:sure|certainly|okay|ok)\b[^:\n]*:"  # "Sure, here is the caption:"
    r"|here(?:'s| is| are)\b[^:\n]*:"  # "Here is the fused sentence:"
    r"|(?:the\s+)?(?:fused|merged|final|combined|new|rewritten|synthetic|image)?\s*"
    r"(?:caption|sentence|description|output|answer|text|response)\s*:"
    r")\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»*_"
_MARKUP = "*_#>-•· \t"
SPACE = re.compile(r"\s+")
_SENT_END = re.compile(r"[.!?](?=\s+[\"'“‘(]?[A-Z0-9])")
# Tokens that end with a period without ending a sentence.
_ABBREV = frozenset(
    "mr mrs ms dr st jr sr prof mt ft no vs etc inc ltd co corp dept fig approx ca est gen col "
    "lt sgt capt rev ave blvd rd jan feb mar apr aug sept sep oct nov dec e.g i.e u.s u.k".split()
)


def _first_sentence(text: str) -> str:
    for match in _SENT_END.finditer(text):
        head = text[: match.start()]
        last = head.rsplit(" ", 1)[-1].lower().strip(_QUOTES + "(")
        if last in _ABBREV or len(last) == 1:
            continue  # "St. Louis", "J. Smith"
        if len(head.split()) < 2:
            continue  # a lone word is not a sentence; keep reading
        return text[: match.start() + 1]
    return text


def clean_generation(text: str, max_words: int = 77) -> str:
    """Turn raw LLM output into one caption: drop preambles/labels/quotes, one sentence, truncate.

    Chat models like to answer "Sure! Here is the caption:\\n\\n\\"A dog ...\\"" — only the
    sentence itself is a training text. Returns "" when nothing usable is left.
    """
    if not text:
        return ""
    lines = [ln.strip() for ln in str(text).replace("\r", "\n").split("\n")]
    body = ""
    for line in lines:
        if not line:
            continue
        stripped = line
        while True:  # labels can stack and hide in markdown: "**Sure! Caption:** ..."
            new = _PREFIX.sub("", stripped.lstrip(_MARKUP), count=1)
            if new == stripped:
                break
            stripped = new
        stripped = stripped.lstrip(_MARKUP).strip()
        if not stripped.strip(_QUOTES + " "):
            continue  # the line was only a preamble ("Here is the sentence:")
        if stripped.endswith(":") and len(stripped.split()) <= 8:
            continue  # an unrecognised preamble line
        body = stripped
        break
    body = SPACE.sub(" ", body).strip().strip(_QUOTES).strip()
    body = _first_sentence(body).strip().strip(_QUOTES).strip()
    words = body.split()
    if max_words > 0 and len(words) > max_words:
        body = " ".join(words[:max_words]).rstrip(",;:-– ")
    return body
