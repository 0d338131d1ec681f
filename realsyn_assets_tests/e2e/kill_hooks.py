"""Pause points for the kill -9 suite (test_fault_kill.py): test-only, nothing in the package.

The suite starts `realsyn` through `main()` below in its own process group. Before the package is
imported, `install()` wraps three writers so that the process stops in the middle of one chosen
write, tells the test so through a marker file, and sleeps until the test kills the whole group
with SIGKILL:

* `file:<glob>`: `core.io.atomic_path` for a target matching the glob, after the temporary file
  is written and before it is renamed into place (a checkpoint, a parquet file);
* `duckdb:<stage>:<partition>`: the metrics transaction of that stage and partition, after its
  DELETE and INSERTs and before its COMMIT (the inter-process lock held);
* `lancedb:<table>:<shard>`: `replace_shard` on that LanceDB table, after the shard's old rows
  are deleted and before the new ones are added.

`main(["pipeline-without-bootstrap", "--home", H, "--scales", S...])` runs every stage of
`realsyn run` except the bootstrap encoder (minutes of training that these kill points do not
need: the encoder then is `realsyn-tiny` on local random weights), with the demo's training
settings.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import sys
import time
from pathlib import Path

POINT_ENV = "REALSYN_TEST_KILL_POINT"
MARKER_ENV = "REALSYN_TEST_KILL_MARKER"
PIPELINE_WITHOUT_BOOTSTRAP = "pipeline-without-bootstrap"
PAUSE_S = 900  # the test kills long before; a forgotten child still ends on its own


def _pause(what: str, target: str = "") -> None:
    """Announce the pause point (and the file whose write is cut) through the marker file, then
    wait for SIGKILL."""
    marker = Path(os.environ[MARKER_ENV])
    partial = marker.with_name(marker.name + ".partial")
    state = {"pid": os.getpid(), "pgid": os.getpgid(0), "what": what, "target": target}
    partial.write_text(json.dumps(state))
    os.replace(partial, marker)
    time.sleep(PAUSE_S)
    os._exit(70)


def _install_file_point(pattern: str) -> None:
    import realsyn_assets.core.io as io

    original = io.atomic_path

    @contextlib.contextmanager
    def atomic_path(path, suffix: str = ".tmp"):
        with original(path, suffix) as tmp:
            yield tmp
            if fnmatch.fnmatch(Path(path).as_posix(), pattern):
                target = Path(path).as_posix()
                _pause(f"file {target} written to {tmp.name}, not renamed", target)

    io.atomic_path = atomic_path


class _PausingConnection:
    """A DuckDB connection that pauses before the COMMIT of one stage+partition's rows."""

    def __init__(self, con, stage: str, partition: str):
        self._con, self._target, self._armed = con, [stage, partition], False

    def execute(self, sql: str, *args):
        if sql.startswith("DELETE FROM stage_counts") and args and list(args[0]) == self._target:
            self._armed = True
        if sql.strip() == "COMMIT" and self._armed:
            _pause(f"duckdb transaction of {self._target} before COMMIT")
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._con.close()


def _install_duckdb_point(stage: str, partition: str) -> None:
    import duckdb

    original = duckdb.connect

    def connect(database=":memory:", *args, **kwargs):
        con = original(database, *args, **kwargs)
        if str(database).endswith(".duckdb"):
            return _PausingConnection(con, stage, partition)
        return con

    duckdb.connect = connect


def _install_lancedb_point(table_name: str, shard: str) -> None:
    from lancedb.table import LanceTable

    original = LanceTable.delete

    def delete(self, where, *args, **kwargs):
        result = original(self, where, *args, **kwargs)
        if self.name == table_name and f"'{shard}'" in str(where):
            _pause(f"lancedb table {table_name}: rows of {shard} deleted, new rows not added")
        return result

    LanceTable.delete = delete


def install(point: str) -> None:
    kind, _, rest = point.partition(":")
    if kind == "file":
        _install_file_point(rest)
    elif kind == "duckdb":
        _install_duckdb_point(*rest.split(":", 1))
    elif kind == "lancedb":
        _install_lancedb_point(*rest.split(":", 1))
    elif point:
        raise ValueError(f"unknown kill point {point!r}")


def _pipeline_without_bootstrap(argv: list[str]) -> int:
    from realsyn_assets.cli import _print_stage, demo_run_configs
    from realsyn_assets.definitions import STAGES
    from realsyn_assets.names import Job
    from realsyn_assets.pipeline import prepare_environment, run_stage
    from realsyn_assets.stages import SCALE, SHARD

    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--scales", nargs="+", required=True)
    args = parser.parse_args(argv)
    layout = prepare_environment(args.home)
    configs = demo_run_configs()
    for stage in STAGES:
        if stage.job == Job.BOOTSTRAP_ENCODER:
            continue
        keys = {SHARD: layout.shard_order(), SCALE: args.scales}.get(stage.partitions, [None])
        for key in keys:
            _print_stage(run_stage(stage.job, key, configs.get(stage.job)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    install(os.environ.get(POINT_ENV, ""))  # before the package binds the writers
    if argv[:1] == [PIPELINE_WITHOUT_BOOTSTRAP]:
        return _pipeline_without_bootstrap(argv[1:])
    from realsyn_assets.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
