"""A throwaway PostgreSQL server for tests, from the Debian package's binaries.

`initdb` into a temporary folder, `postgres` on a free port of 127.0.0.1 in its own process
group (Unix socket in that folder too), stopped by its PID with SIGINT (fast shutdown) when the
context ends, even after a failure. PostgreSQL refuses to run as root: when the test runs as
root, the folder belongs to the `postgres` user and both binaries run as that user (the child
process drops to it before exec, so the PID we hold is the server itself).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "realsyn"
START_TIMEOUT_S = 60


def find_bindir() -> Path | None:
    """The folder of initdb/postgres/pg_isready: `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    candidates += [Path(p) for p in reversed(versions)]
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "postgres", "pg_isready")):
            return bindir
    return None


def require_bindir() -> Path:
    """The binaries, or a skip (a failure under REALSYN_REQUIRE_CLUSTER=1)."""
    bindir = find_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin);"
            " install the Debian package postgresql"
        )
        if os.environ.get("REALSYN_REQUIRE_CLUSTER") == "1":
            pytest.fail(reason + " (REALSYN_REQUIRE_CLUSTER=1)")
        pytest.skip(reason)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            reason = "running as root and no `postgres` user to run the server as"
            if os.environ.get("REALSYN_REQUIRE_CLUSTER") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
    return bindir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    process: subprocess.Popen

    def url(self, db: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{db}"

    def connect(self, db: str = "postgres"):
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=db)
        conn.autocommit = True
        return conn

    def create_database(self, name: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()


def _as_postgres_user() -> dict:
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _wait_ready(bindir: Path, process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{log.read_text()}")
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "2"],
            capture_output=True,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"postgres not ready within {START_TIMEOUT_S}s:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    """Fast shutdown by PID; the whole process group is killed if it does not end in time."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@contextlib.contextmanager
def postgres_server(bindir: Path) -> Iterator[PostgresServer]:
    """A running server on 127.0.0.1 (trust authentication, superuser SUPERUSER)."""
    root = Path(tempfile.mkdtemp(prefix="realsyn-pg-", dir="/tmp"))
    data, sockets, log = root / "data", root / "sock", root / "postgres.log"
    drop = _as_postgres_user()
    process = None
    try:
        data.mkdir()
        sockets.mkdir()
        log.touch()
        if drop:
            for path in (root, data, sockets, log):
                os.chown(path, drop["user"], drop["group"])
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8"],
            check=True,
            capture_output=True,
            cwd=str(root),
            **drop,
        )
        port = _free_port()
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets)]
                + ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(root),
                start_new_session=True,
                **drop,
            )
        _wait_ready(bindir, process, port, log)
        yield PostgresServer("127.0.0.1", port, SUPERUSER, process)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)
