"""Sub-clips for CVTCL's local temporal contrast: ``S`` non-overlapping, ordered, equal-length.

CVTCL (section 2.3) takes 4 non-overlapping sub-clips ``s_1..s_4`` of one clip; the released
code feeds 8-frame sub-clips of a 32-frame clip (the code that cuts them was not released).
:func:`subclip_bounds` gives the frame ranges: by default the clip is partitioned into ``S``
consecutive blocks of ``clip_len // S`` frames; with a shorter ``subclip_len`` the spare frames
become gaps, placed uniformly at random (every placement equally likely) when an ``rng`` is given.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch


def subclip_bounds(clip_len: int, num_subclips: int, subclip_len: Optional[int] = None,
                   rng: Optional[np.random.Generator] = None) -> list[tuple[int, int]]:
    """Frame ranges ``[(start, stop), ...]`` of ``num_subclips`` ordered, disjoint sub-clips.

    Args:
        clip_len: frames in the clip.
        num_subclips: ``S`` (>= 2 for LTCL).
        subclip_len: frames per sub-clip; default ``clip_len // num_subclips``.
        rng: if given, the ``clip_len - S * subclip_len`` spare frames are split into ``S + 1``
            random gaps (uniform over all placements); otherwise the sub-clips start at
            ``i * (clip_len // S)`` with the leftover at the end.
    """
    if num_subclips < 1:
        raise ValueError("num_subclips must be >= 1")
    length = clip_len // num_subclips if subclip_len is None else subclip_len
    if length < 1 or length * num_subclips > clip_len:
        raise ValueError(f"{num_subclips} sub-clips of {length} frames do not fit in {clip_len}")
    spare = clip_len - length * num_subclips
    if rng is None:
        step = clip_len // num_subclips
        starts = [i * step for i in range(num_subclips)]
    else:
        # stars and bars: choose the S sub-clip positions among spare + S slots
        slots = np.sort(rng.choice(spare + num_subclips, size=num_subclips, replace=False))
        starts = [int(slot - i) + i * length for i, slot in enumerate(slots)]
    return [(s, s + length) for s in starts]


def split_subclips(clip: torch.Tensor, bounds: Sequence[tuple[int, int]],
                   time_dim: int = 2) -> torch.Tensor:
    """Stack the sub-clips of ``clip`` along a new dim 1.

    ``clip`` ``(B, C, T, H, W)`` (``time_dim=2``) -> ``(B, S, C, t, H, W)``; for raw
    ``(B, T, H, W, C)`` batches pass ``time_dim=1`` -> ``(B, S, t, H, W, C)``.
    """
    parts = [clip.narrow(time_dim, start, stop - start) for start, stop in bounds]
    return torch.stack(parts, dim=1)
