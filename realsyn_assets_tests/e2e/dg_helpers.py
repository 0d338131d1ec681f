"""Running the `dg` CLI of this project against a private copy of a materialized home.

`dg` (dagster-dg-cli) finds the project through `[tool.dg]` in pyproject.toml, so every command
runs from the repository root. Each process is started in its own session and, when it outlives
its time limit or the test ends, its whole process group is stopped (the webserver, the daemon
and the code server are children of `dg dev`; `dg launch` forks run workers).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from realsyn_assets_tests.conftest import REPO, cli_env
from realsyn_assets_tests.e2e.test_webserver import (
    _free_port,
    _graphql,
    _restore_default_signals,
)
from realsyn_assets_tests.vllm_cpu.server import stop_group

graphql = _graphql  # the `data` of one GraphQL request to the webserver (errors fail the test)

DG = Path(sys.executable).with_name("dg")


def copy_home(source: Path, target: Path) -> Path:
    """A copy of a realsyn home at `target` that other tests never see. The instance config
    (dagster/dagster.yaml) may name the home's absolute path: those names move to the copy."""
    shutil.copytree(source, target, symlinks=True)
    config = target / "dagster" / "dagster.yaml"
    if config.exists():
        config.write_text(config.read_text().replace(str(source), str(target)))
    return target


def dg_env(home: Path) -> dict[str, str]:
    """`cli_env(home)` plus this interpreter's environment as the active one (dg warns when the
    active virtual environment is not the project's)."""
    env = cli_env(home)
    env["VIRTUAL_ENV"] = sys.prefix
    return env


def _start(home: Path, args: list[str], log) -> subprocess.Popen:
    """`dg <args>` from the repository root over `home`, in its own session, output to `log`."""
    return subprocess.Popen(
        [str(DG), *args],
        cwd=str(REPO),
        env=dg_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_restore_default_signals,  # noqa: PLW1509 - no threads started yet
    )


@dataclass(frozen=True)
class Finished:
    returncode: int
    output: str


def run_dg(home: Path, *args: str, timeout: int = 600) -> Finished:
    """`dg <args>` in the repository root over `home`, stopped (whole group) after `timeout`."""
    log_path = home / f"dg-{args[0]}.log"
    with open(log_path, "w") as log:
        proc = _start(home, list(args), log)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"dg {' '.join(args)} ran past {timeout}s:\n{log_path.read_text()[-4000:]}"
            ) from None
        finally:
            stop_group(proc, grace_s=10)
    return Finished(proc.returncode, log_path.read_text())


@contextmanager
def dg_dev(home: Path, start_timeout: int = 240) -> Iterator[int]:
    """`dg dev` (webserver + daemon) on 127.0.0.1 over `home`; yields the port once the
    webserver answers; stops the whole process group on exit."""
    port = _free_port()
    log_path = home / "dg-dev.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in finally
    proc = _start(home, ["dev", "--host", "127.0.0.1", "--port", str(port)], log)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"dg dev exited:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"dg dev did not answer in {start_timeout}s:\n"
                        f"{log_path.read_text()[-4000:]}"
                    ) from None
                time.sleep(1)
        yield port
    finally:
        stop_group(proc, grace_s=60)
        log.close()
