"""Content-addressed identifiers.

Ids are hashes of content (image bytes, normalised sentence text, document identity) so they
survive re-partitioning and reruns: the same image in two shards gets the same id.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE = re.compile(r"\s+")

# Rejection reason of an image or sentence whose id already occurred earlier in the same shard.
DUPLICATE_IN_SHARD = "duplicate_in_shard"


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


def image_id(data: bytes) -> str:
    """Id of an image: hash of its original (undecoded) bytes."""
    return "img_" + _digest(data)


def normalise_text(text: str) -> str:
    """Case-folded, NFKC, whitespace-collapsed text: two sentences equal after this are exact duplicates."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", text).strip()


def sentence_id(text: str) -> str:
    """Id of a sentence: hash of its normalised text."""
    return "snt_" + _digest(normalise_text(text).encode("utf-8"))


def document_id(source_identity: str) -> str:
    """Id of a document from its source identity (url or source id, else its canonical content)."""
    return "doc_" + _digest(source_identity.encode("utf-8"))
