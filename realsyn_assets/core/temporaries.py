"""Temporary files of the atomic writer (`core.io.atomic_path`) left behind by a dead writer.

A writer killed with SIGKILL (or a machine that lost power) between creating its temporary
`.NAME.XXXXXXXX.tmp` and renaming it into place leaves that file behind; nothing would ever
remove it. So every live writer holds an exclusive `flock` on its temporary for as long as the
temporary exists (the kernel drops it when the process dies), and the first write into a folder
in each process removes the temporaries there that nobody holds. A temporary created an instant
ago is spared too (between creating and locking it its writer is unprotected): only those older
than `STALE_AFTER_S` go. Any number of processes can write into one folder at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import time
from pathlib import Path

STALE_AFTER_S = 10.0
# `atomic_path` names: "." + target name + "." + mkstemp's random part + ".tmp" (or ".tmp.npy")
TEMPORARY_NAME = re.compile(r"^\..+\.tmp(\.npy)?$")

_swept: set[str] = set()  # folders this process has already cleaned


def hold(fd: int) -> None:
    """Lock a new temporary (by its open descriptor) for as long as the descriptor is open.
    Blocking: a sweeper may hold it for an instant while it looks at its age."""
    fcntl.flock(fd, fcntl.LOCK_EX)


def _remove_if_stale(path: str, now: float) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < STALE_AFTER_S:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # under our lock: no writer can be using it
        return True
    finally:
        os.close(fd)


def remove_stale(folder: Path | str) -> list[str]:
    """Remove the temporaries in `folder` that no live writer holds (once per process and
    folder; later calls return at once). Returns the names removed."""
    key = os.path.abspath(folder)
    if key in _swept:
        return []
    _swept.add(key)
    try:
        with os.scandir(key) as entries:
            names = [e.name for e in entries if TEMPORARY_NAME.match(e.name)]
    except OSError:
        return []
    now = time.time()
    return [name for name in names if _remove_if_stale(os.path.join(key, name), now)]
