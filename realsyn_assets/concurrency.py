"""The GPU concurrency pool of a home's Dagster instance, made safe for several processes.

GPU-bound assets (embeddings, bootstrap encoder, captioner, training, evaluation) are in the
Dagster pool `GPU_POOL`. Each of their steps claims one of the pool's slots in the instance's
event log storage while it runs, in every process that executes runs of the instance (the
in-process executor of `realsyn run` claims them like the daemon's runs do). The limit comes from
the home's dagster.yaml (`concurrency.pools.default_limit`, written by `realsyn`) or from a limit
set on the pool itself (`realsyn run --gpu-slots N`, `dagster instance concurrency set`, the UI).

Two things this module adds to Dagster's pools:

* On SQLite storage, claims are made atomic across processes. Dagster's claim reads "is a slot
  free?", queues the step, then takes a slot in separate SQLite statements; SQLite ignores the
  row lock (`FOR UPDATE SKIP LOCKED`) that makes this safe on Postgres, so two runs that reach a
  GPU step at the same moment both get the one slot (seen with two shards' `image_embeddings`).
  `serialize_pool_claims` runs every slot-changing call of an instance's storage under one
  inter-process lock in the Dagster home. A PostgreSQL-backed instance (`realsyn instance
  --postgres`, see instance_config.py) is left alone: its row locks make claims atomic across
  processes and machines, which a lock file on one machine could not.
* Slots of killed runs are freed. A run killed during a GPU step never frees its slot, and with
  one slot every later GPU step would wait for ever; `release_dead_runs` frees the slots of runs
  started on this machine whose process is gone, and marks those runs failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

GPU_POOL = "encoder"

# Tags of the runs realsyn starts in process: who executes them (see release_dead_runs).
RUN_PID_TAG = "realsyn/pid"
RUN_HOST_TAG = "realsyn/host"

POOL_LOCK_FILE = ".realsyn-pool.lock"

# The event log storage calls that read or change pool slots and queued steps.
_POOL_CALLS = (
    "claim_concurrency_slot",
    "free_concurrency_slot_for_step",
    "free_concurrency_slots_for_run",
    "initialize_concurrency_limit_to_default",
    "set_concurrency_slots",
    "delete_concurrency_limit",
    "get_pool_limits",
    "get_concurrency_info",
)


class _ProcessLock:
    """Exclusive across processes (flock on one file), re-entrant within a process, so that a
    locked storage call may make another one."""

    def __init__(self, path: Path):
        self.path = path
        self._guard = threading.RLock()
        self._depth = 0
        self._handle = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._guard:
            if self._depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(self.path, "a+")  # noqa: SIM115 - held across the yield
                fcntl.flock(handle, fcntl.LOCK_EX)
                self._handle = handle
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._handle is not None:
                    fcntl.flock(self._handle, fcntl.LOCK_UN)
                    self._handle.close()
                    self._handle = None


_LOCKS: dict[Path, _ProcessLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> _ProcessLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, _ProcessLock(path))


def pool_lock(instance) -> _ProcessLock:
    """The inter-process lock of the instance's pool bookkeeping."""
    return _lock_for(Path(instance.root_directory).resolve() / POOL_LOCK_FILE)


def claims_need_lock(storage) -> bool:
    """Whether this event log storage needs `serialize_pool_claims`: every storage but
    PostgreSQL's, whose `FOR UPDATE SKIP LOCKED` already makes a claim atomic."""
    try:
        from dagster_postgres import PostgresEventLogStorage
    except ImportError:  # dagster-postgres not installed: no Postgres storage either
        return True
    return not isinstance(storage, PostgresEventLogStorage)


def serialize_pool_claims(instance):
    """Make the instance's pool-slot calls atomic across processes (see the module docstring);
    returns the instance. Calling it again on the same instance changes nothing; a Postgres
    storage is returned untouched."""
    storage = instance.event_log_storage
    if getattr(storage, "_realsyn_pool_lock", None) is not None or not claims_need_lock(storage):
        return instance
    lock = pool_lock(instance)

    def locked(call):
        @functools.wraps(call)
        def wrapper(*args, **kwargs):
            with lock.hold():
                return call(*args, **kwargs)

        return wrapper

    for name in _POOL_CALLS:
        if hasattr(storage, name):
            setattr(storage, name, locked(getattr(storage, name)))
    storage._realsyn_pool_lock = lock
    return instance


def ensure_pool_limit(instance, pool: str = GPU_POOL) -> None:
    """Create `pool`'s limit row (the dagster.yaml default) before any step claims a slot.

    A step that finds no row inserts it (`initialize_concurrency_limit_to_default`). Two
    processes doing that at once on PostgreSQL both insert; the loser's IntegrityError is caught
    inside Dagster's transaction, which PostgreSQL has already aborted, so its step fails
    (`InFailedSqlTransaction`). Creating the row here, once per process before the steps start,
    and accepting that another process may win the insert, removes the race from the steps. On
    SQLite the claims are serialized anyway (serialize_pool_claims)."""
    storage = instance.event_log_storage
    if claims_need_lock(storage) or not storage.supports_global_concurrency_limits:
        return
    if storage.get_pool_config().default_pool_limit is None:
        return

    def present() -> bool:
        return any(limit.name == pool for limit in storage.get_pool_limits())

    if present():
        return
    try:
        storage.initialize_concurrency_limit_to_default(pool)
    except Exception:
        if not present():  # not a lost race: a real error
            raise


def set_gpu_slots(instance, slots: int) -> None:
    """Give the GPU pool its own limit in the instance (kept until changed; it overrides
    dagster.yaml's `default_limit`), as `dagster instance concurrency set encoder N` would."""
    if slots < 1:
        raise ValueError(f"the GPU pool needs at least 1 slot, not {slots}")
    serialize_pool_claims(instance).event_log_storage.set_concurrency_slots(GPU_POOL, slots)


def gpu_slots(instance) -> int | None:
    """How many GPU-pool steps may run at once: the pool's own limit, else dagster.yaml's
    `concurrency.pools.default_limit`; None when nothing limits it."""
    storage = serialize_pool_claims(instance).event_log_storage
    if storage.supports_global_concurrency_limits:
        for pool in storage.get_pool_limits():
            if pool.name == GPU_POOL and not pool.from_default:
                return pool.limit
    return storage.get_pool_config().default_pool_limit


def run_tags() -> dict[str, str]:
    """Tags for a run executed by this process."""
    return {RUN_PID_TAG: str(os.getpid()), RUN_HOST_TAG: socket.gethostname()}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def release_dead_runs(instance) -> list[str]:
    """Free the pool slots (held or queued for) of runs whose process is gone, mark those runs
    failed, and return their ids.

    Only runs started in process on this machine are judged, by their pid and host tags; runs
    without them (launched by `dagster dev`) are the daemon's. A finished run that still holds
    slots (its process died between the run's end and freeing them) is freed as well."""
    serialize_pool_claims(instance)
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    freed = []
    with pool_lock(instance).hold():
        for run_id in sorted(storage.get_concurrency_run_ids()):
            run = instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                pid = run.tags.get(RUN_PID_TAG, "")
                if run.tags.get(RUN_HOST_TAG) != socket.gethostname() or not pid.isdigit():
                    continue
                if _process_alive(int(pid)):
                    continue
                instance.report_run_failed(
                    run, f"its process {pid} ended before the run did (killed?); pool slots freed"
                )
            storage.free_concurrency_slots_for_run(run_id)
            freed.append(run_id)
    return freed
