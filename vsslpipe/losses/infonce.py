"""InfoNCE with a queue of negatives (MoCo; He et al. 2020, Eq. 1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor,
             temperature: float = 0.07) -> tuple[torch.Tensor, torch.Tensor]:
    """``L = -log exp(q.k/tau) / (exp(q.k/tau) + sum_j exp(q.n_j/tau))``, averaged over the batch.

    Shapes: ``q`` (N, D), ``k`` (N, D) positives (row i pairs with q_i), ``negatives`` (K, D);
    all L2-normalised. Returns ``(loss, logits)`` with logits (N, 1 + K), the positive first
    (so ``logits.argmax(1) == 0`` is the instance-discrimination accuracy).
    """
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ negatives.t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(_full(logits), target), logits


def _full(x: torch.Tensor) -> torch.Tensor:
    """Softmax in at least float32 (bf16 logits under autocast lose the small differences)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
