"""Checks on one generated text (a caption or a synthetic text) before it becomes training data.

A language model can answer with nothing, repeat its input, refuse, loop, run past CLIP's
context or emit noise; each of these is a failure *kind*, so that a shard's failures can be
counted by kind and a policy (fallback, drop) applied per text. `validate_text` returns the kinds
that apply; an empty list means the text is usable.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

FAILURE_KINDS = ("empty", "echo", "refusal", "repetition", "too_long", "garbage")

# CLIP's text context, start and end tokens included.
CLIP_CONTEXT = 77

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_TOKEN = re.compile(r"\w+(?:['’]\w+)?")
_NON_WORD_RUN = re.compile(r"[^\w\s]{5,}")
_LONG_TOKEN = re.compile(r"\S{40,}")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)

# Words that add nothing when wrapped around a pasted input ("Here is the caption: <input>.").
_FILLER = frozenset(
    "a an the this that these those it its is are was were be of in on at to for with and or "
    "but by from as here there caption sentence text description image picture photo photograph "
    "shows showing depicts depicting web machine tags tag fused merged final answer output "
    "following below above sure okay ok".split()
)

# Assistant boilerplate instead of a caption, in the phrasings chat models use.
_REFUSAL = re.compile(
    r"\b(?:"
    r"i['’]?m\s+(?:so\s+|very\s+|really\s+)?sorry"
    r"|i\s+am\s+(?:so\s+|very\s+|really\s+)?sorry"
    r"|sorry,?\s+(?:but\s+)?i\b"
    r"|i\s+apologi[sz]e"
    r"|(?:i|we)\s+(?:can\s*not|can['’]?t|won['’]?t|will\s+not|am\s+unable\s+to|['’]m\s+unable\s+to"
    r"|am\s+not\s+able\s+to|['’]m\s+not\s+able\s+to|do\s+not\s+feel\s+comfortable"
    r"|don['’]?t\s+feel\s+comfortable)\s+(?:help|assist|comply|provide|fulfil+|create|generate"
    r"|write|do\s+that|answer|complete|describe|process|see|view|access)"
    r"|i['’]?m\s+unable\s+to|i\s+am\s+unable\s+to"
    r"|as\s+an?\s+(?:ai|language\s+model|large\s+language\s+model|assistant|ai\s+assistant)\b"
    r"|i\s+(?:cannot|can['’]?t)\s+(?:see|view|access)\s+(?:the\s+|any\s+)?image"
    r"|(?:this|that|your)\s+request\s+(?:violates|goes\s+against|is\s+against)"
    r"|against\s+my\s+(?:guidelines|programming|policy|policies)"
    r")",
    re.IGNORECASE,
)


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the form echoes are compared in."""
    return " ".join(t.lower() for t in _TOKEN.findall(unicodedata.normalize("NFKC", text)))


@functools.lru_cache(maxsize=1)
def _clip_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer  # noqa: PLC0415 - imports torch; on use

    return SimpleTokenizer()


def clip_token_count(text: str) -> int:
    """CLIP BPE tokens of `text`, the start and end tokens included (CLIP's 77 counts them)."""
    return len(_clip_tokenizer().encode(text)) + 2


def _is_echo(text: str, inputs: Sequence[str]) -> bool:
    """The text is an input, or inputs pasted whole with only filler words around them."""
    out = normalise(text)
    ins = sorted({normalise(s) for s in inputs if s and s.strip()}, key=len, reverse=True)
    if not out or not ins:
        return False
    if out in ins:
        return True
    padded = f" {out} "
    pasted = False
    for inp in ins:
        if len(inp.split()) >= 3 and f" {inp} " in padded:
            padded = padded.replace(f" {inp} ", " ")
            pasted = True
    return pasted and all(w in _FILLER for w in padded.split())


def _is_repetition(words: list[str]) -> bool:
    if len(words) < 3:
        return False
    grams = Counter(zip(words, words[1:], words[2:], strict=False))
    if grams and grams.most_common(1)[0][1] >= 3:
        return True
    if any(a == b == c for a, b, c in zip(words, words[1:], words[2:], strict=False)):
        return True
    return len(words) >= 6 and Counter(words).most_common(1)[0][1] / len(words) > 0.4


def _known_word(word: str) -> bool:
    """Whether CLIP's BPE vocabulary has `word` as one whole token (a rough English lexicon)."""
    return f"{word}</w>" in _clip_tokenizer().encoder


def _is_garbage(text: str) -> bool:
    """Control characters, symbol runs, run-on tokens, few letters, or mostly non-words.
    A web address is not noise by itself (a caption may quote one): it is left out."""
    text = _URL.sub(" ", text)
    words = [w.lower() for w in _WORD.findall(text)]
    if any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs") and c not in "\t\n" for c in text):
        return True
    if "\ufffd" in text or _NON_WORD_RUN.search(text) or _LONG_TOKEN.search(text):
        return True
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    if not words or letters / max(1, len(visible)) < 0.6:
        return True
    long_words = [w for w in words if len(w) >= 4 and w.isascii()]
    if len(long_words) >= 3:
        unknown = sum(not _known_word(w) for w in long_words)
        return unknown / len(long_words) > 0.5
    return False


def validate_text(
    text: str | None,
    inputs: Sequence[str] = (),
    *,
    max_tokens: int = CLIP_CONTEXT,
    count_tokens: Callable[[str], int] | None = None,
) -> list[str]:
    """The failure kinds of `text` (members of `FAILURE_KINDS`, in that order); [] = valid.

    `inputs` are the texts the generator was given (realistic text, caption, ...): an output
    equal to one of them, or made only of them plus filler, is an `echo`. `count_tokens`
    defaults to CLIP's tokenizer (start and end tokens included), `max_tokens` to its context.
    """
    if text is None or not text.strip():
        return ["empty"]
    words = [w.lower() for w in _WORD.findall(unicodedata.normalize("NFKC", text))]
    found = {
        "echo": _is_echo(text, inputs),
        "refusal": bool(_REFUSAL.search(text)),
        "repetition": _is_repetition(words),
        "too_long": (count_tokens or clip_token_count)(text) > max_tokens,
        "garbage": _is_garbage(text),
    }
    return [kind for kind in FAILURE_KINDS if found.get(kind)]
