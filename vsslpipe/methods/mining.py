"""Cross-view positive mining for co-training (CoCLR; CVTCL eqs. (3) and (5)).

For the stream being trained, the positives of sample ``i`` are its own augmented key plus the
``K`` training videos whose embeddings in the *other*, frozen stream are nearest to ``i``'s
(inner product of L2-normalised embeddings = cosine similarity). The paper mines over a memory
bank of every training video (:func:`make_bank_index`): on a GPU by matrix product and ``topk``
in blocks of the bank, on the device (:class:`DeviceBankIndex`: no copy to the host per step;
Kinetics' 240 k x 128 bank is 123 MB); with FAISS on CPU runs and for a bank that does not fit
in device memory (:class:`BankIndex`). CoCLR's released code mines over a second queue holding the frozen
stream's keys (:func:`mine_topk_in_queue`; the queue changes every step, so a plain top-k on the
device is the right tool there).

Switches that reproduce CoCLR's code (docs/methods.md, "CoCLR's released code"):
same-source videos (UCF101: same class and ``gXX`` group) are excluded from mining and counted
as positives (:func:`source_ids`), and the self-positive is dropped with probability 0.9 when
other positives exist (:func:`drop_self_positive`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import faiss
import numpy as np
import torch


def faiss_gpus() -> int:
    """Number of GPUs faiss can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None and hasattr(faiss, "StandardGpuResources") else 0


def source_ids(labels: Sequence[int], groups: Sequence[str]) -> np.ndarray:
    """One integer per video naming its source clip: same class and same non-empty group.

    UCF101 groups (``gXX``) are numbered per class (``v_A_g03`` and ``v_B_g03`` are different
    sources), hence the pair. A video without a group is its own source.
    """
    keys: dict[tuple, int] = {}
    out = np.empty(len(labels), dtype=np.int64)
    for i, (label, group) in enumerate(zip(labels, groups)):
        key = (int(label), str(group)) if group else ("video", i)
        out[i] = keys.setdefault(key, len(keys))
    return out


def max_per_source(sources: np.ndarray) -> int:
    """The most videos any source has (how many extra neighbours a search must take to be
    left with ``K`` after excluding a sample's source); computed once, on the host."""
    return int(np.bincount(np.asarray(sources)).max()) if len(sources) else 1


class DeviceBankIndex:
    """Exact inner-product search over a bank ``(N, D)`` where it lies: per block of bank rows
    a matrix product and ``topk``, then a ``topk`` over the blocks' candidates (the block bounds
    the ``(B, block)`` similarity matrix for big banks)."""

    on_gpu = False

    def __init__(self, bank: torch.Tensor, block: int = 65536):
        if bank.dim() != 2:
            raise ValueError(f"bank must be (N, D), got {tuple(bank.shape)}")
        self.bank, self.block = bank.detach(), int(block)
        self.size, self.dim = bank.shape
        self.on_gpu = bank.device.type == "cuda"

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(similarities, indices)``, each ``(B, k)``, best first, on the bank's device."""
        k = min(k, self.size)
        q = queries.detach().to(self.bank.device, self.bank.dtype)
        vals, idx = [], []
        for start in range(0, self.size, self.block):
            sims = q @ self.bank[start:start + self.block].t()
            v, i = torch.topk(sims, min(k, sims.shape[1]), dim=1)
            vals.append(v)
            idx.append(i + start)
        vals, idx = torch.cat(vals, 1), torch.cat(idx, 1)
        if len(vals) and vals.shape[1] > k:
            vals, pick = torch.topk(vals, k, dim=1)
            idx = torch.gather(idx, 1, pick)
        return vals.to(queries.device), idx.to(queries.device)


def make_bank_index(bank: torch.Tensor, memory_fraction: float = 0.25):
    """:class:`DeviceBankIndex` for a CUDA bank that fits in ``memory_fraction`` of the free
    device memory (the bank and one block of similarities); FAISS (:class:`BankIndex`) for CPU
    runs and banks that do not fit."""
    if bank.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(bank.device)
        need = bank.numel() * bank.element_size() * 2
        if need <= memory_fraction * free:
            return DeviceBankIndex(bank)
    return BankIndex(bank)


