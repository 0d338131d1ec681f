"""Readers for interleaved documents: OBELICS layout, MMC4 layout, the built-in demo corpus.

Every reader turns one shard file into one normalised table with one row per item (a text block
or an image slot) in page order. A malformed document never stops the shard: it becomes a row of
the rejection table naming the file, the row and the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pyarrow as pa

from realsyn_assets.core.ids import document_id
from realsyn_assets.core.ingest.confined import (
    REJECT_DOWNLOAD_MISSING,
    REJECT_MISSING_REFERENCE,
    REJECT_UNSUPPORTED_SCHEME,
    read_confined,
)
from realsyn_assets.core.ingest.download import DownloadedImages
from realsyn_assets.core.ingest.records import ReadStats, iter_records
from realsyn_assets.core.text.sentences import REJECT_TOO_LONG

ITEM_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("doc_index", pa.int64()),
        ("position", pa.int32()),
        ("kind", pa.string()),  # "text" | "image"
        ("text", pa.string()),
        ("image_ref", pa.string()),  # local path relative to the shard's folder, or a URL
        ("image_bytes", pa.binary()),  # embedded bytes, when the shard carries them
        ("url", pa.string()),
        ("source_file", pa.string()),  # the shard file's name (its folder: shards.json)
        ("source_row", pa.int64()),
    ]
)

REJECTION_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

# Shard layouts: "auto" tells OBELICS and MMC4 apart per document by their keys.
ShardFormat = Literal["auto", "obelics", "mmc4"]
FORMATS: tuple[str, ...] = get_args(ShardFormat)


class MalformedDocument(ValueError):
    """A document that cannot be normalised; the message becomes the rejection detail."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# A document with more characters of text than this is rejected `too_long`: no single document
# may dominate a shard's time (sentence splitting is linear in the text, ~30k sentences per M).
MAX_DOCUMENT_CHARS = 1_000_000


@dataclass
class ShardTables:
    """One shard normalised: its items (ITEM_SCHEMA), its rejected documents (REJECTION_SCHEMA),
    how many documents were read and kept, and how many lines had invalid UTF-8 replaced."""

    items: pa.Table
    rejections: pa.Table
    documents_read: int
    documents_kept: int
    invalid_utf8_lines: int = 0


def detect_format(record: dict) -> str:
    if "text_list" in record or "image_info" in record:
        return "mmc4"
    if "texts" in record or "images" in record:
        return "obelics"
    raise MalformedDocument("unknown_layout", f"keys {sorted(record)[:8]}")


def shard_relative(ref: str, base_dir: Path) -> str:
    """A local image reference as stored: relative to the shard file's folder, so outputs do not
    depend on where the corpus lies (reading resolves it against that folder again). A reference
    that does not lie under the folder stays as written; reading rejects it."""
    path = Path(ref)
    if not path.is_absolute():
        return ref
    try:
        return path.relative_to(base_dir).as_posix()
    except ValueError:
        return ref


def _resolve_image(value: Any, base_dir: Path) -> tuple[str | None, bytes | None]:
    """An image slot as (reference, bytes): a path/URL string, raw bytes, or an HF-style dict."""
    if isinstance(value, dict):
        data = value.get("bytes")
        if data:
            return value.get("path"), bytes(data)
        value = value.get("path") or value.get("url") or value.get("src")
    if isinstance(value, bytes | bytearray):
        return None, bytes(value)
    if isinstance(value, str) and value.strip():
        value = value.strip()
        if value.startswith(("http://", "https://")):
            return value, None
        if "://" in value:
            return value, None  # kept as given; fetching will reject the scheme with a reason
        return shard_relative(value, base_dir), None
    raise MalformedDocument(
        "bad_image_slot", f"unsupported image value of type {type(value).__name__}"
    )


def _identity(record: dict, fallback: str) -> tuple[str, str | None]:
    url = record.get("url")
    meta = record.get("general_metadata") or record.get("metadata")
    if url is None and isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = None
    if url is None and isinstance(meta, dict):
        url = meta.get("url")
    source = record.get("id") or url or fallback
    return document_id(str(source)), (str(url) if url else None)


def _obelics_items(
    record: dict, base_dir: Path
) -> list[tuple[str, str | None, str | None, bytes | None]]:
    texts, images = record.get("texts"), record.get("images")
    if not isinstance(texts, list) or not isinstance(images, list):
        raise MalformedDocument("missing_lists", "'texts' and 'images' must both be lists")
    if len(texts) != len(images):
        raise MalformedDocument("length_mismatch", f"{len(texts)} texts vs {len(images)} images")
    items = []
    for i, (text, image) in enumerate(zip(texts, images, strict=True)):
        has_text = text is not None
        has_image = image is not None and image != b"" and image != ""
        if has_text and has_image:
            raise MalformedDocument("both_text_and_image", f"position {i}")
        if has_text:
            if not isinstance(text, str):
                raise MalformedDocument("bad_text", f"position {i} is {type(text).__name__}")
            items.append(("text", text, None, None))
        elif has_image:
            ref, data = _resolve_image(image, base_dir)
            items.append(("image", None, ref, data))
        # a slot with neither is an empty slot in some dumps: skipped, positions stay page order
    return items


