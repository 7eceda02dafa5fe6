"""Projection heads (kept apart from backbones: evaluation uses the backbone feature only)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLPHead(nn.Module):
    """``layers``-layer MLP feature -> ``out_dim``, L2-normalised output.

    Hidden layers are Linear + BatchNorm1d + ReLU (SimCLR / CVRL's head; MoCo v2 uses 2 layers
    without BN: ``bn=False``). ``layers=1`` is a linear projection.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int = 128, layers: int = 2,
                 bn: bool = True, normalize: bool = True):
        super().__init__()
        mods: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(dim, hidden_dim, bias=not bn)]
            if bn:
                mods.append(nn.BatchNorm1d(hidden_dim))
            mods.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        mods.append(nn.Linear(dim, out_dim))
        self.net = nn.Sequential(*mods)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return F.normalize(z, dim=1) if self.normalize else z
