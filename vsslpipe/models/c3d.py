"""C3D (Tran et al. 2015) as used by VCOP / CACL: eight 3x3x3 convolutions with BN, the fc
layers dropped, adaptive average pooling after pool5 -> a 512-d feature."""
from __future__ import annotations

import torch
from torch import nn

from . import BACKBONES


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


class C3D(nn.Module):
    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.feature_dim = 512
        self.features = nn.Sequential(
            *_conv(in_channels, 64), nn.MaxPool3d((1, 2, 2), (1, 2, 2)),
            *_conv(64, 128), nn.MaxPool3d(2, 2),
            *_conv(128, 256), *_conv(256, 256), nn.MaxPool3d(2, 2),
            *_conv(256, 512), *_conv(512, 512), nn.MaxPool3d(2, 2),
            *_conv(512, 512), *_conv(512, 512), nn.MaxPool3d(2, 2, ceil_mode=True),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


@BACKBONES.register("c3d")
def c3d(in_channels: int = 3) -> C3D:
    return C3D(in_channels)
