"""The records of one shard file, in file order: `(row, parsed record)` or `(row, the exception)`.

A bad record never stops the shard: a line that is not JSON is yielded as its exception, so the
reader turns it into a rejection naming the file and the row. Invalid UTF-8 (in a jsonl line or in
a parquet string column) is replaced by U+FFFD and counted per shard in `ReadStats`, so a repair is
never silent. jsonl lines end at "\\n" (JSON Lines; "\\r\\n" works too).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")


@dataclass
class ReadStats:
    """What reading one shard file repaired."""

    invalid_utf8_lines: int = 0  # jsonl lines (parquet rows) whose invalid UTF-8 was replaced


def _decode(raw: bytes, stats: ReadStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_lines += 1
        return raw.decode("utf-8", errors="replace")


def _iter_json_lines(path: Path, stats: ReadStats) -> Iterator[tuple[int, Any]]:
    """(row, parsed or exception) for each non-blank line; a bad line is reported, not raised."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for row, raw in enumerate(fh):
            line = _decode(raw, stats)
            if not line.strip():
                continue
            try:
                yield row, json.loads(line)
            except json.JSONDecodeError as exc:
                yield row, exc


# --------------------------------------------------------------------------- parquet


def _as_binary(kind: pa.DataType) -> pa.DataType:
    """`kind` with every string type replaced by binary (a cast that does not validate UTF-8)."""
    if pa.types.is_string(kind) or pa.types.is_string_view(kind):
        return pa.binary()
    if pa.types.is_large_string(kind):
        return pa.large_binary()
    if pa.types.is_dictionary(kind):
        return _as_binary(kind.value_type)
    if pa.types.is_list(kind):
        return pa.list_(_as_binary(kind.value_type))
    if pa.types.is_large_list(kind):
        return pa.large_list(_as_binary(kind.value_type))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(_as_binary(kind.value_type), kind.list_size)
    if pa.types.is_map(kind):
        return pa.map_(_as_binary(kind.key_type), _as_binary(kind.item_type))
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_as_binary(field.type)) for field in kind])
    return kind


class _Repair:
    """Decodes one row's values back to the original types, replacing invalid UTF-8."""

    def __init__(self) -> None:
        self.replaced = False

    def value(self, value: Any, kind: pa.DataType) -> Any:
        if value is None:
            return None
        if _as_binary(kind) == kind:
            return value  # no string inside
        if isinstance(value, bytes):  # a string type, read as binary
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                self.replaced = True
                return value.decode("utf-8", errors="replace")
        if pa.types.is_dictionary(kind):
            return self.value(value, kind.value_type)
        if pa.types.is_map(kind):
            return [(self.value(k, kind.key_type), self.value(v, kind.item_type)) for k, v in value]
        if pa.types.is_struct(kind):
            return {field.name: self.value(value[field.name], field.type) for field in kind}
        return [self.value(item, kind.value_type) for item in value]  # list types


def _repaired_rows(batch: pa.RecordBatch, stats: ReadStats) -> list[dict]:
    """The rows of a batch whose strings hold invalid UTF-8, with the bad bytes replaced."""
    columns = {
        field.name: batch.column(i).cast(_as_binary(field.type)).to_pylist()
        for i, field in enumerate(batch.schema)
    }
    rows = []
    for i in range(batch.num_rows):
        repair = _Repair()
        rows.append({f.name: repair.value(columns[f.name][i], f.type) for f in batch.schema})
        stats.invalid_utf8_lines += repair.replaced
    return rows


def _iter_parquet_rows(path: Path, stats: ReadStats) -> Iterator[tuple[int, Any]]:
    parquet = pq.ParquetFile(path)
    row = 0
    for batch in parquet.iter_batches(batch_size=256):
        try:
            records = batch.to_pylist()
        except UnicodeDecodeError:
            records = _repaired_rows(batch, stats)
        for record in records:
            yield row, record
            row += 1


def iter_records(path: Path, stats: ReadStats | None = None) -> Iterator[tuple[int, Any]]:
    """The records of a `.jsonl[.gz]` / `.parquet` shard; repairs are counted in `stats`."""
    stats = stats if stats is not None else ReadStats()
    name = path.name.lower()
    if name.endswith(".parquet"):
        yield from _iter_parquet_rows(path, stats)
    elif name.endswith(JSON_SUFFIXES):
        yield from _iter_json_lines(path, stats)
    else:
        raise ValueError(f"{path}: unsupported shard file type (use .jsonl[.gz] or .parquet)")
