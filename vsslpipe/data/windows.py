"""Two windows of one video drawn independently: CoCLR's loader (``double_sampler``).

CoCLR's code gives the query and the key view of a video two temporal windows, each start drawn
uniformly and independently (so the windows may coincide, overlap or lie apart). CVTCL/CoCLR's
``clips: independent`` uses this; CVRL's gap laws (:mod:`vsslpipe.data.sampling`) are a
different design (the gap is drawn first).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .sampling import clip_span, read_clip


def independent_starts(num_frames: int, clip_len: int, stride: int,
                       rng: np.random.Generator) -> tuple[int, int]:
    """Two window starts, each uniform over ``[0, num_frames - span]`` and independent."""
    max_start = max(num_frames - clip_span(clip_len, stride), 0)
    a, b = rng.integers(0, max_start + 1, size=2)
    return int(a), int(b)


@dataclass(frozen=True)
class IndependentWindowsSampler:
    """``{"clip0", "clip1"}``: query and key windows of one video (one modality)."""

    clip_len: int
    stride: int
    modality: Optional[str] = None

    def __call__(self, video, rng: np.random.Generator) -> dict:
        a, b = independent_starts(video.num_frames, self.clip_len, self.stride, rng)
        return {"clip0": read_clip(video, a, self.clip_len, self.stride, self.modality),
                "clip1": read_clip(video, b, self.clip_len, self.stride, self.modality)}
