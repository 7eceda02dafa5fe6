"""Distributed helpers that are no-ops at world size 1 (one code path for CPU, 1 GPU, a cluster).

Launch with ``torchrun --nproc_per_node=N -m vsslpipe.stages.cli pretrain ...`` (or the
``vsslpipe`` script); :func:`init` reads torchrun's environment variables.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as torch_dist


def is_dist() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def world_size() -> int:
    return torch_dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return torch_dist.get_rank() if is_dist() else 0


def is_main() -> bool:
    return rank() == 0


def init(device: str) -> torch.device:
    """Join the process group if launched by torchrun; returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_dist():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch_dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        # torchrun: one GPU per local rank. One process: the GPU the device names (`cuda:3`
        # stays cuda:3; `cuda` is the first visible one, so CUDA_VISIBLE_DEVICES picks it).
        if is_dist() or "LOCAL_RANK" in os.environ:
            index = int(os.environ.get("LOCAL_RANK", "0"))
        else:
            index = torch.device(device).index or 0
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device(device)


def barrier() -> None:
    if is_dist():
        torch_dist.barrier()


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) along dim 0; no gradient (MoCo's keys)."""
    if not is_dist():
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    torch_dist.all_gather(out, x.contiguous())
    return torch.cat(out, 0)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate along dim 0 keeping the gradient to every rank's part (SimCLR's global batch)."""
    if not is_dist():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), 0)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if not is_dist():
        return x
    x = x.clone()
    torch_dist.all_reduce(x)
    return x / world_size()


@torch.no_grad()
def batch_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Shuffled BN, step 1 (MoCo): gather the batch, permute it (rank 0's permutation),
    return this rank's shard and the index that undoes it. Identity at world size 1."""
    if not is_dist():
        return x, None
    local = x.shape[0]
    gathered = concat_all_gather(x)
    perm = torch.randperm(gathered.shape[0], device=x.device)
    torch_dist.broadcast(perm, src=0)
    unshuffle = torch.argsort(perm)
    mine = perm.view(world_size(), local)[rank()]
    return gathered[mine], unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, unshuffle: Optional[torch.Tensor]) -> torch.Tensor:
    """Shuffled BN, step 2: gather the outputs and take this rank's original rows back."""
    if unshuffle is None:
        return x
    local = x.shape[0]
    gathered = concat_all_gather(x)
    mine = unshuffle.view(world_size(), local)[rank()]
    return gathered[mine]


def cleanup() -> None:
    if is_dist():
        torch_dist.destroy_process_group()
