"""Two-stream samples (RGB + flow of the same time window) and the un-augmented centre view.

Flow has one item fewer than frames (pair ``i`` lies between frames ``i`` and ``i + 1``), so a
two-stream video offers ``min(frames, pairs)`` positions (the dataset's ``num_frames`` for several
modalities); a window starting at ``s`` reads frames ``s..`` and the pairs that start at the same
frames, so both streams see the same motion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .flowstore import DEFAULT_BOUND
from .modality import normalize_flow, normalize_rgb
from .sampling import clip_span, read_clip
from .windows import independent_starts


MODALITIES = ("rgb", "flow")


@dataclass(frozen=True)
class TwoStreamSampler:
    """``{"rgb": (T,H,W,3), "flow": (T,H,W,2)}`` uint8 of one window (CoCLR / CVTCL co-training).

    ``center=True`` takes the middle window (memory-bank passes: deterministic); otherwise the
    start is uniform (random temporal crop, as the papers). ``two_windows=True`` draws a second,
    independent window for the key view as well, ``{"rgb_key", "flow_key"}``, the same for both
    streams (CoCLR's loader, :mod:`vsslpipe.data.windows`).
    """

    clip_len: int
    stride: int
    center: bool = False
    two_windows: bool = False

    def __call__(self, video, rng: np.random.Generator) -> dict:
        if self.two_windows and not self.center:
            a, b = independent_starts(video.num_frames, self.clip_len, self.stride, rng)
            out = {m: read_clip(video, a, self.clip_len, self.stride, modality=m) for m in MODALITIES}
            out.update({f"{m}_key": read_clip(video, b, self.clip_len, self.stride, modality=m)
                        for m in MODALITIES})
            return out
        max_start = max(video.num_frames - clip_span(self.clip_len, self.stride), 0)
        start = max_start // 2 if self.center else int(rng.integers(0, max_start + 1))
        return {m: read_clip(video, start, self.clip_len, self.stride, modality=m)
                for m in MODALITIES}


@dataclass(frozen=True)
class CenterClipSampler:
    """``{"clip": (T,H,W,C)}``: the middle window of one modality (memory-bank passes)."""

    clip_len: int
    stride: int
    modality: str

    def __call__(self, video, rng: np.random.Generator) -> dict:
        max_start = max(video.num_frames - clip_span(self.clip_len, self.stride), 0)
        return {"clip": read_clip(video, max_start // 2, self.clip_len, self.stride, self.modality)}


def center_view(clips: torch.Tensor, modality: str, size: int,
                bound: float = DEFAULT_BOUND) -> torch.Tensor:
    """Raw uint8 ``(B, T, H, W, C)`` -> normalised ``(B, C, T, size, size)``: short side resized
    to ``size``, centre crop (the evaluation view; no random augmentation)."""
    b, t, h, w, c = clips.shape
    x = clips.permute(0, 1, 4, 2, 3).reshape(b * t, c, h, w).float()
    if modality == "rgb":
        x = x / 255.0
    else:
        x = x * (2.0 * bound / 255.0) - bound                 # dequantise to pixels
    scale = size / min(h, w)
    out_h, out_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (out_h, out_w) != (h, w):
        x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)
    top, left = (out_h - size) // 2, (out_w - size) // 2
    x = x[..., top:top + size, left:left + size]
    x = x.reshape(b, t, c, size, size).permute(0, 2, 1, 3, 4).contiguous()
    return normalize_rgb(x) if modality == "rgb" else normalize_flow(x, bound)
