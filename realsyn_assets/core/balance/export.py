"""RealSyn-schema export of a subset: per-split parquet files and WebDataset tar shards.

The released dataset (HF card) is parquet with `raw_image_url, text1, text2, text3, syn_text`;
its notebook reads WebDataset shards where `txt` = text1 and `json` holds text2/text3/syn_text.
We write the same layout, plus our lineage columns, so tools written for the release (and
open_clip_train's webdataset loader: image key `jpg`, caption key `txt`) work here. Train and
eval splits go to separate files and separate tar sets, so no eval image is ever trained on.
Every write goes through `core.io` (atomic) and is byte-deterministic.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import math
import re
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.io import atomic_path, ensure_free_space, write_table

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "REALSYN_COLUMNS",
    "SplitExport",
    "export_splits",
    "sample_key",
    "shard_paths",
    "tar_inventory",
    "webdataset_pattern",
    "write_webdataset",
]

REALSYN_COLUMNS = ["raw_image_url", "text1", "text2", "text3", "syn_text"]
# Image extensions open_clip_train's loader accepts ("jpg;png;jpeg;webp").
IMAGE_EXTENSIONS = ("jpg", "png", "jpeg", "webp")
SPLIT_COLUMN = "split"
WEBDATASET_DIR = "webdataset"

_SHARD_NAME = re.compile(r"^(\d{5})\.tar$")
_SHARD_TMP = re.compile(r"^\.\d{5}\.tar\..*\.tmp$")  # leftovers of a killed run
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_-]")


# ---------------------------------------------------------------------------------------------
# WebDataset
# ---------------------------------------------------------------------------------------------


def sample_key(image_id: Any) -> str:
    """The WebDataset key of an image id: characters other than [A-Za-z0-9_-] become `_`
    (a dot would split the key from the extension)."""
    return _UNSAFE_KEY.sub("_", str(image_id))


def _json_value(value: Any) -> Any:
    """Python value -> strict-JSON-safe value (NaN/inf become null, dates become ISO strings)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _image_ext(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in ("", ".jpg", ".jpeg"):
        return "jpg"
    return suffix[1:]


def _samples(
    rows: pa.Table,
    image_path_column: str,
    image_root: Path | None,
    report: dict[str, int],
    written: list | None = None,
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {ext: bytes}) sorted by key, skipping duplicates and unreadable images."""
    order = pc.sort_indices(rows, sort_keys=[("image_id", "ascending")])
    json_cols = [c for c in rows.column_names if c not in ("text1", image_path_column)]
    previous: str | None = None
    for start in range(0, len(order), 1024):
        chunk = rows.take(order[start : start + 1024]).to_pylist()
        for row in chunk:
            raw_key = row.get("image_id")
            if not raw_key:
                report["skipped_no_id"] += 1
                continue
            key = sample_key(raw_key)
            if key == previous:
                report["skipped_duplicate_id"] += 1
                continue
            img_path = row.get(image_path_column)
            if not img_path:
                report["skipped_missing_image"] += 1
                continue
            p = Path(img_path)
            if image_root is not None and not p.is_absolute():
                p = image_root / p
            try:
                image_bytes = p.read_bytes()
            except OSError as exc:
                log.warning("webdataset: skipping %s, image unreadable (%s)", key, exc)
                report["skipped_missing_image"] += 1
                continue
            previous = key
            if written is not None:
                written.append(raw_key)
            meta = {c: _json_value(row.get(c)) for c in json_cols}
            text1 = row.get("text1") or ""
            yield (
                key,
                {
                    _image_ext(p): image_bytes,
                    "json": json.dumps(
                        meta, sort_keys=True, ensure_ascii=False, separators=(",", ":")
                    ).encode("utf-8"),
                    "txt": str(text1).encode("utf-8"),
                },
            )


def _estimated_bytes(rows: pa.Table, image_path_column: str, image_root: Path | None) -> int:
    """About the bytes the tars of `rows` take: image files, texts, 3 tar headers per sample."""
    total = rows.nbytes + 3 * 1536 * rows.num_rows
    for value in rows.column(image_path_column).to_pylist():
        if value:
            p = Path(value)
            with contextlib.suppress(OSError):
                total += (image_root / p if image_root is not None else p).stat().st_size
    return total


def _batches(items: Iterator, size: int) -> Iterator[Iterator]:
    """Consecutive runs of `size` items (the last one shorter), streamed: never held in memory."""
    for first in items:
        yield itertools.chain([first], itertools.islice(items, size - 1))


def write_webdataset(
    rows: pa.Table,
    out_dir: Path | str,
    samples_per_shard: int = 1000,
    image_path_column: str = "image_path",
    *,
    image_root: Path | str | None = None,
    report: dict[str, int] | None = None,
    written: list | None = None,
) -> list[Path]:
    """Write WebDataset tar shards `00000.tar`, `00001.tar`, ... and return their paths.

    Each sample is `<image_id>.jpg` (the image file bytes as stored), `<image_id>.txt` (text1)
    and `<image_id>.json` (every other column except the local image path: text2, text3,
    syn_text, raw_image_url, lineage and scores). Samples are ordered by image_id — a content
    hash, so the order is effectively shuffled yet identical on every run — and tar headers carry
    no time/owner, so the same rows give the same bytes. Each shard is written atomically;
    shards left by an earlier, larger export are deleted. Rows with no image_id, a repeated
    image_id or an unreadable image are skipped and counted in `report` (if given). Relative
    image paths are read under `image_root`. Free space for the estimated size is checked first
    (`StorageError` on a full disk). `written` (if given) receives the image ids written, in
    tar order.
    """
    if samples_per_shard < 1:
        raise ValueError("samples_per_shard must be >= 1")
    missing = {"image_id", image_path_column, "text1"} - set(rows.column_names)
    if missing:
        raise ValueError(f"rows lack required columns: {sorted(missing)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(image_root) if image_root is not None else None
    counts = {
        "written": 0,
        "skipped_no_id": 0,
        "skipped_duplicate_id": 0,
        "skipped_missing_image": 0,
    }

    ensure_free_space(out / "00000.tar", _estimated_bytes(rows, image_path_column, root))
    shards: list[Path] = []
    for batch in _batches(
        _samples(rows, image_path_column, root, counts, written), samples_per_shard
    ):
        shards.append(out / f"{len(shards):05d}.tar")
        with (
            atomic_path(shards[-1]) as tmp,
            tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for key, members in batch:
                for ext in sorted(members):
                    _add_member(tar, f"{key}.{ext}", members[ext])
                counts["written"] += 1

    keep = {p.name for p in shards}
    for stale in out.iterdir():
        match = _SHARD_NAME.match(stale.name)
        if (match and stale.name not in keep) or _SHARD_TMP.match(stale.name):
            stale.unlink(missing_ok=True)
    if report is not None:
        report.update(counts)
    return shards


# ---------------------------------------------------------------------------------------------
# Train / eval export
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitExport:
    """What `export_splits` wrote for one split."""

    split: str
    parquet: Path
    shards: list[Path]
    rows: int  # rows in the parquet file = samples in the tars
    skipped: dict[str, int]  # rows left out of both, by reason


def export_splits(
    table: pa.Table,
    out_dir: Path | str,
    splits: Sequence[str],
    *,
    samples_per_shard: int = 1000,
    image_root: Path | str | None = None,
) -> list[SplitExport]:
    """Write each split of `table` (its `split` column) apart: `<split>.parquet` and
    `webdataset/<split>/00000.tar, ...`.

    The parquet file holds exactly the samples of its tars, in tar order (by image_id), without
    the `split` column: a row whose image cannot be read (or whose image_id is missing or
    repeated) is left out of both and counted in `skipped`. A split with no rows gets an empty
    parquet file and no tars. Rows with a split not in `splits` are an error, not dropped.
    """
    if SPLIT_COLUMN not in table.column_names:
        raise ValueError(f"rows lack the {SPLIT_COLUMN!r} column")
    unknown = set(pc.unique(table.column(SPLIT_COLUMN)).to_pylist()) - set(splits)
    if unknown:
        raise ValueError(f"rows in unknown splits {sorted(map(str, unknown))}; known: {splits}")
    out = Path(out_dir)
    results = []
    for split in splits:
        rows = table.filter(pc.equal(table.column(SPLIT_COLUMN), split)).drop_columns(
            [SPLIT_COLUMN]
        )
        report: dict[str, int] = {}
        written: list = []
        shards = write_webdataset(
            rows,
            out / WEBDATASET_DIR / split,
            samples_per_shard=samples_per_shard,
            image_root=image_root,
            report=report,
            written=written,
        )
        kept = rows.take(
            pc.index_in(
                pa.array(written, rows.schema.field("image_id").type),
                value_set=rows.column("image_id"),
            )
        )
        parquet = write_table(kept, out / f"{split}.parquet")
        skipped = {k: v for k, v in report.items() if k.startswith("skipped_") and v}
        results.append(SplitExport(split, parquet, shards, kept.num_rows, skipped))
    return results


def tar_inventory(shards: Sequence[Path]) -> dict[str, dict[str, int]]:
    """Every sample in these tars: key -> {extension: member size in bytes}.

    The key is the member name up to its first dot, as WebDataset groups members; a key seen in
    two tars keeps the members of both.
    """
    samples: dict[str, dict[str, int]] = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                key, _, ext = name.partition(".")
                samples.setdefault(key, {})[ext] = member.size
    return samples


def shard_paths(out_dir: Path | str, split: str) -> list[Path]:
    """The tar shards of one split under an export folder, in name order."""
    folder = Path(out_dir) / WEBDATASET_DIR / split
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _SHARD_NAME.match(p.name))


def webdataset_pattern(shards: Sequence[Path]) -> str | None:
    """The brace pattern naming these consecutive shards, as open_clip_train's `--train-data`
    takes it (`<dir>/{00000..00003}.tar`); None when there are none."""
    if not shards:
        return None
    folder = Path(shards[0]).parent
    last = len(shards) - 1
    return str(folder / (f"{{00000..{last:05d}}}.tar" if last else "00000.tar"))
