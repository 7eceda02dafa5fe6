"""A small 3D CNN for CPU-scale runs (the built-in dataset, tests)."""
from __future__ import annotations

import torch
from torch import nn

from . import BACKBONES


def _block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class Tiny3D(nn.Module):
    """Four 3x3x3 conv blocks (widths w, 2w, 4w, 8w), global average pooling."""

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.in_channels = in_channels
        self.feature_dim = 8 * width
        self.features = nn.Sequential(
            _block(in_channels, width, (1, 2, 2)),
            _block(width, 2 * width, (2, 2, 2)),
            _block(2 * width, 4 * width, (2, 2, 2)),
            _block(4 * width, 8 * width, (2, 2, 2)),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


@BACKBONES.register("tiny3d")
def tiny3d(in_channels: int = 3, width: int = 16) -> Tiny3D:
    return Tiny3D(in_channels, width)
