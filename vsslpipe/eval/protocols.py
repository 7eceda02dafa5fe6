"""Evaluation protocol presets (``coclr``, ``vcop``, ``tclr``): which clips of a video are encoded,
how frames are cropped, how clip features are combined and post-processed before retrieval.

The papers do not share one protocol (docs/evaluation.md, "What a video's feature is: the protocols"), so each is a
named preset in :data:`PROTOCOLS`:

- ``coclr`` (CoCLR, CVTCL): each clip feature L2-normalised; test video = mean over sliding windows
  (start step 15 frames); training video = one window (the middle one: deterministic); short side
  resized to the crop size, centre crop; retrieval subtracts each set's own mean, then L2-normalises.
- ``vcop`` (VCOP, CACL): 10 clips at evenly spaced starts for every video, resized so the crop is
  112/128 of the short side (128x171 -> 112), centre crop; mean of raw clip features; cosine.
- ``tclr`` (TCLR): 9 evenly spaced clips; the feature keeps the time axis (spatially pooled map,
  flattened); mean of clips; L2-normalised.

Clip length, temporal stride and crop size are the encoder's training input (checkpoint metadata)
unless the export parameters override them; the paper values are in each preset for reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from ..registry import Registry


@dataclass(frozen=True)
class Protocol:
    name: str
    train_windows: Literal["middle", "sliding", "even"]
    test_windows: Literal["middle", "sliding", "even"]
    window_step: int = 15            # frames between sliding-window starts
    num_clips: int = 10              # clips per video for "even"
    crop_fraction: float = 1.0       # crop size / resized short side (vcop: 112 / 128)
    clip_l2_normalize: bool = False  # L2-normalise each clip feature before averaging
    keep_time: bool = False          # flatten (C, T') instead of pooling time
    center: bool = False             # retrieval: subtract each set's own mean first
    paper_clip_len: int = 32
    paper_stride: int = 1
    paper_size: int = 128


PROTOCOLS: Registry = Registry("retrieval protocol")


@PROTOCOLS.register("coclr")
def coclr() -> Protocol:
    return Protocol("coclr", train_windows="middle", test_windows="sliding", window_step=15,
                    clip_l2_normalize=True, center=True, paper_clip_len=32, paper_stride=1,
                    paper_size=128)


@PROTOCOLS.register("vcop")
def vcop() -> Protocol:
    return Protocol("vcop", train_windows="even", test_windows="even", num_clips=10,
                    crop_fraction=112 / 128, paper_clip_len=16, paper_stride=2, paper_size=112)


@PROTOCOLS.register("tclr")
def tclr() -> Protocol:
    return Protocol("tclr", train_windows="even", test_windows="even", num_clips=9,
                    keep_time=True, paper_clip_len=16, paper_stride=2, paper_size=112)


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.build(name)


def window_starts(num_frames: int, span: int, mode: str, step: int = 15,
                  num_clips: int = 10) -> list[int]:
    """Start frames of the clips of a video with ``num_frames`` frames; a clip covers ``span``.

    ``middle``: the one centred window; ``sliding``: every ``step`` frames from 0 while the window
    fits; ``even``: ``num_clips`` starts spread evenly over [0, num_frames - span] (repeats when
    the video is short). A video shorter than ``span`` gives start 0 (the reader pads it).
    """
    last = num_frames - span
    if last <= 0:
        return [0] if mode != "even" else [0] * num_clips
    if mode == "middle":
        return [last // 2]
    if mode == "sliding":
        return list(range(0, last + 1, step))
    if mode == "even":
        return [int(round(x)) for x in np.linspace(0, last, num_clips)]
    raise ValueError(f"unknown window mode {mode!r}")


def postprocess(features: np.ndarray, center: bool) -> np.ndarray:
    """Retrieval post-processing of one set: optional mean subtraction, then L2 normalisation."""
    x = np.asarray(features, dtype=np.float32)
    if center:
        x = x - x.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def resolve_clip(meta_clip: Optional[dict], protocol: Protocol, clip_len: Optional[int],
                 stride: Optional[int], size: Optional[int]) -> dict:
    """Clip settings: explicit values, else the encoder's training clip, else the paper's."""
    meta_clip = meta_clip or {}
    return {
        "clip_len": int(clip_len or meta_clip.get("clip_len") or protocol.paper_clip_len),
        "stride": int(stride or meta_clip.get("stride") or protocol.paper_stride),
        "size": int(size or meta_clip.get("size") or protocol.paper_size),
    }
