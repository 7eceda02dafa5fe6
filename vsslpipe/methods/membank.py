"""A memory bank: one L2-normalised embedding per training video, for one stream.

Co-training (CoCLR, CVTCL section 2.4) keeps one bank per stream. During a phase the frozen
stream's bank is the space top-K neighbours are mined in (:mod:`vsslpipe.methods.mining`); the
trained stream's bank supplies the embeddings of the mined positives. The alternation makes a
bank stale exactly when its encoder has just been trained, so the method refreshes the banks with
a full pass at the start of every phase (:meth:`MemoryBank.refresh`) and writes the trained
stream's keys into its bank as they are computed (:meth:`MemoryBank.update`).

The bank tensors are buffers, so they travel with ``state_dict()`` and a resumed run continues
with the same banks.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from ..train import dist


class MemoryBank(nn.Module):
    """``(num_videos, dim)`` embeddings (buffer ``emb``) and which slots are filled (``filled``).

    The training-set size is known only when training starts (:meth:`resize`); loading a state
    dict adopts the saved size, so a bank built empty can resume a checkpoint.
    """

    def __init__(self, num_videos: int, dim: int):
        super().__init__()
        self.register_buffer("emb", torch.zeros(num_videos, dim))
        self.register_buffer("filled", torch.zeros(num_videos, dtype=torch.bool))

    def resize(self, num_videos: int) -> None:
        """Empty bank of ``num_videos`` slots (no-op if already that size)."""
        if num_videos != self.num_videos:
            self.emb = self.emb.new_zeros(num_videos, self.emb.shape[1])
            self.filled = self.filled.new_zeros(num_videos)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "emb")
        if saved is not None:
            self.resize(saved.shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_videos(self) -> int:
        return self.emb.shape[0]

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())

    @torch.no_grad()
    def update(self, indices: torch.Tensor, embeddings: torch.Tensor, gather: bool = True) -> None:
        """Write ``embeddings`` ``(B, D)`` (normalised here) into slots ``indices`` ``(B,)``.

        Under DDP the entries of every rank are gathered first so all ranks hold the same bank.
        """
        emb = F.normalize(embeddings.detach().float(), dim=1)
        idx = indices.to(emb.device).long()
        if gather:
            emb, idx = dist.concat_all_gather(emb), dist.concat_all_gather(idx)
        idx = idx.to(self.emb.device)
        self.emb[idx] = emb.to(self.emb.device)
        self.filled.index_fill_(0, idx, True)

    @torch.no_grad()
    def refresh(self, encode: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
                batches: Iterable[Mapping[str, torch.Tensor]]) -> None:
        """Recompute every entry: ``encode(batch) -> (B, D)`` for each batch of an ordered pass
        over the training set (each batch carries ``"index"``). Fails if a slot is left empty.

        Under DDP each rank passes over its own shard (shards may differ in size, so batches are
        not gathered one by one); the disjoint partial banks are summed once at the end."""
        self.filled.zero_()
        self.emb.zero_()
        for batch in batches:
            self.update(batch["index"], encode(batch), gather=False)
        if dist.is_dist():
            filled = self.filled.to(torch.int32)
            torch_dist.all_reduce(self.emb)
            torch_dist.all_reduce(filled)
            self.filled.copy_(filled > 0)
        if not self.complete:
            missing = int((~self.filled).sum())
            raise RuntimeError(f"memory bank refresh left {missing} of {self.num_videos} slots empty")