def _mmc4_items(
    record: dict, base_dir: Path
) -> list[tuple[str, str | None, str | None, bytes | None]]:
    texts = record.get("text_list")
    infos = record.get("image_info") or []
    if not isinstance(texts, list) or not isinstance(infos, list):
        raise MalformedDocument("missing_lists", "'text_list' must be a list, 'image_info' a list")
    after: dict[int, list[dict]] = {}
    for info in infos:
        if not isinstance(info, dict):
            raise MalformedDocument("bad_image_info", f"entry of type {type(info).__name__}")
        index = info.get("matched_text_index")
        if not isinstance(index, int) or not 0 <= index < max(len(texts), 1):
            raise MalformedDocument("bad_matched_text_index", repr(index))
        after.setdefault(index, []).append(info)
    items = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise MalformedDocument("bad_text", f"text_list[{i}] is {type(text).__name__}")
        items.append(("text", text, None, None))
        for info in after.get(i, []):
            local = info.get("image_name") or info.get("path")
            local_path = (base_dir / local) if isinstance(local, str) and local else None
            if local_path is not None and local_path.exists():
                ref, data = shard_relative(local, base_dir), None
            elif info.get("bytes"):
                ref, data = None, bytes(info["bytes"])
            elif info.get("raw_url"):
                ref, data = str(info["raw_url"]), None
            elif local_path is not None:
                ref, data = shard_relative(local, base_dir), None  # missing: extraction says so
            else:
                raise MalformedDocument("bad_image_info", "no image_name, bytes or raw_url")
            items.append(("image", None, ref, data))
    return items


def _check_length(items: list, max_chars: int) -> None:
    """Reject a document with more than `max_chars` characters of text (0 = no limit)."""
    chars = sum(len(text) for kind, text, _, _ in items if kind == "text")
    if max_chars and chars > max_chars:
        raise MalformedDocument(REJECT_TOO_LONG, f"{chars} characters of text, limit {max_chars}")


def read_shard(
    path: Path | str, fmt: ShardFormat = "auto", max_document_chars: int = MAX_DOCUMENT_CHARS
) -> ShardTables:
    """Normalise one shard file. Image paths are resolved relative to the shard's folder; a
    document with more than `max_document_chars` characters of text is rejected `too_long`."""
    path = Path(path).resolve()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    base_dir = path.parent
    columns: dict[str, list] = {name: [] for name in ITEM_SCHEMA.names}
    rejected: dict[str, list] = {name: [] for name in REJECTION_SCHEMA.names}
    read = kept = 0
    seen: set[str] = set()
    stats = ReadStats()
    for row, record in iter_records(path, stats):
        read += 1
        try:
            if isinstance(record, Exception):
                raise MalformedDocument("invalid_json", str(record)[:200])
            if not isinstance(record, dict):
                raise MalformedDocument("not_an_object", type(record).__name__)
            layout = detect_format(record) if fmt == "auto" else fmt
            items = (_obelics_items if layout == "obelics" else _mmc4_items)(record, base_dir)
            if not items:
                raise MalformedDocument("empty_document")
            _check_length(items, max_document_chars)
            doc_id, url = _identity(record, f"{path}#{row}")
            if doc_id in seen:
                raise MalformedDocument("duplicate_document", doc_id)
            seen.add(doc_id)
        except MalformedDocument as exc:
            for key, value in zip(
                REJECTION_SCHEMA.names, (path.name, row, exc.reason, exc.detail), strict=True
            ):
                rejected[key].append(value)
            continue
        kept += 1
        for position, (kind, text, ref, data) in enumerate(items):
            values = (doc_id, row, position, kind, text, ref, data, url, path.name, row)
            for key, value in zip(ITEM_SCHEMA.names, values, strict=True):
                columns[key].append(value)
    return ShardTables(
        items=pa.table(columns, schema=ITEM_SCHEMA),
        rejections=pa.table(rejected, schema=REJECTION_SCHEMA),
        documents_read=read,
        documents_kept=kept,
        invalid_utf8_lines=stats.invalid_utf8_lines,
    )


def fetch_image_bytes(
    ref: str | None,
    data: bytes | None,
    *,
    base_dir: str | os.PathLike | None = None,
    allowed_roots: Sequence[str | os.PathLike] = (),
    downloads: DownloadedImages | None = None,
    max_bytes: int = 50 * 2**20,
) -> tuple[bytes | None, str | None, str]:
    """The bytes of one image slot, or (None, reason, detail). Never touches the network.

    An http(s) reference is read from `downloads` (what `image_downloads` fetched and stored for
    the shard: a failed URL is `download_<error kind>`, a URL without a status
    `download_missing`). A local reference is read only inside `base_dir` (the shard file's
    folder; relative references are taken relative to it) or one of `allowed_roots`, only when
    it is a regular file, and never more than `max_bytes` + 1 bytes (`core.ingest.confined`);
    without either, every local reference is refused."""
    if data is not None:
        return data, None, ""
    if not ref:
        return None, REJECT_MISSING_REFERENCE, "image slot without path or bytes"
    if ref.startswith(("http://", "https://")):
        if downloads is None:
            return None, REJECT_DOWNLOAD_MISSING, f"no download status for {ref}"
        return downloads.read(ref)
    if "://" in ref:
        return None, REJECT_UNSUPPORTED_SCHEME, ref
    return read_confined(ref, base_dir, allowed_roots, max_bytes)
