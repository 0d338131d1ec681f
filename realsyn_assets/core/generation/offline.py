"""Grounded rewrite: the deterministic CPU fusion of tests, the demo and air-gapped runs.

Not a language model. It fuses the three signals of paper §3.2 by rules and lets the evidence
decide: the realistic text (text1) is the frame; each of its content words that neither the
caption nor a tag supports is paired with a caption word of the same kind (one the other's
nearest by word embedding, above a floor: a colour with a colour, a shape with a shape); text1
rewritten by every small combination of those substitutions, and the caption itself, are the
candidates. The winner has the best image cosine plus mean cosine with the evidence texts
(text1, caption, other retrieved texts), text1 on ties; then confident tags the sentence does
not mention yet are appended. Same inputs, same encoder -> same sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import combinations
from typing import Protocol

import numpy as np

from realsyn_assets.core.generation.cleaning import SPACE
from realsyn_assets.core.generation.prompts import FusionInput
from realsyn_assets.core.generation.tags import DEFAULT_STOPWORDS

# Bump when the rewrite rules change: part of the model identity, hence of the cache key.
GROUNDED_REWRITE_VERSION = "3"

_CAPTION_LEADS = re.compile(
    r"^\s*(?:(?:a|an|the)\s+)?(?:close[- ]up\s+)?(?:picture|photo(?:graph)?|image|view|shot|"
    r"illustration|drawing|painting)\s+of\s+|^\s*there\s+(?:is|are)\s+",
    re.IGNORECASE,
)
_CLITIC = re.compile(r"\s+('(?:s|re|ve|ll|d|m|t)\b|n't\b)", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?%)\]}])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{])\s+")
_SPLIT_DIGITS = re.compile(r"\b\d(?: \d\b)+")
# Words as the rewrite sees them: letters, with inner hyphens or apostrophes ("jet-black").
_WORD = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*")


class TextEncoder(Protocol):
    """The text tower the rewrite scores candidates with (unit-norm rows)."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def detokenise(text: str) -> str:
    """Undo the CLIP-BPE look of released realistic texts ("it 's", "( x )", "2 0 1 9")."""
    text = SPACE.sub(" ", text).strip()
    text = _SPLIT_DIGITS.sub(lambda m: m.group(0).replace(" ", ""), text)
    text = _CLITIC.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return _SPACE_AFTER_OPEN.sub(r"\1", text)


