"""Content-keyed cache of captions and synthetic texts, one parquet file per shard and kind.

A key is the sha256 of everything the output depends on (image content, input texts, backend,
model, prompt version), so a rerun on the same inputs makes no generation call, and changing
the model or the prompt regenerates exactly what it changes. Each save keeps the entries of the
latest run of the shard (the file does not grow with every configuration tried).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from realsyn_assets.core.io import read_table, write_table

CACHE_DIR = "_cache"


def content_key(*parts: object) -> str:
    """sha256 (hex) of the parts, JSON-encoded (bytes as their own sha256)."""
    norm = [hashlib.sha256(p).hexdigest() if isinstance(p, bytes) else p for p in parts]
    return hashlib.sha256(json.dumps(norm, sort_keys=True, default=str).encode()).hexdigest()


def load_cache(path: Path) -> dict[str, str | None]:
    """key -> cached text (None: the backend returned nothing); {} when there is no file."""
    if not path.is_file():
        return {}
    table = read_table(path, columns=["key", "value"])
    return dict(
        zip(table.column("key").to_pylist(), table.column("value").to_pylist(), strict=True)
    )


def save_cache(path: Path, entries: dict[str, str | None]) -> Path:
    """Write `entries` atomically, keys sorted (same entries -> same bytes)."""
    keys = sorted(entries)
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "value": pa.array([entries[k] for k in keys], pa.string()),
        }
    )
    return write_table(table, path)


def cached_generate(
    keys: Sequence[str],
    cache: dict[str, str | None],
    generate: Callable[[list[int]], Sequence[str | None]],
) -> tuple[list[str | None], dict[str, str | None], int]:
    """Outputs for `keys`: cached ones as they are, the rest from one `generate(missing
    indices)` call. Returns (outputs, the entries to save, number generated now)."""
    missing = [i for i, k in enumerate(keys) if k not in cache]
    fresh = list(generate(missing)) if missing else []
    if len(fresh) != len(missing):
        raise RuntimeError(f"generator returned {len(fresh)} texts for {len(missing)} items")
    new = dict(zip((keys[i] for i in missing), fresh, strict=True))
    outputs = [new[k] if k in new else cache[k] for k in keys]
    return outputs, {k: (new[k] if k in new else cache[k]) for k in keys}, len(missing)