class BankIndex:
    """Exact inner-product FAISS index over one stream's memory bank ``(N, D)``."""

    def __init__(self, bank: torch.Tensor, use_gpu: Optional[bool] = None):
        if bank.dim() != 2:
            raise ValueError(f"bank must be (N, D), got {tuple(bank.shape)}")
        self.size, self.dim = bank.shape
        vectors = np.ascontiguousarray(bank.detach().float().cpu().numpy())
        index = faiss.IndexFlatIP(self.dim)
        gpus = faiss_gpus()
        self.on_gpu = bool(gpus) if use_gpu is None else bool(use_gpu and gpus)
        if self.on_gpu:
            self._resources = faiss.StandardGpuResources()
            device = bank.device.index if bank.device.type == "cuda" and bank.device.index else 0
            index = faiss.index_cpu_to_gpu(self._resources, device, index)
        index.add(vectors)
        self.index = index

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(similarities, indices)``, each ``(B, k)``, best first, on ``queries.device``."""
        k = min(k, self.size)
        q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
        sims, idx = self.index.search(q, k)
        return (torch.from_numpy(sims).to(queries.device),
                torch.from_numpy(idx).long().to(queries.device))


def mine_topk(index, queries: torch.Tensor, k: int, self_index: torch.Tensor,
              sources: Optional[torch.Tensor] = None, extra: Optional[int] = None) -> torch.Tensor:
    """Indices ``(B, k)`` of the ``k`` bank entries nearest to each query, best first.

    Args:
        index: the other stream's bank.
        queries: ``(B, D)`` the other stream's embeddings of the current samples.
        k: number of neighbours (``K``); 0 gives an empty ``(B, 0)`` tensor.
        self_index: ``(B,)`` each sample's own bank slot, always excluded.
        sources: optional ``(N,)`` source ids (:func:`source_ids`); when given, every video of
            the sample's source is excluded as well (CoCLR's code counts them positive instead).
        extra: how many more than ``k`` to search for (:func:`max_per_source` with ``sources``,
            else 1); pass it precomputed: deriving it here reads the device.
    """
    device = queries.device
    batch = queries.shape[0]
    if k <= 0:
        return torch.zeros(batch, 0, dtype=torch.long, device=device)
    self_index = self_index.to(device).long()
    if sources is not None:
        sources = sources.to(device)
    if extra is None:
        extra = 1 if sources is None else max_per_source(sources.cpu().numpy())
    if index.size - extra < k:
        raise ValueError(f"cannot mine {k} neighbours from a bank of {index.size} videos")
    _, idx = index.search(queries, k + extra)
    excluded = idx == self_index[:, None]
    if sources is not None:
        excluded |= sources[idx] == sources[self_index][:, None]
    # keep search order among the allowed entries: stable sort puts allowed (0) before excluded
    order = torch.sort(excluded.to(torch.int8), dim=1, stable=True).indices[:, :k]
    return torch.gather(idx, 1, order)


def mine_topk_in_queue(queries: torch.Tensor, queue: torch.Tensor, k: int,
                       exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CoCLR-code mining: ``(B, Q)`` bool mask of the top-``k`` queue entries per query.

    ``queue`` ``(Q, D)`` holds the frozen stream's keys aligned with the trained stream's queue;
    ``exclude`` ``(B, Q)`` bool removes entries (the sample's own source) from mining.
    """
    mask = torch.zeros(queries.shape[0], queue.shape[0], dtype=torch.bool, device=queries.device)
    if k <= 0:
        return mask
    sims = queries @ queue.t()
    if exclude is not None:
        sims = sims.masked_fill(exclude, float("-inf"))
    vals, idx = torch.topk(sims, min(k, queue.shape[0]), dim=1)
    mask.scatter_(1, idx, vals > float("-inf"))
    return mask


def drop_self_positive(pos_mask: torch.Tensor, probability: float,
                       generator: Optional[torch.Generator] = None,
                       self_column: int = 0) -> torch.Tensor:
    """CoCLR's code: with ``probability`` (one draw per step, torch's RNG so that resumed runs
    replay it), rows that have other positives lose their self-positive (column
    ``self_column``). Returns a new mask."""
    draw = float(torch.rand((), generator=generator))   # a CPU draw: no device round trip
    if probability <= 0 or draw >= probability:
        return pos_mask
    out = pos_mask.clone()
    has_others = pos_mask.sum(dim=1) > 1
    out[:, self_column] &= ~has_others                  # no boolean-mask indexing (a sync)
    return out