def stem(word: str) -> str:
    """A crude singular form: enough to see that "wedges" and "wedge" are one word."""
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


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def content_words(text: str) -> list[str]:
    """Lowercase content words (no stopwords, >= 3 letters), first occurrence order, unique."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text.lower()):
        if len(w) >= 3 and w not in DEFAULT_STOPWORDS:
            seen.setdefault(w, None)
    return list(seen)


def _stems(text: str) -> set[str]:
    return {stem(w) for w in content_words(text)}


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _strip_end(text: str) -> str:
    return text.strip().rstrip(".!?;:, ").strip()


def clean_caption(caption: str | None) -> str:
    """The caption without "a photo of" / "there is" leads and end punctuation."""
    return _strip_end(_CAPTION_LEADS.sub("", SPACE.sub(" ", caption or "")))


def substitute(text: str, old: str, new: str) -> str:
    """`text` with every whole-word `old` (singular or plural form) replaced by `new` in the
    same number and capitalisation."""
    base = stem(old)

    def repl(m: re.Match) -> str:
        word = m.group(0)
        if stem(word) != base:
            return word
        out = _plural(new) if word.lower() != base and stem(new) == new else new
        return _capitalise(out) if word[:1].isupper() else out

    return _WORD.sub(repl, text)


def _pairs(
    unsupported: list[str], evidence: list[str], vecs: dict[str, np.ndarray], min_sim: float
) -> list:
    """(text word, evidence word) pairs where one is the other's nearest by word-embedding
    cosine and the cosine is at least `min_sim` (words of one kind), best first."""
    if not unsupported or not evidence:
        return []
    u = np.stack([vecs[w] for w in unsupported])
    e = np.stack([vecs[w] for w in evidence])
    sims = u @ e.T
    keep = {(i, int(j)) for i, j in enumerate(sims.argmax(axis=1))}
    keep |= {(int(i), j) for j, i in enumerate(sims.argmax(axis=0))}
    pairs = [(float(sims[i, j]), unsupported[i], evidence[j]) for i, j in keep]
    pairs = [p for p in pairs if p[0] >= min_sim]
    return sorted(pairs, key=lambda p: (-p[0], p[1], p[2]))


class GroundedRewriteFusion:
    """Deterministic fusion that fixes text1 with the caption and tags where the image agrees.

    `encoder` (optional) embeds words (to pair words of the same kind) and candidates (to score
    them against the image vector passed to `generate`). Without an image vector the caption's
    embedding stands in for the image; without an encoder no word is replaced and the result is
    text1 plus new tags (or the caption when text1 is empty).
    """

    name = "offline"

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        max_words: int = 77,
        max_tags: int = 2,
        max_substitutions: int = 4,
        word_prompt: str = "a photo of {}",
        max_combined: int = 2,
        min_pair_similarity: float = 0.4,
        consensus_weight: float = 1.0,
    ):
        self.encoder = encoder
        self.max_words = max_words
        self.max_tags = max_tags
        self.max_substitutions = max_substitutions
        self.word_prompt = word_prompt
        self.max_combined = max_combined
        self.min_pair_similarity = min_pair_similarity
        self.consensus_weight = consensus_weight
        self.model = f"grounded-rewrite@{GROUNDED_REWRITE_VERSION}"
        self._word_vecs: dict[str, np.ndarray] = {}

    # -- candidates ---------------------------------------------------------------------------
    @staticmethod
    def _support(caption: str, tags: Sequence[str]) -> set[str]:
        """Stems the image evidence supports: the caption's and the tags' words."""
        return _stems(caption) | {s for tag in tags for s in _stems(tag or "")}

    def _embed_words(self, words: set[str]) -> None:
        missing = sorted(w for w in words if w not in self._word_vecs)
        if missing and self.encoder is not None:
            vecs = self.encoder.encode_texts([self.word_prompt.format(w) for w in missing])
            self._word_vecs.update(zip(missing, np.asarray(vecs, np.float32), strict=True))

    def candidates(self, item: FusionInput) -> list[str]:
        """text1 first, then its rewrites by every subset of the substitution pairs, then the
        caption; duplicates removed, order deterministic."""
        text1 = _strip_end(detokenise(item.realistic_text or ""))
        caption = clean_caption(item.caption)
        out = [text1] if text1 else []
        if self.encoder is not None and text1:
            supported, t_stems = self._support(caption, item.tags), _stems(text1)
            unsupported = [w for w in content_words(text1) if stem(w) not in supported]
            # Replacements come from the caption only: tags are noisier single words.
            fresh = [w for w in content_words(caption) if stem(w) not in t_stems]
            self._embed_words(set(unsupported) | set(fresh))
            pairs = _pairs(unsupported, fresh, self._word_vecs, self.min_pair_similarity)
            pairs = pairs[: self.max_substitutions]
            for r in range(1, min(len(pairs), self.max_combined) + 1):
                for subset in combinations(pairs, r):
                    text = text1
                    for _, old, new in subset:
                        text = substitute(text, old, new)
                    out.append(text)
        if caption:
            out.append(caption)
        return list(dict.fromkeys(out))

    # -- choice and tags ------------------------------------------------------------------------
    def _finish(self, text: str, tags: Sequence[str]) -> str:
        mentioned = _stems(text)
        extra: list[str] = []
        for tag in tags:
            tag = SPACE.sub(" ", (tag or "").strip().lower())
            stems = _stems(tag)
            if not stems or stems <= mentioned:
                continue
            extra.append(tag)
            mentioned |= stems
            if len(extra) >= self.max_tags:
                break
        words = text.split()
        budget = max(self.max_words - sum(len(t.split()) for t in extra) - 2, 8)
        text = _strip_end(" ".join(words[:budget])) if len(words) > budget else text
        if extra:
            joined = " and ".join(extra)
            text = f"{text}, with {joined}" if text else f"An image of {joined}"
        return _capitalise(text) + "." if text else "An image."

    def generate(
        self,
        items: Sequence[FusionInput],
        image_vecs: np.ndarray | None = None,
        support: Sequence[Sequence[str | None]] | None = None,
    ) -> list[str]:
        """One sentence per item. `image_vecs` (one unit-norm row per item) and `support` (more
        realistic texts per item, e.g. text2-3) ground the choice among the candidates."""
        items = list(items)
        cands = [self.candidates(item) for item in items]
        if self.encoder is None or not items:
            return [
                self._finish(c[0] if c else "", it.tags) for c, it in zip(cands, items, strict=True)
            ]
        extra = [
            [_strip_end(detokenise(t)) for t in (support[i] if support else []) if t and t.strip()]
            for i in range(len(items))
        ]
        flat = [c for cs, ex in zip(cands, extra, strict=True) for c in cs + ex]
        vecs = np.asarray(self.encoder.encode_texts(flat), np.float32)
        out, start = [], 0
        for i, (item, cs, ex) in enumerate(zip(items, cands, extra, strict=True)):
            rows, ex_rows = (
                vecs[start : start + len(cs)],
                vecs[start + len(cs) : start + len(cs) + len(ex)],
            )
            start += len(cs) + len(ex)
            image = None if image_vecs is None else np.asarray(image_vecs[i], np.float32)
            choice = self._choose(item, cs, rows, ex_rows, image)
            out.append(self._finish(choice, item.tags))
        return out

    def _choose(self, item: FusionInput, cands: list[str], rows, support_rows, image) -> str:
        """The candidate with the best image cosine plus `consensus_weight` x its mean cosine
        with the evidence texts (text1, the caption, the support texts): text1 and the caption
        each count once, so the other texts and the image settle disagreements."""
        if len(cands) <= 1:
            return cands[0] if cands else ""
        evidence = [rows[0]] if _strip_end(detokenise(item.realistic_text or "")) else []
        caption = clean_caption(item.caption)
        if caption and cands[-1] == caption:
            evidence.append(rows[-1])
        evidence += list(support_rows)
        scores = np.zeros(len(cands), np.float32)
        if image is not None:
            scores += rows @ image
        if evidence:
            scores += self.consensus_weight * (rows @ np.stack(evidence).T).mean(axis=1)
        return cands[int(np.argmax(scores))]  # first maximum: text1 wins ties

    def fuse(self, item: FusionInput) -> str:
        """One item without an image vector (the per-item fallback of the LLM clients)."""
        return self.generate([item])[0]


# The name the LLM clients and older callers use for their per-item fallback.
OfflineFusionGenerator = GroundedRewriteFusion
