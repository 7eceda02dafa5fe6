"""Temporal samplers: which frames of a video make a training sample (run in loader workers).

A sampler is a picklable callable ``sampler(video, rng) -> dict`` (contract in
:mod:`vsslpipe.methods.base`). A clip is ``clip_len`` frames at temporal ``stride``, so it spans
``(clip_len - 1) * stride + 1`` stored frames; it is read as one contiguous range and subsampled
in memory. A window that runs past the last frame repeats the last frame (index clamped to
``n - 1``, the rule evaluation uses), so a one-frame video gives that frame repeated.

With a ``spatial`` setting (:class:`~vsslpipe.data.views.Spatial`) a sampler returns training
views ``(T, S, S, C)`` uint8, each with its own spatial draw, cut in the worker; without one, the
raw windows ``(T, H, W, C)`` (whole frames).

CVRL's temporal augmentation (:class:`TwoClipSampler`) draws the gap ``t`` between the two clips'
starts from ``[0, t_max]``, ``t_max = n - span``, with P(t) uniform, ``linear`` (∝ t_max - t: the
paper's decreasing law, probability zero at the largest gap; a video exactly one clip long has
only the gap 0), ``linear_inclusive`` (∝ t_max + 1 - t: every gap keeps some probability; this
project's law before it followed the paper, kept as a switch) or ``power`` (∝ (t + 1)^-alpha),
then the first start uniformly in ``[0, t_max - t]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .views import Spatial, Window, take_views

GAPS = ("uniform", "linear", "linear_inclusive", "power")


def clip_span(clip_len: int, stride: int) -> int:
    return (clip_len - 1) * stride + 1


def gap_probabilities(kind: str, max_gap: int, alpha: float = 1.0) -> np.ndarray:
    """P(t) for t = 0..max_gap (float64, sums to 1)."""
    t = np.arange(max_gap + 1, dtype=np.float64)
    if kind == "uniform":
        w = np.ones_like(t)
    elif kind == "linear":
        w = max_gap - t                # CVRL: decreasing to zero at the largest gap
        if max_gap == 0:               # one possible start: the gap is 0
            w = np.ones_like(t)
    elif kind == "linear_inclusive":
        w = (max_gap + 1) - t          # P(t_max) > 0, so every gap stays possible
    elif kind == "power":
        w = (t + 1.0) ** (-alpha)
    else:
        raise ValueError(f"unknown gap distribution {kind!r}; valid: {', '.join(GAPS)}")
    return w / w.sum()


def uniform_start(num_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> int:
    return int(rng.integers(0, max(num_frames - clip_span(clip_len, stride), 0) + 1))


def read_clip(video, start: int, clip_len: int, stride: int,
              modality: Optional[str] = None) -> np.ndarray:
    """``clip_len`` frames from ``start`` at ``stride``: (T, H, W, C) uint8; past the last frame
    the last frame repeats."""
    return Window.clip(video, start, clip_len, stride, modality).frames()


@dataclass(frozen=True)
class SameClipSampler:
    """One clip at a uniform random start, cut into ``views`` (each its own spatial draw):
    ``{"clip0": ..., "clip1": ...}`` (MoCo, CVTCL: two augmentations of one window)."""

    clip_len: int
    stride: int
    modality: Optional[str] = None
    spatial: Optional[Spatial] = None
    views: tuple = ("clip0", "clip1")

    def __call__(self, video, rng: np.random.Generator) -> dict:
        start = uniform_start(video.num_frames, self.clip_len, self.stride, rng)
        window = Window.clip(video, start, self.clip_len, self.stride, self.modality)
        return take_views(video, window, rng, self.spatial, self.views)


@dataclass(frozen=True)
class TwoClipSampler:
    """Two clips whose start gap follows ``gap``: ``{"clip0", "clip1", "gap"}`` (CVRL)."""

    clip_len: int
    stride: int
    gap: str = "linear"
    alpha: float = 1.0
    modality: Optional[str] = None
    spatial: Optional[Spatial] = None

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
        out = {"gap": t}
        for name, start in (("clip0", a), ("clip1", b)):
            window = Window.clip(video, start, self.clip_len, self.stride, self.modality)
            out.update(take_views(video, window, rng, self.spatial, (name,)))
        return out


@dataclass(frozen=True)
class SubClipSampler:
    """One clip cut into ``num_subclips`` equal, non-overlapping, ordered sub-clips.

    Returns ``{"clip": (T,H,W,C), "subclips": (S, T // S, H, W, C)}`` (training views of size
    ``spatial.size`` with a ``spatial`` setting); ``clip_len`` must be a multiple of
    ``num_subclips``.
    """

    clip_len: int
    stride: int
    num_subclips: int = 4
    modality: Optional[str] = None
    spatial: Optional[Spatial] = None

    def __post_init__(self) -> None:
        if self.clip_len % self.num_subclips:
            raise ValueError("clip_len must be a multiple of num_subclips")

    def __call__(self, video, rng: np.random.Generator) -> dict:
        start = uniform_start(video.num_frames, self.clip_len, self.stride, rng)
        window = Window.clip(video, start, self.clip_len, self.stride, self.modality)
        clip = take_views(video, window, rng, self.spatial, ("clip",))["clip"]
        sub = clip.reshape(self.num_subclips, self.clip_len // self.num_subclips, *clip.shape[1:])
        return {"clip": clip, "subclips": sub}
