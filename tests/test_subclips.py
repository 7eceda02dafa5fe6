"""Sub-clips are disjoint, ordered, equal-length and cover what they claim."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vsslpipe.data.subclips import split_subclips, subclip_bounds


def _check(bounds, clip_len, length):
    assert all(stop - start == length for start, stop in bounds)
    assert all(0 <= start and stop <= clip_len for start, stop in bounds)
    # ordered and disjoint: each starts at or after the previous one's end
    assert all(b[0] >= a[1] for a, b in zip(bounds, bounds[1:]))


def test_default_partition():
    assert subclip_bounds(32, 4) == [(0, 8), (8, 16), (16, 24), (24, 32)]
    _check(subclip_bounds(10, 3), 10, 3)


def test_random_gaps_disjoint_ordered_and_uniform():
    rng = np.random.default_rng(0)
    first_starts = []
    for _ in range(2000):
        bounds = subclip_bounds(12, 3, subclip_len=3, rng=rng)
        _check(bounds, 12, 3)
        first_starts.append(bounds[0][0])
    # 3 spare frames in 4 gaps: C(6,3) = 20 placements; the first gap is 0..3 with counts 10,6,3,1
    freq = np.bincount(first_starts, minlength=4) / len(first_starts)
    np.testing.assert_allclose(freq, np.array([10, 6, 3, 1]) / 20, atol=0.04)


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        subclip_bounds(7, 4, subclip_len=2)


def test_split_subclips_shapes_and_content():
    clip = torch.arange(2 * 3 * 8 * 2 * 2).reshape(2, 3, 8, 2, 2)
    sub = split_subclips(clip, subclip_bounds(8, 4))
    assert sub.shape == (2, 4, 3, 2, 2, 2)
    assert torch.equal(sub[:, 2], clip[:, :, 4:6])
    raw = clip.permute(0, 2, 3, 4, 1)        # (B, T, H, W, C)
    assert torch.equal(split_subclips(raw, [(1, 3), (5, 7)], time_dim=1)[:, 1], raw[:, 5:7])
