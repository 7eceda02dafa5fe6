"""How the flow stage's processes share the work under ``torchrun`` (one per GPU, or per core).

    torchrun --nproc_per_node=4 $(which vsslpipe) flow --backend torch --device cuda

Each rank takes every N-th chunk of the sorted id list (:func:`share`), so the ranks' work is
deterministic, disjoint and balanced to within one chunk, and writes those chunks' shards into
the common scratch folder; rank 0 indexes the store when every rank is done. The ranks only
wait for each other (barriers) and add up counts, so the gloo backend serves CPU and CUDA runs
alike. Without torchrun (WORLD_SIZE unset or 1) every function here is a no-op.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Sequence, TypeVar

T = TypeVar("T")
# A barrier waits for the slowest rank's share of the flow: hours at Kinetics scale.
BARRIER_TIMEOUT = timedelta(days=3)


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init() -> tuple[int, int]:
    """(rank, world size); joins torchrun's process group (gloo) when launched by it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def share(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s part of ``items``: every ``world``-th item, starting at ``rank``."""
    return list(items[rank::world])


def rank_device(device: str, world: int) -> str:
    """``cuda`` under torchrun means this rank's GPU (LOCAL_RANK); anything else is kept."""
    if world > 1 and device in ("cuda", "cuda:0") and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()


def all_sum(values: Sequence[int]) -> list[int]:
    """Element-wise sum of ``values`` over the ranks (this rank's values alone without torchrun)."""
    dist = _dist()
    if dist is None:
        return [int(v) for v in values]
    import torch

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([int(v) for v in values], dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]
