"""One shard's image slots -> the kept and rejected tables of `extracted_images` (paper §3.1).

Two steps, so that the caller can report between them:

* `fetch_slots` reads the bytes of every image slot (embedded, a local file inside the shard's
  folder or an allowed root, or a URL's bytes from the shard's download store) and drops repeats of the same bytes within
  the shard: an image id is a hash of the bytes, so only its first slot is decoded;
* `filter_images` decodes, filters and normalises the unique images (`core.images.extract`,
  in a process pool when `workers > 1`) and assembles both tables.

Every slot ends in exactly one of the two tables; a rejected slot keeps its reason and detail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.ids import DUPLICATE_IN_SHARD, image_id
from realsyn_assets.core.images.extract import ImageFilterConfig, process_images
from realsyn_assets.core.ingest.documents import fetch_image_bytes
from realsyn_assets.core.ingest.download import DownloadedImages
from realsyn_assets.core.io import ensure_free_space, relative_to_root

KEPT_IMAGE_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("shard", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("source_ref", pa.string()),
        ("path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("phash", pa.int64()),
    ]
)
REJECTED_IMAGE_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("source_ref", pa.string()),
        ("image_id", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


@dataclass
class FetchedSlots:
    """The image slots of one shard after reading their bytes, in page order."""

    slots: int  # image slots in the shard
    unique: list[tuple[str, dict, bytes]] = field(default_factory=list)  # (id, slot, bytes)
    rejected: list[dict] = field(default_factory=list)  # unreadable slots and in-shard repeats


@dataclass
class ImageTables:
    kept: pa.Table  # KEPT_IMAGE_SCHEMA
    rejected: pa.Table  # REJECTED_IMAGE_SCHEMA


def fetch_slots(
    docs: pa.Table,
    shard: str,
    *,
    base_dir: str | os.PathLike | None = None,
    allowed_roots: Sequence[str | os.PathLike] = (),
    downloads: DownloadedImages | None = None,
    max_bytes: int = 50 * 2**20,
) -> FetchedSlots:
    """The bytes of every image slot of `docs` (a `raw_documents` table), first copies only.

    Local files are read only inside `base_dir` (the shard file's folder) or `allowed_roots`
    (see `core.ingest.confined`); http(s) references only from `downloads` (the shard's
    download store, never the network); anything else is a rejection with its reason."""
    slots = docs.filter(pc.equal(docs.column("kind"), "image")).to_pylist()
    fetched = FetchedSlots(slots=len(slots))
    first_seen: dict[str, dict] = {}
    for slot in slots:
        base = {
            "shard": shard,
            "doc_id": slot["doc_id"],
            "position": slot["position"],
            "source_ref": slot["image_ref"],
        }
        data, reason, detail = fetch_image_bytes(
            slot["image_ref"],
            slot["image_bytes"],
            base_dir=base_dir,
            allowed_roots=allowed_roots,
            downloads=downloads,
            max_bytes=max_bytes,
        )
        if data is None:
            fetched.rejected.append({**base, "image_id": None, "reason": reason, "detail": detail})
            continue
        iid = image_id(data)
        if iid in first_seen:
            fetched.rejected.append(
                {
                    **base,
                    "image_id": iid,
                    "reason": DUPLICATE_IN_SHARD,
                    "detail": f"same bytes as {first_seen[iid]['doc_id']}",
                }
            )
            continue
        first_seen[iid] = base
        fetched.unique.append((iid, base, data))
    return fetched


def filter_images(
    fetched: FetchedSlots,
    image_path: Callable[[str], Path],
    config: ImageFilterConfig,
    workers: int = 1,
    root: Path | None = None,
) -> ImageTables:
    """Decode, filter and save the unique images (to `image_path(image_id)`); both tables.

    Rejected rows are the fetch rejections first, then the filter's, each in page order. The
    `path` column is relative to `root` (the home) when given. Free space for about the images'
    bytes is checked before any is decoded (`StorageError` on a full disk)."""
    if fetched.unique:
        needed = sum(len(data) for _, _, data in fetched.unique)
        ensure_free_space(image_path(fetched.unique[0][0]), needed)
    results = process_images(
        [(data, image_path(iid)) for iid, _, data in fetched.unique], config, workers=workers
    )
    kept_rows, rejected_rows = [], list(fetched.rejected)
    for (iid, base, _), result in zip(fetched.unique, results, strict=True):
        if result.kept:
            kept_rows.append(
                {
                    **base,
                    "image_id": iid,
                    "path": relative_to_root(result.output_path, root),
                    "width": result.width,
                    "height": result.height,
                    "phash": result.phash,
                }
            )
        else:
            rejected_rows.append(
                {**base, "image_id": iid, "reason": result.reason, "detail": result.detail}
            )
    return ImageTables(
        kept=pa.Table.from_pylist(kept_rows, schema=KEPT_IMAGE_SCHEMA),
        rejected=pa.Table.from_pylist(rejected_rows, schema=REJECTED_IMAGE_SCHEMA),
    )
