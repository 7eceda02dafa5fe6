"""NT-Xent, SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020, Eq. 1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor,
            temperature: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the 2N anchors of ``-log exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau)``.

    Shapes: ``z1``, ``z2`` (N, D) L2-normalised views, row i of each from the same video; anchor
    i's positive is its other view, the remaining 2N - 2 views are negatives. Returns
    ``(loss, sim)`` with ``sim`` the (2N, 2N) cosine-similarity matrix.
    """
    n = z1.shape[0]
    z = torch.cat([z1, z2], dim=0)
    sim = z @ z.t()
    logits = sim / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = _full(logits).masked_fill(self_mask, float("-inf"))
    target = torch.arange(2 * n, device=z.device).roll(n)   # made on the device: no copy
    return F.cross_entropy(logits, target), sim


def _full(x: torch.Tensor) -> torch.Tensor:
    """Softmax in at least float32 (bf16 logits under autocast lose the small differences)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
