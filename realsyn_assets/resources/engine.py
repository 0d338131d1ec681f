"""Where the heavy per-shard work runs: in the Dagster step's own process (local, the default)
or as named tasks on a Ray cluster that the home's config names.

The assets keep every read, write and metadata record; what they hand to `EngineResource.run`
is one module-level function and plain, picklable values (paths under the home, config
dataclasses, Arrow tables, lists), and what comes back is a picklable result. So the same call
gives the same bytes locally and on a cluster, as long as every node sees the home at the same
path (a shared filesystem).

Which cluster: the resource's `ray_address` field, else `$REALSYN_RAY_ADDRESS`, else
`<home>/engine.yaml` (`ray: {address: "head:6379", gpus_per_gpu_task: 1.0, cpus_per_task: 1.0}`,
written by `realsyn engine --ray ADDRESS`), else none (local).

Connecting (resources/engine_ray.py, imported only when a cluster is configured: the `cluster`
extra) reuses dagster-ray's `RayResource.connect` (its `ray.init` call with retries on
connection errors and runtime-env handling); dagster-ray's resource lifecycle (connect when a
step starts, disconnect when it ends) and its `ray_executor` do not fit this contract -- a task
per asset and shard named `realsyn:<asset>:<shard>`, a GPU request only for GPU steps, and no
Ray import at all when no cluster is configured -- see docs/distributed.md.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import Field

from realsyn_assets.core.io import atomic_write_bytes
from realsyn_assets.resources.home_resource import HomeBasedResource

ENGINE_FILE = "engine.yaml"
ADDRESS_ENV = "REALSYN_RAY_ADDRESS"
TASK_PREFIX = "realsyn"
DEFAULT_NAMESPACE = "realsyn"
# What each GPU task asks for unless engine.yaml or the resource says otherwise.
DEFAULT_GPUS_PER_GPU_TASK = 1.0
DEFAULT_CPUS_PER_TASK = 1.0

T = TypeVar("T")
log = logging.getLogger(__name__)

# The Ray connection of this process, by address: one `ray.init` per process.
_CONNECTED: dict[str, Any] = {}
_CONNECT_LOCK = threading.Lock()


class EngineError(RuntimeError):
    """A task could not run on the cluster (unschedulable, worker or node lost, bad config)."""


def task_name(asset: str, shard: str) -> str:
    """`realsyn:<asset>:<shard>`: the Ray task name the state API and dashboard filter on."""
    return f"{TASK_PREFIX}:{asset}:{shard}"


@dataclass(frozen=True)
class EngineSettings:
    """The resolved engine: `address` empty = local; `source` says which setting named it."""

    address: str
    gpus_per_gpu_task: float
    cpus_per_task: float
    source: str  # "resource" | "env" | "file" | "default"

    @property
    def is_ray(self) -> bool:
        return bool(self.address)

    def describe(self) -> str:
        if not self.is_ray:
            return "local (in the Dagster step's process)"
        return (
            f"ray at {self.address} (from {self.source}; {self.cpus_per_task:g} CPU per task, "
            f"{self.gpus_per_gpu_task:g} GPU per GPU task)"
        )


def engine_file(root: Path | str) -> Path:
    return Path(root) / ENGINE_FILE


def read_engine_file(root: Path | str) -> dict[str, Any]:
    """The `ray:` section of `<home>/engine.yaml`; {} when there is no file. A file that is not
    a YAML mapping with a `ray` mapping is an error naming the file."""
    path = engine_file(root)
    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    section = loaded.get("ray", {}) if isinstance(loaded, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"{path}: expected a mapping `ray: {{address: ...}}`, got {loaded!r}")
    return section


def write_engine_file(
    root: Path | str,
    address: str,
    gpus_per_gpu_task: float | None = None,
    cpus_per_task: float | None = None,
) -> Path:
    """Point the home at a Ray cluster (atomic write of `<home>/engine.yaml`)."""
    if not address.strip():
        raise ValueError("a Ray address is needed, e.g. head-node:6379")
    section: dict[str, Any] = {"address": address.strip()}
    if gpus_per_gpu_task is not None:
        section["gpus_per_gpu_task"] = float(gpus_per_gpu_task)
    if cpus_per_task is not None:
        section["cpus_per_task"] = float(cpus_per_task)
    path = engine_file(root)
    atomic_write_bytes(path, yaml.safe_dump({"ray": section}, sort_keys=True).encode())
    return path


def remove_engine_file(root: Path | str) -> bool:
    """Back to the local engine; True when a file was removed."""
    path = engine_file(root)
    if path.exists():
        path.unlink()
        return True
    return False


def resolve_settings(
    root: Path | str,
    address: str = "",
    gpus_per_gpu_task: float = DEFAULT_GPUS_PER_GPU_TASK,
    cpus_per_task: float = DEFAULT_CPUS_PER_TASK,
) -> EngineSettings:
    """Precedence: an explicit value (`address` non-empty; a per-task amount other than its
    default) > `$REALSYN_RAY_ADDRESS` (address only) > `<home>/engine.yaml` > local."""
    section = read_engine_file(root)
    if address:
        chosen, source = address, "resource"
    elif os.environ.get(ADDRESS_ENV, "").strip():
        chosen, source = os.environ[ADDRESS_ENV].strip(), "env"
    elif str(section.get("address", "")).strip():
        chosen, source = str(section["address"]).strip(), "file"
    else:
        chosen, source = "", "default"

    def amount(value: float, default: float, key: str) -> float:
        picked = section.get(key, default) if value == default else value
        try:
            number = float(picked)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{engine_file(root)}: {key} must be a number, not {picked!r}"
            ) from error
        if number < 0:
            raise ValueError(f"{key} must be >= 0, not {number}")
        return number

    return EngineSettings(
        address=chosen,
        gpus_per_gpu_task=amount(gpus_per_gpu_task, DEFAULT_GPUS_PER_GPU_TASK, "gpus_per_gpu_task"),
        cpus_per_task=amount(cpus_per_task, DEFAULT_CPUS_PER_TASK, "cpus_per_task"),
        source=source,
    )


class EngineResource(HomeBasedResource):
    """Runs a step's heavy function in process (local) or as a named Ray task (cluster)."""

    ray_address: str = Field(
        "",
        description='Ray cluster address ("head:6379", "ray://head:10001", "auto"); empty = '
        "$REALSYN_RAY_ADDRESS, else <home>/engine.yaml, else local (no Ray at all).",
    )
    gpus_per_gpu_task: float = Field(
        DEFAULT_GPUS_PER_GPU_TASK,
        description="GPUs a GPU step's task asks Ray for (fractions share a GPU); asked only "
        "when the cluster has GPUs. At 1.0 the value in engine.yaml, if any, applies.",
    )
    cpus_per_task: float = Field(
        DEFAULT_CPUS_PER_TASK,
        description="CPUs every task asks Ray for. At 1.0 the value in engine.yaml, if any, "
        "applies.",
    )
    runtime_env: dict[str, Any] = Field(
        {},
        description="Ray runtime_env of the connection (env_vars, pip, working_dir, ...); "
        "empty = the workers' own Python environment, which must have realsyn_assets installed.",
    )
    namespace: str = Field(DEFAULT_NAMESPACE, description="Ray namespace of the connection.")

    def settings(self) -> EngineSettings:
        return resolve_settings(
            self.layout.root, self.ray_address, self.gpus_per_gpu_task, self.cpus_per_task
        )

    def describe(self) -> str:
        return self.settings().describe()

    def task_workers(self, local: int) -> int:
        """Processes a task may start: `local` (this machine's setting) in process; on Ray the
        CPUs the task asked for, so a task does not crowd the node it was placed on."""
        settings = self.settings()
        return max(1, int(settings.cpus_per_task)) if settings.is_ray else local

    def run(
        self, fn: Callable[..., T], *args: Any, name: str, gpu: bool = False, **kwargs: Any
    ) -> T:
        """`fn(*args, **kwargs)`, here or as the Ray task `name` (wait for it, return its
        result). A task's exception is re-raised as itself with a note naming the task."""
        settings = self.settings()
        if not settings.is_ray:
            try:
                return fn(*args, **kwargs)
            except Exception as error:
                error.add_note(f"in task {name} (local engine)")
                raise
        return _run_on_ray(settings, self.namespace, self.runtime_env, fn, args, kwargs, name, gpu)


