"""The one atomic writer: every file the pipeline writes goes to a temporary name in the target's
folder first and is renamed into place, so a killed run never leaves a half-written file and a
reader never sees one. Also the parquet/npy helpers built on it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else remove it.

    `suffix` lets writers that pick a format from the file name (np.save adds `.npy`) keep it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_table(table: pa.Table, path: Path) -> Path:
    """Parquet (zstd), written atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path, suffix=".tmp.npy") as tmp:
        np.save(tmp, array)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A parquet file, with a message naming the missing upstream when it does not exist."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: materialize the upstream asset for this partition first"
        )
    return pq.read_table(path, columns=columns)
