"""Video clips for evaluation: read a video once, cut its windows, crop, normalise.

Used by feature export (fixed windows, centre crop) and by fine-tuning (a random window and
crop per epoch). RGB comes from the frame store, flow from the flow store (one item per frame
pair); both are normalised with :mod:`vsslpipe.data.modality` like the training input.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data.modality import MODALITIES, normalize_flow, normalize_rgb
from ..errors import DataError


class VideoSource:
    """Whole-video reads from the store of a modality; picklable into DataLoader workers."""

    def __init__(self, modality: str, path: str | Path):
        if modality not in MODALITIES:
            raise DataError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")
        self.modality = modality
        if modality == "rgb":
            from ..data.framestore import FrameStore
            self.store = FrameStore(path)
        else:
            from ..data.flowstore import FlowStore
            self.store = FlowStore(path)

    def video_ids(self) -> list[str]:
        return self.store.video_ids()

    def read(self, video_id: str) -> torch.Tensor:
        """The whole video as a normalised (C, N, H, W) float tensor (N frames or frame pairs)."""
        data = self.store.read(video_id)
        if len(data) == 0:
            raise DataError(f"{self.store.path}: video {video_id!r} has no "
                            f"{'frames' if self.modality == 'rgb' else 'flow pairs'}")
        x = torch.from_numpy(np.ascontiguousarray(data)).permute(3, 0, 1, 2).float()[None]
        if self.modality == "rgb":
            x = normalize_rgb(x / 255.0)
        else:
            x = normalize_flow(x, self.store.bound)
        return x[0]


def cut_window(video: torch.Tensor, start: int, clip_len: int, stride: int) -> torch.Tensor:
    """Frames start, start+stride, ... (clip_len of them) of (C, N, H, W); the last frame repeats
    when the video is too short (so short videos still give a full clip)."""
    n = video.shape[1]
    index = torch.clamp(torch.arange(clip_len) * stride + start, max=n - 1)
    return video[:, index]


def resize_short_side(clip: torch.Tensor, short: int) -> torch.Tensor:
    """(C, T, H, W) with the short side resized to ``short`` (bilinear, antialiased)."""
    c, t, h, w = clip.shape
    if min(h, w) == short:
        return clip
    scale = short / min(h, w)
    out_hw = (max(short, round(h * scale)), max(short, round(w * scale)))
    frames = clip.permute(1, 0, 2, 3)  # time as batch
    frames = F.interpolate(frames, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return frames.permute(1, 0, 2, 3)


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    h, w = clip.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return clip[..., top:top + size, left:left + size]


def eval_view(clip: torch.Tensor, size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """Resize the short side to ``size / crop_fraction``, then centre-crop ``size`` x ``size``."""
    return center_crop(resize_short_side(clip, round(size / crop_fraction)), size)


def random_view(clip: torch.Tensor, size: int, modality: str, generator: torch.Generator,
                min_area: float = 0.4, flip_p: float = 0.5) -> torch.Tensor:
    """Fine-tuning augmentation: a random square crop (area fraction of the short side's square
    in [min_area, 1]) resized to ``size``, and a horizontal flip with p ``flip_p`` (flow: x
    negated)."""
    c, t, h, w = clip.shape
    short = min(h, w)
    area = float(torch.empty(1).uniform_(min_area, 1.0, generator=generator))
    side = max(8, int(round(short * area ** 0.5)))
    top = int(torch.randint(0, h - side + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - side + 1, (1,), generator=generator))
    crop = clip[..., top:top + side, left:left + side]
    crop = resize_short_side(crop, size)
    if bool(torch.rand(1, generator=generator) < flip_p):
        crop = crop.flip(-1)
        if modality == "flow":
            crop = crop.clone()
            crop[0] = -crop[0]
    return crop


class WindowedVideos(Dataset):
    """Item i: every evaluation window of video ``video_ids[i]`` as (n_clips, C, T, S, S)."""

    def __init__(self, source: VideoSource, video_ids: Sequence[str], clip: dict,
                 starts_fn, crop_fraction: float = 1.0):
        self.source, self.video_ids = source, list(video_ids)
        self.clip, self.starts_fn, self.crop_fraction = clip, starts_fn, crop_fraction

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        video = self.source.read(self.video_ids[i])
        span = (self.clip["clip_len"] - 1) * self.clip["stride"] + 1
        clips = [eval_view(cut_window(video, s, self.clip["clip_len"], self.clip["stride"]),
                           self.clip["size"], self.crop_fraction)
                 for s in self.starts_fn(video.shape[1], span)]
        return torch.stack(clips)


def check_ids(source: VideoSource, wanted: Sequence[str], what: Optional[str] = None) -> None:
    missing = sorted(set(wanted) - set(source.video_ids()))
    if missing:
        raise DataError(f"{source.store.path}: {len(missing)} video(s) of the manifest are missing"
                        f"{' (' + what + ')' if what else ''}, e.g. {missing[0]!r}")
