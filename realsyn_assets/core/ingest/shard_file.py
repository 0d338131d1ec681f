"""Is a shard file readable as its name says? Cheap checks made when a shard is registered, and
the one error type for a shard file that cannot be read.

Checked: parquet — the `PAR1` magic bytes at the start and at the end and a footer pyarrow can
read (a truncated or half-copied file has no footer); gzip — the header magic and a stream that
decompresses to its end-of-stream marker (the whole file is read once, without keeping it);
JSON lines — text: no parquet or gzip bytes in a file named `.jsonl`, no NUL byte in the first
64 KiB. Invalid lines and invalid UTF-8 are *not* refused here: they become counted rejections
when the shard is read. A zero-byte JSON lines file is an empty shard, which is valid.
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
TEXT_PROBE_BYTES = 64 * 1024
CHUNK_BYTES = 1 << 20

# What reading a damaged shard file raises (pyarrow, gzip/zlib, the OS); `ShardFileError` wraps it.
READ_ERRORS: tuple[type[BaseException], ...] = (
    pa.ArrowException,
    OSError,
    EOFError,
    zlib.error,
    UnicodeError,
)


class ShardFileError(ValueError):
    """A shard file that cannot be read; one line naming the file and the cause."""

    def __init__(self, path: Path | str, cause: str):
        cause = " ".join(str(cause).split())  # one line, whatever the library said
        super().__init__(f"{path}: {cause}")
        self.path = str(path)
        self.cause = cause


def describe_error(exc: BaseException) -> str:
    """The cause of a read error in one line: exception class and message."""
    if isinstance(exc, ShardFileError):
        return exc.cause
    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(f"{type(exc).__name__}: {message}".split())


def _check_parquet(path: Path, size: int) -> None:
    if size < 3 * len(PARQUET_MAGIC):
        raise ShardFileError(path, f"too short for a parquet file ({size} bytes)")
    with open(path, "rb") as fh:
        head = fh.read(len(PARQUET_MAGIC))
        fh.seek(-len(PARQUET_MAGIC), os.SEEK_END)
        tail = fh.read(len(PARQUET_MAGIC))
    if head != PARQUET_MAGIC:
        raise ShardFileError(path, "not a parquet file (no PAR1 magic bytes at the start)")
    if tail != PARQUET_MAGIC:
        raise ShardFileError(
            path, "truncated parquet file (no PAR1 magic bytes at the end: the footer is missing)"
        )
    try:
        pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise ShardFileError(path, f"unreadable parquet footer ({describe_error(exc)})") from exc


def _check_text(path: Path, head: bytes, compressed: bool = False) -> None:
    where = "decompressed data" if compressed else "file"
    if head.startswith(PARQUET_MAGIC):
        raise ShardFileError(path, f"{where} is parquet, not JSON lines (rename it to .parquet)")
    if head.startswith(GZIP_MAGIC):
        raise ShardFileError(path, f"{where} is gzip-compressed, not JSON lines (name it .gz)")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise ShardFileError(path, f"binary data, not JSON lines text (NUL byte at offset {nul})")


def _check_gzip(path: Path, size: int) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(len(GZIP_MAGIC))
    if size and magic != GZIP_MAGIC:
        raise ShardFileError(path, "not a gzip file (bad header magic)")
    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(TEXT_PROBE_BYTES)
            while fh.read(CHUNK_BYTES):
                pass
    except (EOFError, zlib.error, OSError) as exc:
        raise ShardFileError(path, f"corrupt gzip stream ({describe_error(exc)})") from exc
    _check_text(path, head, compressed=True)


def check_shard_file(path: Path | str) -> None:
    """Raise `ShardFileError` when `path` is not a readable shard file of the type its name says."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ShardFileError(path, describe_error(exc)) from exc
    if not stat.S_ISREG(info.st_mode):
        raise ShardFileError(path, "not a regular file")
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            _check_parquet(path, info.st_size)
        elif name.endswith(tuple(f"{suffix}.gz" for suffix in JSON_SUFFIXES)):
            _check_gzip(path, info.st_size)
        elif name.endswith(JSON_SUFFIXES):
            with open(path, "rb") as fh:
                _check_text(path, fh.read(TEXT_PROBE_BYTES))
        else:
            raise ShardFileError(path, "unsupported shard file type (use .jsonl[.gz] or .parquet)")
    except ShardFileError:
        raise
    except OSError as exc:
        raise ShardFileError(path, describe_error(exc)) from exc


def explain_read_error(path: Path | str, exc: BaseException) -> ShardFileError:
    """The error for a shard file whose reading failed: what the registration check finds now
    (the file may have been truncated or replaced since), else the reader's own exception."""
    try:
        check_shard_file(path)
    except ShardFileError as found:
        return found
    return ShardFileError(path, describe_error(exc))
