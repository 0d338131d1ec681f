"""Where everything lives: one root folder (REALSYN_HOME), every path derived from it.

Kept free of Dagster so the CLI, the sensor and the resources agree on one layout.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from realsyn_assets.core.ingest.shard_file import ShardFileError, check_shard_file
from realsyn_assets.core.io import atomic_write_bytes, resolve_under

DEFAULT_HOME = "./realsyn_home"
SHARD_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".parquet")


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    value = home or os.environ.get("REALSYN_HOME") or DEFAULT_HOME
    return Path(value).expanduser().resolve()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (one writer at a time on this machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_shard_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and name.endswith(SHARD_SUFFIXES)


def _key_for(path: Path) -> str:
    name = path.name
    for suffix in sorted(SHARD_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-") or "shard"


@dataclass(frozen=True)
class ShardEntry:
    key: str
    path: str
    format: str
    seq: int  # registration order: earlier shards win dedup ties (see core/dedup/union_find.py)


class Home:
    """The folder layout of one REALSYN_HOME."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_home(root)

    # -- layout -------------------------------------------------------------------------------
    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def lancedb_uri(self) -> Path:
        return self.root / "lancedb"

    @property
    def metrics_db(self) -> Path:
        return self.root / "metrics.duckdb"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def images(self) -> Path:
        return self.root / "images"

    def asset_dir(self, asset: str) -> Path:
        return self.root / "data" / asset

    def partition_file(self, asset: str, partition: str, suffix: str = ".parquet") -> Path:
        return self.asset_dir(asset) / f"{partition}{suffix}"

    def image_path(self, image_id: str) -> Path:
        return self.images / image_id[4:6] / f"{image_id}.jpg"

    def resolve(self, stored: str) -> str:
        """A path that outputs store relative to the home (`path`, `image_path`), to open."""
        return resolve_under(self.root, stored)

    # -- shard registry -----------------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        return self.root / "shards.json"

    def registry_lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock every writer of shards.json holds (not re-entrant)."""
        return file_lock(self.root / ".shards.lock")

    def shards(self) -> dict[str, ShardEntry]:
        if not self.registry_path.exists():
            return {}
        raw = json.loads(self.registry_path.read_text())
        return {key: ShardEntry(**value) for key, value in raw.items()}

    def shard(self, key: str) -> ShardEntry:
        shards = self.shards()
        if key not in shards:
            raise KeyError(
                f"shard {key!r} is not registered in {self.registry_path}; "
                "register it with `realsyn ingest PATH`"
            )
        return shards[key]

    def register_shards(
        self,
        paths: list[Path],
        fmt: str = "auto",
        refused: list[ShardFileError] | None = None,
    ) -> list[ShardEntry]:
        """Register shard files; a path registered before keeps its key and order.

        A new file is checked first (`core.ingest.shard_file.check_shard_file`: parquet magic
        bytes and footer, gzip stream, JSON lines text). An unreadable one raises
        `ShardFileError` (one line: the file and the cause) and nothing is registered; with a
        `refused` list it is appended there instead and the other files are registered.
        """
        paths = [Path(path).resolve() for path in paths]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"shard file not found: {path}")
        known = {entry.path for entry in self.shards().values()}
        readable = []
        for path in paths:
            try:
                if str(path) not in known:
                    check_shard_file(path)  # outside the lock: may read a whole .gz once
            except ShardFileError as exc:
                if refused is None:
                    raise
                refused.append(exc)
                continue
            readable.append(path)
        paths = readable
        with self.registry_lock():
            shards = self.shards()
            by_path = {entry.path: entry for entry in shards.values()}
            added = []
            for path in paths:
                if str(path) in by_path:
                    added.append(by_path[str(path)])
                    continue
                key = base = _key_for(path)
                n = 1
                while key in shards:
                    n += 1
                    key = f"{base}-{n}"
                seq = 1 + max((entry.seq for entry in shards.values()), default=-1)
                entry = ShardEntry(key=key, path=str(path), format=fmt, seq=seq)
                shards[key] = by_path[str(path)] = entry
                added.append(entry)
            payload = {key: entry.__dict__ for key, entry in sorted(shards.items())}
            atomic_write_bytes(self.registry_path, json.dumps(payload, indent=2).encode())
        return added

    def shard_order(self) -> list[str]:
        return [entry.key for entry in sorted(self.shards().values(), key=lambda e: e.seq)]

    @property
    def ground_truth(self) -> Path | None:
        """The demo corpus ground truth, when this home was made by `realsyn demo`."""
        path = self.root / "demo_corpus" / "ground_truth.json"
        return path if path.exists() else None
