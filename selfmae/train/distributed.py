"""torchrun support: process group, DDP wrapping, and the few collectives the engine needs.

Launched by `torchrun --nproc_per_node=N` (env WORLD_SIZE > 1) the engine joins a process group (nccl on CUDA,
gloo on CPU), wraps the model in DDP and shards batches with DistributedSampler. The global batch is
batch_size x world_size x accum_steps: each process takes `batch_size` samples per micro-batch and DDP averages
gradients, so N processes at batch B follow the same curve as one process at batch N*B (up to float rounding).
Only rank 0 writes files, logs and progress bars. Without torchrun every helper is a cheap no-op.
"""
from __future__ import annotations

import os
from datetime import timedelta
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False   # True when this engine created the process group (and must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """Rank/world/local rank from torchrun's environment (1 process when WORLD_SIZE is absent or 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ.get("RANK", "0")), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(info: DistInfo, device: torch.device) -> DistInfo:
    """Join the process group for a multi-process run (nccl on CUDA, gloo on CPU); no-op for one process."""
    if not info.enabled:
        return info
    if dist.is_initialized():
        return info
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # long timeout: ranks > 0 wait at a collective while rank 0 validates whole volumes
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=60))
    return DistInfo(info.rank, info.world_size, info.local_rank, owns_group=True)


def shutdown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP around `model` for a multi-process run; the bare model otherwise."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few floats over all processes (float64 so epoch means match a single process)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every process."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
