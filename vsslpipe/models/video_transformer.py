"""CACL's video transformer encoder (Guo et al. CVPR 2022, Sec. 3.1).

A frozen 2D CNN embeds every frame (ResNet-50 pooled feature, 2048-d); a linear layer maps each
frame feature to a token (768-d); a learnable temporal position embedding is added; an N-layer,
H-head transformer encoder (paper: 6 and 6) mixes the tokens; the clip embedding is the mean over
the frame tokens or a class token (``pooling``). Sizes are parameters; ``resnet18`` with small
``token_dim`` and 2 layers is the CPU variant.

The frame CNN's weights come from image MoCo on the training frames (``vsslpipe pretrain-frames``,
:mod:`vsslpipe.train.frame_pretrain`) through ``frame_weights`` (a checkpoint path), as the paper
does; the paper's weights were never released. The frame CNN is frozen: no parameter of it
requires a gradient, it stays in eval mode (BatchNorm uses its stored statistics even while the
rest trains) and it runs under ``torch.no_grad()``.

Input: a clip ``(B, C, T, H, W)`` normalised as every backbone's input; output ``(B, token_dim)``.
:meth:`VideoTransformer.frame_features` and :meth:`VideoTransformer.forward_features` split the two
halves so a caller can compute the frozen frame features once and reuse them (CACL's shuffled clip
has the same frames in another order, and the momentum encoder shares the frozen CNN).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import torch
import torchvision
from torch import nn

from ..errors import ConfigError
from . import BACKBONES

TORCHVISION_FRAME_CNNS = ("resnet18", "resnet34", "resnet50")
FRAME_CNNS = (*TORCHVISION_FRAME_CNNS, "tiny2d")


class Tiny2D(nn.Module):
    """Four 3x3 conv blocks (widths w, 2w, 4w, 8w; stride 2), global average pooling: the frame
    CNN for CPU-scale runs (a ResNet-18 embeds ~100 frames/s on 2 cores at 48 px, this ~30x more)."""

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in (width, 2 * width, 4 * width, 8 * width):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def build_frame_cnn(name: str, in_channels: int = 3) -> nn.Module:
    """A 2D CNN (random init, no download) whose output is the pooled frame feature;
    ``.feature_dim`` is 512 (resnet18/34), 2048 (resnet50) or 128 (tiny2d)."""
    if name not in FRAME_CNNS:
        raise ConfigError(f"frame_cnn {name!r} unknown; valid: {', '.join(FRAME_CNNS)}")
    if name == "tiny2d":
        return Tiny2D(in_channels)
    net = torchvision.models.get_model(name, weights=None)
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_channels, old.out_channels, kernel_size=old.kernel_size,
                              stride=old.stride, padding=old.padding, bias=False)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    net.feature_dim = feature_dim
    return net


class FrameCNN(nn.Module):
    """A 2D CNN as a backbone of clips: ``(B, C, T, H, W)`` -> per-frame features averaged over T.

    Registered as backbone ``frame_cnn`` so the training engine can pre-train it with the
    ``image_moco`` method on one-frame clips (``vsslpipe pretrain-frames``); the video transformer
    then loads the resulting checkpoint's ``backbone_state`` as its frozen frame CNN.
    """

    def __init__(self, in_channels: int = 3, arch: str = "resnet50"):
        super().__init__()
        self.arch = arch
        self.net = build_frame_cnn(arch, in_channels)
        self.feature_dim = self.net.feature_dim

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, feature_dim)."""
        return self.net(frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return self.net(x.transpose(1, 2).reshape(b * t, c, h, w)).view(b, t, -1).mean(1)


@BACKBONES.register("frame_cnn")
def frame_cnn(in_channels: int = 3, arch: str = "resnet50") -> FrameCNN:
    return FrameCNN(in_channels, arch)


def load_frame_cnn_weights(net: FrameCNN, path: str | Path) -> None:
    """Load the ``frame_cnn`` backbone of a checkpoint (``vsslpipe pretrain-frames``) into ``net``."""
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    spec = ckpt.get("backbone") or {}
    arch = (spec.get("kwargs") or {}).get("arch")
    if spec.get("name") != "frame_cnn" or arch != net.arch:
        raise ConfigError(f"{path}: holds backbone {spec.get('name')!r} (arch {arch!r}), "
                          f"expected a frame_cnn with arch {net.arch!r}")
    try:
        net.load_state_dict(ckpt["backbone_state"])
    except RuntimeError as exc:
        raise ConfigError(f"{path}: frame CNN weights do not fit ({str(exc).splitlines()[0]})") from None


class TemporalTransformer(nn.Module):
    """Frame features (B, T, frame_dim) -> linear tokens + temporal position embedding ->
    transformer encoder -> (B, token_dim) clip embedding (mean over tokens or class token)."""

    def __init__(self, frame_dim: int, token_dim: int = 768, layers: int = 6, heads: int = 6,
                 mlp_ratio: float = 4.0, dropout: float = 0.1, max_frames: int = 64,
                 pooling: Literal["mean", "cls"] = "mean"):
        super().__init__()
        if token_dim % heads:
            raise ConfigError(f"token_dim {token_dim} must be divisible by heads {heads}")
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.max_frames, self.feature_dim = max_frames, token_dim
        self.to_token = nn.Linear(frame_dim, token_dim)
        # Slot 0 is the class token's position (unused with mean pooling).
        self.pos_embed = nn.Parameter(torch.zeros(1, max_frames + 1, token_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, token_dim)) if pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(token_dim, heads, int(mlp_ratio * token_dim), dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(token_dim),
                                             enable_nested_tensor=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, t, _ = feats.shape
        if t > self.max_frames:
            raise ValueError(f"{t} frames > max_frames {self.max_frames}")
        tokens = self.to_token(feats.to(self.to_token.weight.dtype)) + self.pos_embed[:, 1:t + 1]
        if self.cls_token is not None:
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
            tokens = torch.cat([cls, tokens], 1)
        out = self.encoder(tokens)
        return out[:, 0] if self.cls_token is not None else out.mean(1)


class VideoTransformer(nn.Module):
    """Frozen frame CNN + :class:`TemporalTransformer` (the trainable part)."""

    def __init__(self, in_channels: int = 3, frame_cnn: str = "resnet50",
                 frame_weights: Optional[str] = None, token_dim: int = 768, layers: int = 6,
                 heads: int = 6, mlp_ratio: float = 4.0, dropout: float = 0.1,
                 max_frames: int = 64, pooling: Literal["mean", "cls"] = "mean"):
        super().__init__()
        self.in_channels = in_channels
        self.frame_cnn = FrameCNN(in_channels, frame_cnn)
        if frame_weights:
            load_frame_cnn_weights(self.frame_cnn, frame_weights)
        self.frame_cnn.requires_grad_(False).eval()
        self.frame_dim = self.frame_cnn.feature_dim
        self.temporal = TemporalTransformer(self.frame_dim, token_dim, layers, heads, mlp_ratio,
                                            dropout, max_frames, pooling)
        self.feature_dim = token_dim

    def train(self, mode: bool = True) -> "VideoTransformer":
        super().train(mode)
        self.frame_cnn.eval()   # frozen: BatchNorm keeps the image-MoCo statistics
        return self

    @torch.no_grad()
    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clip -> (B, T, frame_dim) frozen per-frame features (no gradient)."""
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        return self.frame_cnn.embed_frames(frames).view(b, t, -1)

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, frame_dim) frame features -> (B, token_dim) clip embedding."""
        return self.temporal(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.frame_features(x))


@BACKBONES.register("video_transformer")
def video_transformer(in_channels: int = 3, **kwargs) -> VideoTransformer:
    return VideoTransformer(in_channels=in_channels, **kwargs)
