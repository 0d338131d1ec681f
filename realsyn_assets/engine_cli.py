"""`realsyn engine`: point a home at a Ray cluster (`--ray ADDRESS`) or back to local
(`--local`); without either, print the engine in use. Also the one line `realsyn status` prints.

Dagster-free and Ray-free: writing the setting needs neither.
"""

from __future__ import annotations

import argparse
import sys

ADDRESS_ENV = "REALSYN_RAY_ADDRESS"  # resources.engine.ADDRESS_ENV, checked by a test


def engine_line(home) -> str:
    """`engine: <what runs the heavy steps>` for a `Home`; a broken engine.yaml is named, not
    raised."""
    from realsyn_assets.resources.engine import resolve_settings

    try:
        return f"engine: {resolve_settings(home.root).describe()}"
    except ValueError as error:
        return f"engine: INVALID ({error})"


def cmd_engine(args: argparse.Namespace) -> int:
    from realsyn_assets.resources.engine import (
        engine_file,
        remove_engine_file,
        resolve_settings,
        write_engine_file,
    )
    from realsyn_assets.resources.home import Home

    home = Home(args.home)
    if args.ray:
        path = write_engine_file(home.root, args.ray, args.gpus_per_gpu_task, args.cpus_per_task)
        print(f"wrote {path}")
    elif args.local:
        removed = remove_engine_file(home.root)
        print(f"removed {engine_file(home.root)}" if removed else "no engine.yaml: already local")
    line = engine_line(home)
    print(line)
    if args.local and resolve_settings(home.root).is_ray:
        print(f"note: ${ADDRESS_ENV} still names a cluster", file=sys.stderr)
    return 1 if "INVALID" in line else 0


def add_parser(sub, home_help: str) -> None:
    """Register `realsyn engine` on the CLI's subparsers."""
    engine = sub.add_parser(
        "engine",
        help="where the heavy per-shard steps (extraction, embedding) run: `--ray HOST:PORT` "
        "writes <home>/engine.yaml so they run as Ray tasks on that cluster, `--local` removes "
        f"it; ${ADDRESS_ENV} overrides the file. Without options: print the engine in use",
    )
    engine.add_argument("--home", default=None, help=home_help)
    target = engine.add_mutually_exclusive_group()
    target.add_argument("--ray", metavar="ADDRESS", help="Ray address, e.g. head-node:6379")
    target.add_argument("--local", action="store_true", help="run in the step's process")
    engine.add_argument(
        "--gpus-per-gpu-task", type=float, default=None, help="GPUs a GPU step asks for (1.0)"
    )
    engine.add_argument(
        "--cpus-per-task", type=float, default=None, help="CPUs every task asks for (1.0)"
    )
    engine.set_defaults(func=cmd_engine)