def _connect(address: str, namespace: str, runtime_env: dict[str, Any]):
    """The `ray` module, connected to `address` once per process."""
    try:
        import ray
    except ImportError as error:
        raise EngineError(
            f"the engine names the Ray cluster {address} but ray is not installed here: "
            "install the `cluster` extra (ray[default], dagster-ray), or `realsyn engine --local`"
        ) from error

    with _CONNECT_LOCK:
        if address not in _CONNECTED or not ray.is_initialized():
            if ray.is_initialized():  # connected elsewhere: ray.init would silently keep that
                ray.shutdown()
            _CONNECTED.clear()
            options = {"namespace": namespace, "ignore_reinit_error": True, "log_to_driver": True}
            if runtime_env:
                options["runtime_env"] = dict(runtime_env)
            from realsyn_assets.resources.engine_ray import connect

            _CONNECTED[address] = connect(address, options)
            log.info(f"connected to Ray at {address} (namespace {namespace})")
    return ray


def disconnect() -> None:
    """End this process's Ray connection, if any (before its cluster goes away: a connected
    driver whose cluster vanishes is aborted by Ray after a minute)."""
    with _CONNECT_LOCK:
        if _CONNECTED:
            import ray

            ray.shutdown()
            _CONNECTED.clear()


def _gpus(ray, settings: EngineSettings, gpu: bool, name: str) -> float:
    """A GPU step asks for `gpus_per_gpu_task` GPUs when the cluster has any; on a CPU-only
    cluster it asks for none (it would never be scheduled) and runs on CPU."""
    if not gpu or settings.gpus_per_gpu_task == 0:
        return 0.0
    if ray.cluster_resources().get("GPU", 0) <= 0:
        log.warning(f"{name}: the Ray cluster has no GPU; running this GPU step on CPU")
        return 0.0
    return settings.gpus_per_gpu_task


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return fn(*args, **kwargs)


def _run_on_ray(settings, namespace, runtime_env, fn, args, kwargs, name: str, gpu: bool):
    ray = _connect(settings.address, namespace, runtime_env)
    from ray.exceptions import RayError, RayTaskError

    options = {
        "name": name,
        "num_cpus": settings.cpus_per_task,
        "num_gpus": _gpus(ray, settings, gpu, name),
    }
    if not inspect.isfunction(fn):  # a builtin, partial or bound method: call it in a function
        fn, args = _call, (fn, *args)
    ref = ray.remote(fn).options(**options).remote(*args, **kwargs)
    try:
        return ray.get(ref)
    except RayTaskError as error:
        cause = error.cause
        if isinstance(cause, Exception):
            cause.add_note(f"in Ray task {name} at {settings.address}")
            raise cause from error
        raise EngineError(f"Ray task {name} failed: {error}") from error
    except RayError as error:  # worker or node died, object lost, task cancelled, ...
        raise EngineError(f"Ray task {name} failed on {settings.address}: {error}") from error
