"""Temporal samplers: which frames of a video make a training sample (run in loader workers).

A sampler is a picklable callable ``sampler(video, rng) -> dict`` (contract in
:mod:`vsslpipe.methods.base`). A clip is ``clip_len`` frames at temporal ``stride``, so it spans
``(clip_len - 1) * stride + 1`` stored frames; it is read as one contiguous range and subsampled
in memory. Videos shorter than the span loop (frame indices wrap around), as CoCLR's loader does.

CVRL's temporal augmentation (:class:`TwoClipSampler`) draws the gap ``t`` between the two clips'
starts from ``[0, n - span]`` with P(t) uniform, ``linear`` (∝ t_max + 1 - t, decreasing) or
``power`` (∝ (t + 1)^-alpha), then the first start uniformly in ``[0, n - span - t]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

GAPS = ("uniform", "linear", "power")


def clip_span(clip_len: int, stride: int) -> int:
    return (clip_len - 1) * stride + 1


def gap_probabilities(kind: str, max_gap: int, alpha: float = 1.0) -> np.ndarray:
    """P(t) for t = 0..max_gap (float64, sums to 1)."""
    t = np.arange(max_gap + 1, dtype=np.float64)
    if kind == "uniform":
        w = np.ones_like(t)
    elif kind == "linear":
        w = (max_gap + 1) - t          # P(t_max) > 0, so every gap stays possible
    elif kind == "power":
        w = (t + 1.0) ** (-alpha)
    else:
        raise ValueError(f"unknown gap distribution {kind!r}; valid: {', '.join(GAPS)}")
    return w / w.sum()


def read_clip(video, start: int, clip_len: int, stride: int,
              modality: Optional[str] = None) -> np.ndarray:
    """``clip_len`` frames from ``start`` at ``stride``: (T, H, W, C) uint8, looping if short."""
    span = clip_span(clip_len, stride)
    n = video.num_frames
    if start + span <= n:
        return video.read(start, start + span, stride, modality=modality)
    frames = video.read(0, n, 1, modality=modality)          # short video: loop over it
    return frames[(start + np.arange(clip_len) * stride) % n]


@dataclass(frozen=True)
class SameClipSampler:
    """One clip at a uniform random start: ``{"clip": (T,H,W,C)}`` (MoCo: two augmentations)."""

    clip_len: int
    stride: int
    modality: Optional[str] = None

    def __call__(self, video, rng: np.random.Generator) -> dict:
        max_start = max(video.num_frames - clip_span(self.clip_len, self.stride), 0)
        start = int(rng.integers(0, max_start + 1))
        return {"clip": read_clip(video, start, self.clip_len, self.stride, self.modality)}


@dataclass(frozen=True)
class TwoClipSampler:
    """Two clips whose start gap follows ``gap``: ``{"clip0", "clip1", "gap"}`` (CVRL)."""

    clip_len: int
    stride: int
    gap: str = "linear"
    alpha: float = 1.0
    modality: Optional[str] = None

    def starts(self, num_frames: int, rng: np.random.Generator) -> tuple[int, int, int]:
        max_gap = max(num_frames - clip_span(self.clip_len, self.stride), 0)
        t = int(rng.choice(max_gap + 1, p=gap_probabilities(self.gap, max_gap, self.alpha)))
        first = int(rng.integers(0, max_gap - t + 1))
        a, b = first, first + t
        if rng.random() < 0.5:   # either clip may come first, so both views see both roles
            a, b = b, a
        return a, b, t

    def __call__(self, video, rng: np.random.Generator) -> dict:
        a, b, t = self.starts(video.num_frames, rng)
        return {"clip0": read_clip(video, a, self.clip_len, self.stride, self.modality),
                "clip1": read_clip(video, b, self.clip_len, self.stride, self.modality),
                "gap": t}


@dataclass(frozen=True)
class SubClipSampler:
    """One clip cut into ``num_subclips`` equal, non-overlapping, ordered sub-clips (CVTCL).

    Returns ``{"clip": (T,H,W,C), "subclips": (S, T // S, H, W, C)}``; ``clip_len`` must be a
    multiple of ``num_subclips``.
    """

    clip_len: int
    stride: int
    num_subclips: int = 4
    modality: Optional[str] = None

    def __post_init__(self) -> None:
        if self.clip_len % self.num_subclips:
            raise ValueError("clip_len must be a multiple of num_subclips")

    def __call__(self, video, rng: np.random.Generator) -> dict:
        max_start = max(video.num_frames - clip_span(self.clip_len, self.stride), 0)
        start = int(rng.integers(0, max_start + 1))
        clip = read_clip(video, start, self.clip_len, self.stride, self.modality)
        sub = clip.reshape(self.num_subclips, self.clip_len // self.num_subclips, *clip.shape[1:])
        return {"clip": clip, "subclips": sub}
