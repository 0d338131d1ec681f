"""A throwaway Ray cluster on 127.0.0.1 for tests: a head and worker nodes started from the
venv's `ray`, each `ray start --block` in its own process group, stopped by killing those
groups (never `ray stop`, which stops every Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE = "REALSYN_REQUIRE_CLUSTER"


def require_ray() -> Path:
    """The venv's `ray` executable, or a skip (a failure under REALSYN_REQUIRE_CLUSTER=1)."""
    reason = ""
    try:
        import ray  # noqa: F401
    except ImportError:
        reason = "ray is not installed (pip install 'ray[default]')"
    exe = Path(sys.executable).parent / "ray"
    if not reason and not exe.is_file():
        reason = f"no `ray` executable next to {sys.executable}"
    if reason:
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{reason} ({REQUIRE}=1)")
        pytest.skip(reason)
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayCluster:
    address: str  # host:port of the head's GCS, what `realsyn engine --ray` takes
    dashboard: str  # http://host:port, what ray.util.state takes


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _wait_nodes(exe: Path, address: str, nodes: int, env: dict, procs: list) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a Ray node exited with {proc.returncode} while starting")
        out = subprocess.run(
            [str(exe), "status", "--address", address], capture_output=True, text=True, env=env
        ).stdout
        active = out.split("Active:", 1)[-1].split("Pending:", 1)[0]
        if active.count("node_") >= nodes:
            return
        time.sleep(1)
    raise TimeoutError(f"Ray cluster at {address} did not reach {nodes} nodes in 120 s")


@contextlib.contextmanager
def ray_cluster(workers: int = 1, cpus: int = 1) -> Iterator[RayCluster]:
    """A head plus `workers` worker nodes with `cpus` CPUs each; killed on exit."""
    exe = require_ray()
    port, dashboard = _free_port(), _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus)]
    common += ["--disable-usage-stats"]
    head_args = ["--head", "--port", str(port), "--dashboard-host", "127.0.0.1"]
    head_args += ["--dashboard-port", str(dashboard), "--temp-dir", str(temp)]
    procs: list[subprocess.Popen] = []
    address = f"127.0.0.1:{port}"

    def start(args: list[str], log: str) -> None:
        with open(temp / log, "w") as out:
            procs.append(
                subprocess.Popen(
                    [str(exe), "start", *args, *common],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )

    try:
        start(head_args, "head.log")
        _wait_nodes(exe, address, 1, env, procs)
        for i in range(workers):
            start(["--address", address], f"worker{i}.log")
        _wait_nodes(exe, address, 1 + workers, env, procs)
        yield RayCluster(address=address, dashboard=f"http://127.0.0.1:{dashboard}")
    finally:
        for proc in reversed(procs):
            _kill_group(proc, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        for proc in procs:  # the nodes' children (raylet, GCS, workers) share the group
            _kill_group(proc, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
