"""Data-parallel training across processes: which rank this process is, and the process group.

`torchrun` (``python -m torch.distributed.run``) starts one worker process per device and tells
each its place through the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). Every
rank builds the same model from the same seed, takes its share of each step's global batch, and
DistributedDataParallel averages the gradients; the contrastive loss gathers all ranks' features
so each rank sees the whole global batch as negatives (open_clip's ``gather_with_grad``). gloo
serves CPUs, nccl GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs the loss and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def context_from_env(env: dict[str, str] | None = None) -> DistContext:
    """The rank torchrun gave this process, or `SINGLE` when started without torchrun."""
    env = os.environ if env is None else env
    return DistContext(
        rank=int(env.get("RANK", 0)),
        world_size=int(env.get("WORLD_SIZE", 1)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
    )


def rank_device(device: str, ctx: DistContext) -> str:
    """Each rank's own GPU (``cuda:<local_rank>``); CPU ranks share the CPU."""
    if device.startswith("cuda") and ctx.distributed:
        return f"cuda:{ctx.local_rank}"
    return device


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def init_process_group(ctx: DistContext, device: str) -> None:
    """Join the torchrun process group (a no-op for a single process)."""
    if not ctx.distributed:
        return
    import torch
    import torch.distributed as torch_dist

    if device.startswith("cuda"):
        torch.cuda.set_device(ctx.local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend=backend_for(device), rank=ctx.rank, world_size=ctx.world_size
        )


def destroy_process_group(ctx: DistContext) -> None:
    if not ctx.distributed:
        return
    import torch.distributed as torch_dist

    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def resolve_nproc(nproc_per_node: int, device: str) -> int:
    """Processes to start: ``0`` means one per visible GPU, or 1 on a machine without one."""
    if nproc_per_node < 0:
        raise ValueError(f"nproc_per_node must be >= 0, got {nproc_per_node}")
    if nproc_per_node > 0:
        return nproc_per_node
    if not device.startswith("cuda") and device != "auto":
        return 1
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def usable_batch(size: int, world_size: int) -> int:
    """Samples of a global batch of `size` that a step uses: a multiple of the world size (the
    feature gather needs equal shards) and at least 2 (InfoNCE needs a negative); 0 = skip."""
    used = size - size % world_size
    return used if used >= max(2, world_size) else 0
