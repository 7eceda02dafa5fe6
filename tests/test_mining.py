"""Top-K cross-view mining (FAISS) against a NumPy brute force; CoCLR-code switches; banks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsslpipe.methods.membank import MemoryBank
from vsslpipe.methods.mining import (BankIndex, drop_self_positive, mine_topk,
                                     mine_topk_in_queue, source_ids)


def _brute(bank, queries, k, self_idx, sources=None):
    sims = queries @ bank.T
    for b, i in enumerate(self_idx):
        sims[b, i] = -np.inf
        if sources is not None:
            sims[b, sources == sources[i]] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("use_sources", [False, True])
def test_mine_topk_matches_brute_force(use_sources):
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(50, 16, generator=g), dim=1)
    self_idx = torch.tensor([0, 7, 13, 49, 21])
    # queries close to their own bank entry, so self is always a top hit and must be removed
    queries = F.normalize(bank[self_idx] + 0.3 * torch.randn(5, 16, generator=g), dim=1)
    labels = np.repeat(np.arange(10), 5)
    groups = [f"g{(i // 5) % 3:02d}" for i in range(50)]
    sources = torch.from_numpy(source_ids(labels, groups)) if use_sources else None
    got = mine_topk(BankIndex(bank), queries, 5, self_idx, sources)
    want = _brute(bank.numpy(), queries.numpy(), 5, self_idx.numpy(),
                  None if sources is None else sources.numpy())
    assert got.tolist() == want.tolist()
    assert mine_topk(BankIndex(bank), queries, 0, self_idx).shape == (5, 0)


def test_source_ids_pair_class_and_group():
    ids = source_ids([0, 0, 1, 1, 2], ["g01", "g01", "g01", "g02", ""])
    assert ids[0] == ids[1] and ids[1] != ids[2] and ids[2] != ids[3]
    assert len(set(ids.tolist())) == 4


def test_mine_in_queue_and_exclusion():
    q = F.normalize(torch.randn(3, 8), dim=1)
    queue = F.normalize(torch.randn(10, 8), dim=1)
    exclude = torch.zeros(3, 10, dtype=torch.bool)
    exclude[:, 0] = True
    mask = mine_topk_in_queue(q, queue, 2, exclude)
    sims = (q @ queue.T).masked_fill(exclude, -np.inf)
    want = torch.zeros_like(mask).scatter_(1, sims.topk(2, dim=1).indices, True)
    assert torch.equal(mask, want) and not mask[:, 0].any()


def test_drop_self_positive_only_where_others_exist():
    mask = torch.tensor([[1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    dropped = drop_self_positive(mask, 1.0, g)
    assert dropped.tolist() == [[False, False, True], [True, False, False]]
    assert torch.equal(drop_self_positive(mask, 0.0, g), mask)
    rates = [not drop_self_positive(mask, 0.9, g)[0, 0] for _ in range(2000)]
    assert abs(np.mean(rates) - 0.9) < 0.03


def test_memory_bank_refresh_and_update():
    bank = MemoryBank(6, 4)
    batches = [{"index": torch.tensor([0, 1, 2])}, {"index": torch.tensor([3, 4, 5])}]
    bank.refresh(lambda b: b["index"].float()[:, None] * torch.ones(1, 4) + 1, batches)
    assert bank.complete and torch.allclose(bank.emb, torch.full((6, 4), 0.5))
    bank.update(torch.tensor([2]), torch.tensor([[3.0, 0, 0, 4.0]]))
    assert torch.allclose(bank.emb[2], torch.tensor([0.6, 0, 0, 0.8]))
    with pytest.raises(RuntimeError):
        bank.refresh(lambda b: torch.ones(3, 4), batches[:1])
    assert "emb" in bank.state_dict() and "filled" in bank.state_dict()


@pytest.mark.parametrize("use_sources", [False, True])
def test_device_index_finds_the_faiss_neighbours(use_sources):
    """Matrix product + topk in blocks (the GPU path) against FAISS on the same bank; blocks
    smaller than the bank so the merge across blocks is exercised."""
    from vsslpipe.methods.mining import DeviceBankIndex, make_bank_index, max_per_source

    g = torch.Generator().manual_seed(1)
    bank = F.normalize(torch.randn(300, 16, generator=g), dim=1)
    queries = F.normalize(torch.randn(7, 16, generator=g), dim=1)
    faiss_index, device_index = BankIndex(bank), DeviceBankIndex(bank, block=64)
    sims_f, idx_f = faiss_index.search(queries, 9)
    sims_d, idx_d = device_index.search(queries, 9)
    assert idx_d.tolist() == idx_f.tolist()
    assert torch.allclose(sims_d, sims_f, atol=1e-5)
    labels = np.repeat(np.arange(30), 10)
    sources = torch.from_numpy(source_ids(labels, [f"g{i % 4}" for i in range(300)])) if use_sources else None
    self_idx = torch.tensor([0, 50, 99, 120, 200, 250, 299])
    extra = max_per_source(sources.numpy()) if use_sources else 1
    a = mine_topk(faiss_index, queries, 5, self_idx, sources, extra=extra)
    b = mine_topk(device_index, queries, 5, self_idx, sources, extra=extra)
    assert a.tolist() == b.tolist()
    assert isinstance(make_bank_index(bank), BankIndex)          # CPU runs keep FAISS
