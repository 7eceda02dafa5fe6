"""MoCo v2 on single frames (image MoCo): pre-trains the frozen frame CNN of CACL's transformer.

CACL (Guo et al. 2022, Sec. 3.1) trains its ResNet-50 frame encoder with MoCo on UCF101 training
frames. Each sample holds ``frames_per_video`` random frames of one training video; every frame
is its own instance: query ``g_q(f_q(a1(frame)))``, key from the momentum encoder on
``a2(frame)``, negatives from the queue, InfoNCE (MoCo v2: tau 0.2, 2-layer MLP head). Several
frames per video make an epoch over the videos long enough to be worth its overhead; frames of
the same video are still negatives of each other, as in MoCo on a frame dataset.

The backbone is ``frame_cnn`` (:class:`vsslpipe.models.video_transformer.FrameCNN`) on one-frame
clips (``clip_len`` 1).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from ..data.views import Spatial, Window, take_views
from ..errors import ConfigError
from . import METHODS
from .base import MethodSpec
from .moco import MomentumEncoderMethod


class MixedConvMemoryFormat:
    """Mixin for methods with 2D convolutions: the engine's CUDA path calls
    ``method.to(memory_format=torch.channels_last_3d)``, which PyTorch refuses for 4-D (2D-conv)
    weights; here 5-D tensors get ``channels_last_3d`` and 4-D ones ``channels_last``."""

    def to(self, *args, **kwargs):
        fmt = kwargs.pop("memory_format", None)
        if fmt is torch.channels_last_3d:
            def convert(t: torch.Tensor) -> torch.Tensor:
                if t.dim() == 5:
                    return t.to(memory_format=torch.channels_last_3d)
                if t.dim() == 4:
                    return t.to(memory_format=torch.channels_last)
                return t

            self._apply(convert)
            if not args and not kwargs:
                return self
        elif fmt is not None:
            kwargs["memory_format"] = fmt
        return super().to(*args, **kwargs)


@dataclass(frozen=True)
class ImageMocoConfig:
    temperature: float = 0.2            # MoCo v2
    queue_size: int = 4096
    momentum: float = 0.999
    proj_dim: int = 128
    proj_hidden: Optional[int] = None   # default: the frame CNN's feature_dim
    proj_layers: int = 2
    frames_per_video: int = 8
    shuffle_bn: bool = True

    def validate(self) -> None:
        if self.queue_size < 1 or not (0.0 <= self.momentum < 1.0) or self.temperature <= 0:
            raise ConfigError("queue_size >= 1, 0 <= momentum < 1 and temperature > 0 required")
        if self.frames_per_video < 1:
            raise ConfigError("frames_per_video must be >= 1")


@dataclass(frozen=True)
class RandomFramesSampler:
    """``{"frames0", "frames1": (K, S, S, C)}``: two views of K distinct random frames (fewer
    frames: with repeats), every frame its own instance and its own spatial draw per view."""

    count: int
    spatial: Optional[Spatial] = None

    def __call__(self, video, rng: np.random.Generator) -> dict:
        n = video.num_frames
        idx = rng.choice(n, self.count, replace=n < self.count)
        window = Window(video, np.sort(idx))
        spatial = None if self.spatial is None else replace(self.spatial, consistent=False)
        return take_views(video, window, rng, spatial, ("frames0", "frames1"))


@METHODS.register("image_moco")
class ImageMoCo(MixedConvMemoryFormat, MomentumEncoderMethod):
    Config = ImageMocoConfig

    def __init__(self, spec: MethodSpec):
        super().__init__(spec)
        self.cfg = self.parse_args(spec)
        if spec.clip_len != 1:
            raise ConfigError(f"image_moco trains on single frames: clip_len must be 1, "
                              f"got {spec.clip_len}")
        self._build_encoders(self.cfg)

    def make_sampler(self):
        return RandomFramesSampler(self.cfg.frames_per_video, self.augment.spatial)

    @torch.no_grad()
    def prepare(self, batch):
        if "x0" in batch:
            return batch
        # (B, K, S, S, C) -> (B*K, 1, S, S, C): one single-frame clip per frame
        views = [batch[f"frames{v}"].flatten(0, 1).unsqueeze(1) for v in (0, 1)]
        return {**batch, "x0": self.augment(views[0], view=0), "x1": self.augment(views[1], view=1)}

    def forward(self, batch):
        batch = self.prepare(batch)
        return self.contrast_with_queue(batch["x0"], batch["x1"])
