"""kill -9 inside the atomic writer (core/io.py): the target keeps its last committed version, and
the temporary file the killed writer leaves is removed by the next write into that folder, but
never while a live writer (another process) still holds it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realsyn_assets.core.io import atomic_write_bytes

pytestmark = pytest.mark.timeout(120)

# A writer in its own process: starts an atomic write of argv[1], writes half of it, says
# "ready", then waits for a line on stdin (or for SIGKILL) before finishing the write.
WRITER = """
import sys
from pathlib import Path
from realsyn_assets.core.io import atomic_path

with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half of the new ")
    print("ready", tmp.name, flush=True)
    sys.stdin.readline()
    tmp.write_bytes(b"new version")
print("done", flush=True)
"""


def _start_writer(target: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not ready:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        raise AssertionError("the writer did not start its write within 60 s")
    line = proc.stdout.readline().split()
    assert line[:1] == ["ready"], line
    return proc, line[1]


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_kill_inside_atomic_write_keeps_the_committed_version(tmp_path):
    target = tmp_path / "out" / "table.parquet"
    atomic_write_bytes(target, b"old version")
    proc, tmp_name = _start_writer(target)
    _kill(proc)
    assert target.read_bytes() == b"old version"  # never half-written, never lost
    assert _temporaries(target.parent) == [tmp_name]  # what the killed writer left


def test_kill_leftover_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out" / "checkpoint.pt"
    proc, tmp_name = _start_writer(target)
    _kill(proc)
    _age(target.parent / tmp_name, 3600)  # a rerun comes later than the kill
    atomic_write_bytes(target.parent / "other.json", b"{}")  # any write into the folder
    assert _temporaries(target.parent) == []
    atomic_write_bytes(target, b"rerun")
    assert target.read_bytes() == b"rerun"


def test_concurrent_writer_keeps_its_temporary_while_another_process_writes(tmp_path):
    target = tmp_path / "out" / "images.parquet"
    proc, tmp_name = _start_writer(target)
    try:
        _age(target.parent / tmp_name, 3600)  # old, but its writer is alive
        atomic_write_bytes(target.parent / "sentences.parquet", b"another writer")
        assert tmp_name in _temporaries(target.parent)
        out, _ = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            _kill(proc)
    assert proc.returncode == 0 and "done" in out
    assert target.read_bytes() == b"new version"
    assert _temporaries(target.parent) == []


def test_kill_sweep_spares_a_temporary_created_an_instant_ago(tmp_path):
    """Between creating its temporary and locking it, a writer is unprotected for an instant:
    only temporaries older than a few seconds that nobody holds are removed."""
    folder = tmp_path / "out"
    folder.mkdir()
    fresh = folder / ".a.parquet.abcd1234.tmp"
    stale = folder / ".b.parquet.efgh5678.tmp"
    fresh.write_bytes(b"just created")
    stale.write_bytes(b"left by a killed run")
    _age(stale, 3600)
    atomic_write_bytes(folder / "c.parquet", b"x")
    assert _temporaries(folder) == [fresh.name]
