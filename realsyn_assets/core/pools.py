"""Process pools for the CPU stages: one start method and one fork-server preload for all.

Forking a parent that already runs threads (torch, faiss, Dagster) can deadlock, so workers come
from a fork server where the platform has one (spawn elsewhere). The fork server is a single
process per interpreter whose preload list only counts before it starts, so every pool must ask
for the same list: the stage modules (numpy and Pillow behind `core.images.extract`, nupunkt
behind `core.text.sentences`). Workers forked from it start with them loaded, so a pool starts in
a fraction of the time re-importing them would take (`realsyn bench extract` reports it).
"""

from __future__ import annotations

from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext

STAGE_MODULES = ["realsyn_assets.core.images.extract", "realsyn_assets.core.text.sentences"]


def default_start_method() -> str:
    return "forkserver" if "forkserver" in get_all_start_methods() else "spawn"


def worker_context(start_method: str | None = None) -> BaseContext:
    """The multiprocessing context for a stage pool (fork server preloaded where used)."""
    method = start_method or default_start_method()
    context = get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(STAGE_MODULES)
    return context
