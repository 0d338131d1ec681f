"""RealSyn-schema outputs: parquet, WebDataset tar shards and a markdown data card.

The released dataset (HF card) is parquet with `raw_image_url, text1, text2, text3, syn_text`;
its notebook reads WebDataset shards where `txt` = text1 and `json` holds text2/text3/syn_text.
We write the same layout, plus our lineage columns, so tools written for the release work here.
Every write goes through `core.io` (atomic) and is byte-deterministic. The subset's parquet file
is written with `core.io.write_table`.
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
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from realsyn_assets.core.io import atomic_path, atomic_write_bytes, ensure_free_space

log = logging.getLogger(__name__)

__all__ = [
    "COLUMN_DESCRIPTIONS",
    "PAPER_CAPS",
    "REALSYN_COLUMNS",
    "write_data_card",
    "write_webdataset",
]

REALSYN_COLUMNS = ["raw_image_url", "text1", "text2", "text3", "syn_text"]

# Per-cluster caps of the paper's semantic balance sampling (§5): scale -> cap.
PAPER_CAPS = {"15M": 20, "30M": 35, "100M": 180}

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "raw_image_url": "Source reference of the image: its URL, or its path relative to the folder "
    "of its shard file.",
    "text1": "Retrieved realistic sentence with the highest image-text similarity (R1).",
    "text2": "Second retrieved realistic sentence (R2), similarity lower than or equal to text1's.",
    "text3": "Third retrieved realistic sentence (R3), similarity lower than or equal to text2's.",
    "syn_text": "Synthetic text: LLM fusion of text1, a machine caption and image tags (S1).",
    "image_id": "Content hash of the original image bytes (stable across reruns and shards).",
    "image_path": "Path of the normalised JPEG relative to the home folder (not exported to "
    "WebDataset json).",
    "image_doc_id": "Id of the source document the image came from.",
    "image_position": "Position of the image inside its source document.",
    "syn_score": "Cosine similarity between the image and syn_text embeddings.",
    "cluster": "Image cluster id used by semantic balance sampling.",
    "caption": "Machine caption used as a fusion input.",
    "tags": "Open-set tags used as a fusion input.",
}
for _k in (1, 2, 3):
    COLUMN_DESCRIPTIONS[f"text{_k}_id"] = f"Content hash of the normalised text{_k} sentence."
    COLUMN_DESCRIPTIONS[f"text{_k}_doc_id"] = f"Id of the source document of text{_k}."
    COLUMN_DESCRIPTIONS[f"text{_k}_position"] = f"Position of text{_k} inside its source document."
    COLUMN_DESCRIPTIONS[f"text{_k}_score"] = f"Cosine similarity between the image and text{_k}."

_SHARD_NAME = re.compile(r"^(\d{5})\.tar$")
_SHARD_TMP = re.compile(r"^\.\d{5}\.tar\..*\.tmp$")  # leftovers of a killed run
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_-]")


# ---------------------------------------------------------------------------------------------
# WebDataset
# ---------------------------------------------------------------------------------------------


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
            key = _UNSAFE_KEY.sub("_", str(raw_key))
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
    (`StorageError` on a full disk).
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
    for batch in _batches(_samples(rows, image_path_column, root, counts), samples_per_shard):
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
# Data card
# ---------------------------------------------------------------------------------------------

_KNOWN_STATS = (
    "num_samples",
    "cap",
    "num_clusters",
    "num_shards",
    "encoder",
    "generator",
    "sim_window",
    "funnel",
)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _funnel_lines(funnel: Any) -> list[str]:
    """Render the funnel: {stage: n} or {stage: {"in": a, "out": b, ...}} or [(stage, ...)]."""
    items = list(funnel.items()) if isinstance(funnel, Mapping) else list(funnel or [])
    lines = ["| stage | in | out | removed |", "|---|---:|---:|---:|"]
    for entry in items:
        if isinstance(entry, tuple) and len(entry) == 2:
            stage, val = entry
        elif isinstance(entry, Mapping):
            stage, val = entry.get("stage", "?"), entry
        else:
            continue
        if isinstance(val, Mapping):
            n_in, n_out = val.get("in"), val.get("out")
            removed = val.get("removed")
            if removed is None and isinstance(n_in, int) and isinstance(n_out, int):
                removed = n_in - n_out
        else:
            n_in, n_out, removed = None, val, None
        cells = [_fmt(v) if v is not None else "" for v in (n_in, n_out, removed)]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def write_data_card(
    path: Path | str, *, scale: str, stats: Mapping[str, Any], columns: Sequence[str]
) -> Path:
    """Write a markdown data card for one exported scale.

    Recognised `stats` keys: num_samples, cap (per-cluster cap actually used), num_clusters, num_shards, encoder, generator, sim_window (lo, hi), funnel
    ({stage: count} or {stage: {"in", "out", "removed"}}). Any other key is listed verbatim.
    """
    path = Path(path)
    cap = stats.get("cap")
    n = stats.get("num_samples")
    lines: list[str] = [
        f"# RealSyn-style image–multi-text dataset — scale {scale}",
        "",
        "Built with `realsyn_assets`, an implementation of the RealSyn data paradigm "
        "(arXiv 2502.12513): images and sentences are mined from multimodal interleaved "
        "documents, each image gets its three most similar realistic sentences by hierarchical "
        "retrieval and one synthetic sentence fused by a language model, and the set is "
        "balanced by capping image clusters.",
        "",
        "## Scale",
        "",
        f"- Scale partition: **{scale}**"
        + (
            f" (the paper's RealSyn{scale} uses a per-cluster cap of {PAPER_CAPS[scale]})"
            if scale in PAPER_CAPS
            else ""
        ),
        f"- Per-cluster cap used here: **{_fmt(cap) if cap is not None else 'not recorded'}** "
        "(clusters larger than the cap are uniformly subsampled to it, smaller ones kept whole)",
        f"- Samples: **{_fmt(n) if n is not None else 'not recorded'}**",
    ]
    for key, label in (
        ("num_clusters", "Image clusters"),
        ("num_shards", "WebDataset shards"),
        ("encoder", "Encoder (retrieval, filtering, clustering)"),
        ("generator", "Synthetic-text generator"),
        ("sim_window", "Image–synthetic-text cosine window"),
    ):
        if key in stats:
            value = stats[key]
            if key == "sim_window" and isinstance(value, (list, tuple)) and len(value) == 2:
                value = f"[{_fmt(value[0])}, {_fmt(value[1])}] (pairs outside are dropped)"
            lines.append(f"- {label}: {_fmt(value)}")
    if isinstance(n, int) and scale in ("15M", "30M", "100M") and n < 1_000_000:
        lines.append(
            f"- Note: {scale} names the paper's scale (its cap and recipe); this corpus is far "
            "smaller than the paper's, so the sample count is far below the label."
        )

    lines += ["", "## Columns", "", "| column | meaning |", "|---|---|"]
    for col in columns:
        lines.append(f"| `{col}` | {COLUMN_DESCRIPTIONS.get(col, 'Extra column.')} |")
    lines += [
        "",
        "`text1`..`text3` are the retrieved realistic sentences ordered by similarity to the "
        "image (text1 most similar); `syn_text` is the synthetic text. Released-schema "
        f"columns: {', '.join(f'`{c}`' for c in REALSYN_COLUMNS)}.",
        "",
        "## Lineage",
        "",
        "Every sample keeps where its parts came from: `image_doc_id` + `image_position` for the "
        "image and `textK_doc_id` + `textK_position` + `textK_id` for each realistic text, with "
        "the similarity scores used to select them. Ids are content hashes, stable across reruns.",
        "",
        "WebDataset layout: `<image_id>.jpg` (image bytes), `<image_id>.txt` (text1), "
        "`<image_id>.json` (text2, text3, syn_text and the lineage/score columns).",
    ]
    funnel = _funnel_lines(stats.get("funnel"))
    if funnel:
        lines += ["", "## Funnel", ""] + funnel
    extra = {k: v for k, v in stats.items() if k not in _KNOWN_STATS}
    if extra:
        lines += ["", "## Other statistics", "", "| name | value |", "|---|---|"]
        for key in sorted(extra):
            value = extra[key]
            text = json.dumps(_json_value(value)) if isinstance(value, Mapping) else _fmt(value)
            lines.append(f"| {key} | {text} |")
    lines += [
        "",
        "## License",
        "",
        "This card describes derived data. The images and sentences remain subject to the "
        "licenses and terms of their source documents and websites; check them before use or "
        "redistribution. The RealSyn release itself is MIT-licensed metadata (URLs and texts).",
        "",
    ]
    atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))
    return path
