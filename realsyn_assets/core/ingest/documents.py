"""Readers for interleaved documents: OBELICS layout, MMC4 layout, the built-in demo corpus.

Every reader turns one shard file into one normalised table with one row per item (a text block
or an image slot) in page order. A malformed document never stops the shard: it becomes a row of
the rejection table naming the file, the row and the reason.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from realsyn_assets.core.ids import document_id

ITEM_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("doc_index", pa.int64()),
        ("position", pa.int32()),
        ("kind", pa.string()),  # "text" | "image"
        ("text", pa.string()),
        ("image_ref", pa.string()),  # absolute local path or http(s) URL
        ("image_bytes", pa.binary()),  # embedded bytes, when the shard carries them
        ("url", pa.string()),
        ("source_file", pa.string()),
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


@dataclass
class ShardTables:
    """One shard normalised: its items (ITEM_SCHEMA), its rejected documents (REJECTION_SCHEMA)
    and how many documents were read and kept."""

    items: pa.Table
    rejections: pa.Table
    documents_read: int
    documents_kept: int


def _iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(row, parsed or exception) for each non-blank line; a bad line is reported, not raised."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for row, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                yield row, json.loads(line)
            except json.JSONDecodeError as exc:
                yield row, exc


def _iter_parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    parquet = pq.ParquetFile(path)
    row = 0
    for batch in parquet.iter_batches(batch_size=256):
        for record in batch.to_pylist():
            yield row, record
            row += 1


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        yield from _iter_parquet_rows(path)
    elif name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")):
        yield from _iter_json_lines(path)
    else:
        raise ValueError(f"{path}: unsupported shard file type (use .jsonl[.gz] or .parquet)")


def detect_format(record: dict) -> str:
    if "text_list" in record or "image_info" in record:
        return "mmc4"
    if "texts" in record or "images" in record:
        return "obelics"
    raise MalformedDocument("unknown_layout", f"keys {sorted(record)[:8]}")


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
        path = Path(value)
        if not path.is_absolute():
            path = base_dir / path
        return str(path), None
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
                ref, data = str(local_path), None
            elif info.get("bytes"):
                ref, data = None, bytes(info["bytes"])
            elif info.get("raw_url"):
                ref, data = str(info["raw_url"]), None
            elif local_path is not None:
                ref, data = str(local_path), None  # missing file: extraction records the reason
            else:
                raise MalformedDocument("bad_image_info", "no image_name, bytes or raw_url")
            items.append(("image", None, ref, data))
    return items


def read_shard(path: Path | str, fmt: ShardFormat = "auto") -> ShardTables:
    """Normalise one shard file. Image paths are resolved relative to the shard's folder."""
    path = Path(path).resolve()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    base_dir = path.parent
    columns: dict[str, list] = {name: [] for name in ITEM_SCHEMA.names}
    rejected: dict[str, list] = {name: [] for name in REJECTION_SCHEMA.names}
    read = kept = 0
    seen: set[str] = set()
    for row, record in iter_records(path):
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
            doc_id, url = _identity(record, f"{path}#{row}")
            if doc_id in seen:
                raise MalformedDocument("duplicate_document", doc_id)
            seen.add(doc_id)
        except MalformedDocument as exc:
            for key, value in zip(
                REJECTION_SCHEMA.names, (str(path), row, exc.reason, exc.detail), strict=True
            ):
                rejected[key].append(value)
            continue
        kept += 1
        for position, (kind, text, ref, data) in enumerate(items):
            values = (doc_id, row, position, kind, text, ref, data, url, str(path), row)
            for key, value in zip(ITEM_SCHEMA.names, values, strict=True):
                columns[key].append(value)
    return ShardTables(
        items=pa.table(columns, schema=ITEM_SCHEMA),
        rejections=pa.table(rejected, schema=REJECTION_SCHEMA),
        documents_read=read,
        documents_kept=kept,
    )


def fetch_image_bytes(
    ref: str | None,
    data: bytes | None,
    *,
    allow_download: bool = False,
    timeout_s: float = 10.0,
    max_bytes: int = 50 * 2**20,
) -> tuple[bytes | None, str | None, str]:
    """The bytes of one image slot, or (None, reason, detail). Downloads only http(s), bounded."""
    if data is not None:
        return data, None, ""
    if not ref:
        return None, "missing_reference", "image slot without path or bytes"
    if ref.startswith(("http://", "https://")):
        if not allow_download:
            return None, "download_disabled", ref
        return _download(ref, timeout_s, max_bytes)
    if "://" in ref:
        return None, "unsupported_scheme", ref
    path = Path(ref)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return None, "too_many_bytes", f"{ref}: {size} bytes"
        return path.read_bytes(), None, ""
    except FileNotFoundError:
        return None, "missing_file", ref
    except OSError as exc:
        return None, "unreadable_file", f"{ref}: {exc}"


def _download(url: str, timeout_s: float, max_bytes: int) -> tuple[bytes | None, str | None, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "realsyn-assets/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (http(s) only)
            if not response.geturl().startswith(("http://", "https://")):
                return None, "unsupported_scheme", response.geturl()
            buffer = io.BytesIO()
            while chunk := response.read(65536):
                buffer.write(chunk)
                if buffer.tell() > max_bytes:
                    return None, "too_many_bytes", f"{url}: over {max_bytes} bytes"
            return buffer.getvalue(), None, ""
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        return None, "download_failed", f"{url}: {exc}"
