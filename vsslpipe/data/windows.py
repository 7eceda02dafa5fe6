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

from .sampling import clip_span
from .views import Spatial, Window, take_views


def independent_starts(num_frames: int, clip_len: int, stride: int,
                       rng: np.random.Generator) -> tuple[int, int]:
    """Two window starts, each uniform over ``[0, num_frames - span]`` and independent."""
    max_start = max(num_frames - clip_span(clip_len, stride), 0)
    a, b = rng.integers(0, max_start + 1, size=2)
    return int(a), int(b)


@dataclass(frozen=True)
class IndependentWindowsSampler:
    """``{"clip0", "clip1"}``: query and key windows of one video (one modality); ``extra``
    names further views of the query's window (CVTCL's LTCL key view, ``"clip_ltcl"``)."""

    clip_len: int
    stride: int
    modality: Optional[str] = None
    spatial: Optional[Spatial] = None
    extra: tuple = ()

    def __call__(self, video, rng: np.random.Generator) -> dict:
        a, b = independent_starts(video.num_frames, self.clip_len, self.stride, rng)
        first = Window.clip(video, a, self.clip_len, self.stride, self.modality)
        out = take_views(video, first, rng, self.spatial, ("clip0", *self.extra))
        second = Window.clip(video, b, self.clip_len, self.stride, self.modality)
        out.update(take_views(video, second, rng, self.spatial, ("clip1",)))
        return out
