"""The one atomic writer: every file the pipeline writes goes to a temporary name in the target's
folder first and is renamed into place, so a killed run never leaves a half-written file and a
reader never sees one. Also the parquet/npy helpers built on it.

A write that fails because of the machine, not the data (a full disk, a missing permission, a
read-only file system) raises `StorageError`: one line naming the path and the cause ("No space
left on device while writing <path>", "Permission denied: <path>"). `ensure_free_space` checks
before a big write whose size is known (checkpoints, a shard's images, webdataset tars), so the
error comes before the work that would be lost, and while Dagster's own storage still has room
to record it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from realsyn_assets.core import temporaries

# Kept free on the target's file system after a checked write: room for the Dagster instance's
# SQLite storage, DuckDB and LanceDB to record the run (and the failure) after it.
FREE_SPACE_RESERVE_BYTES = 32 * 2**20

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_PERMISSION = (errno.EACCES, errno.EPERM)


class StorageError(OSError):
    """A write that failed because of the storage (full disk, no permission, read-only file
    system). ``str()`` is one line naming the path and the cause; ``errno`` and ``filename``
    are set as on any OSError. Plain OSError arguments, so it survives a process pool."""

    def __str__(self) -> str:
        return str(self.strerror)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def storage_error(exc: BaseException, path: Path | str) -> StorageError | None:
    """`exc` as a StorageError naming `path`, or None when it is not a storage failure.

    pyarrow reports ENOSPC as an OSError with errno 28 and its own wording; torch swallows it
    (see `atomic_torch_save`), so only errnos are trusted here."""
    if isinstance(exc, StorageError):
        return exc
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code in _NO_SPACE:
        message = f"{os.strerror(code)} while writing {path}"
    elif code in _NO_PERMISSION:
        message = f"Permission denied: {path}"
    elif code == errno.EROFS:
        message = f"Read-only file system: {path}"
    else:
        return None
    return StorageError(code, message, str(path))


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def free_bytes(path: Path | str) -> int:
    """Free bytes (for this user) on the file system that holds `path` or would hold it."""
    return shutil.disk_usage(_existing_parent(Path(path).absolute())).free


def ensure_free_space(
    path: Path | str, needed: int, reserve: int = FREE_SPACE_RESERVE_BYTES
) -> None:
    """Raise StorageError (ENOSPC) unless writing about `needed` bytes at `path` leaves `reserve`
    bytes free. Call it before a big write whose size is known, before the work behind it."""
    free = free_bytes(path)
    if needed + reserve > free:
        message = (
            f"No space left on device while writing {path}: needs {_size(needed)} "
            f"plus {_size(reserve)} reserve, {_size(free)} free"
        )
        raise StorageError(errno.ENOSPC, message, str(path))


def _failed_path(exc: OSError, path: Path, tmp: Path | None) -> Path | str:
    """The path to name for a failure inside `atomic_path`: the target for its own temporary
    file and folders, the file the OSError names otherwise (a source read by the writer)."""
    other = exc.filename
    if other is None or (tmp is not None and str(other) == str(tmp)):
        return path
    failed = Path(other)
    if failed in path.parents:
        return path
    if failed.parent == path.parent and failed.name.startswith(f".{path.name}."):
        return path  # mkstemp's own name for the temporary file
    return other


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else remove it.

    `suffix` lets writers that pick a format from the file name (np.save adds `.npy`) keep it.
    A full disk or a missing permission becomes a StorageError naming `path`. The temporary
    is locked while it exists, and the temporaries of killed writers are removed by the next
    process writing into the folder (core/temporaries.py).
    """
    path = Path(path)
    tmp: Path | None = None
    fd: int | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporaries.remove_stale(path.parent)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        temporaries.hold(fd)
        tmp = Path(name)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        error = (
            storage_error(exc, _failed_path(exc, path, tmp)) if isinstance(exc, OSError) else None
        )
        if error is None or error is exc:
            raise
        raise error from exc
    finally:
        if fd is not None:
            os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_table(table: pa.Table, path: Path) -> Path:
    """Parquet (zstd), written atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


class RecordingWriter:
    """A binary file object that keeps the OSError a write raised. Writers that own the file
    lose it: numpy's `tofile` reports ENOSPC as "N requested and M written" (no errno), torch
    as an opaque RuntimeError; through this object numpy writes with `write` (the OSError
    propagates, errno intact) and torch's caller can re-raise `error`. Same bytes either way."""

    def __init__(self, fh: Any):
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._fh.flush()


def save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path, suffix=".tmp.npy") as tmp, open(tmp, "wb") as fh:
        np.save(RecordingWriter(fh), array)


def relative_to_root(path: Path | str, root: Path | str | None) -> str:
    """`path` as outputs store it: relative to `root` (the home) with `/` separators, so two
    homes built from the same inputs hold the same bytes; a path outside `root` (or with no
    `root`) stays as given. `resolve_under` turns it back into a path to open."""
    if root is None:
        return str(path)
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def resolve_under(root: Path | str, stored: str) -> str:
    """A path stored by `relative_to_root`, to open: joined with `root` when relative (absolute
    paths, as older homes stored them, are returned unchanged)."""
    return str(Path(root) / stored)


def resolve_column(table: pa.Table, column: str, root: Path | str) -> pa.Table:
    """`table` with the stored paths in `column` resolved against `root` (`resolve_under`)."""
    paths = [
        None if p is None else resolve_under(root, p) for p in table.column(column).to_pylist()
    ]
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(paths, pa.string()))


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A parquet file, with a message naming the missing upstream when it does not exist."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: materialize the upstream asset for this partition first"
        )
    return pq.read_table(path, columns=columns)
