"""torchvision's video backbones (R3D-18, R(2+1)D-18, MC3-18, S3D) as feature extractors.

Changes from torchvision, all required by the pipeline: the first convolution takes
``in_channels`` (2 for flow), the classifier is removed (the output is the pooled feature), and
S3D's fixed ``AvgPool3d(2, 7, 7)`` becomes adaptive so 112 and 128 px inputs (and the demo's
48 px) work. ``pretrained`` weights are never downloaded: self-supervised training starts from
random initialisation. The ResNets' pooling is already adaptive in torchvision.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import video as tvv

from . import BACKBONES


def _replace_conv(conv: nn.Conv3d, in_channels: int) -> nn.Conv3d:
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv3d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


class VideoResNetFeatures(nn.Module):
    def __init__(self, net: tvv.VideoResNet, in_channels: int):
        super().__init__()
        net.stem[0] = _replace_conv(net.stem[0], in_channels)
        net.fc = nn.Identity()
        self.net = net
        self.in_channels = in_channels
        self.feature_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class S3DFeatures(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        net = tvv.s3d(weights=None)
        first = net.features[0][0][0]          # TemporalSeparableConv -> spatial Conv3d
        net.features[0][0][0] = _replace_conv(first, in_channels)
        self.features = net.features
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.in_channels = in_channels
        self.feature_dim = 1024

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


@BACKBONES.register("r3d_18")
def r3d_18(in_channels: int = 3) -> VideoResNetFeatures:
    return VideoResNetFeatures(tvv.r3d_18(weights=None), in_channels)


@BACKBONES.register("r2plus1d_18")
def r2plus1d_18(in_channels: int = 3) -> VideoResNetFeatures:
    return VideoResNetFeatures(tvv.r2plus1d_18(weights=None), in_channels)


@BACKBONES.register("mc3_18")
def mc3_18(in_channels: int = 3) -> VideoResNetFeatures:
    return VideoResNetFeatures(tvv.mc3_18(weights=None), in_channels)


@BACKBONES.register("s3d")
def s3d(in_channels: int = 3) -> S3DFeatures:
    return S3DFeatures(in_channels)
