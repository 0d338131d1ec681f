"""BLAS / OpenMP thread control for the many small matrix products of cluster-first retrieval."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def blas_thread_counts() -> dict[str, int]:
    """Thread counts of the BLAS / OpenMP pools loaded in this process (threadpoolctl's view:
    numpy's OpenBLAS, the OpenMP runtimes of faiss and torch) and of torch if imported."""
    from threadpoolctl import threadpool_info

    out = {
        f"{info['internal_api']}:{os.path.basename(info['filepath'])}": int(info["num_threads"])
        for info in threadpool_info()
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = int(torch.get_num_threads())
    return out


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` BLAS / OpenMP threads (numpy's OpenBLAS, torch, faiss); restore.

    Why: cluster-first retrieval does thousands of tiny matrix products (tens of images x a
    few hundred sentences). A multithreaded BLAS spends longer waking and synchronising
    threads than computing them, and on a shared machine its spin-waiting threads fight
    other processes for cores, which can make retrieval an order of magnitude slower than
    with one thread. Parallelise across shards/processes instead. `None` or 0 leaves everything unchanged. The settings are process-wide, so do
    not run this concurrently with other threads that rely on multithreaded BLAS. torch's
    intra-op pool is adjusted only if torch is already imported (importing it costs seconds).
    """
    if not n:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    old_torch = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(int(n))
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        if torch is not None and old_torch is not None:
            torch.set_num_threads(old_torch)
