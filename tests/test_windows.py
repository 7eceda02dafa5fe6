"""CoCLR's two-window sampling: every ordered pair of window starts equally likely."""
import numpy as np
from scipy import stats

from vsslpipe.data.sampling import clip_span
from vsslpipe.data.windows import IndependentWindowsSampler, independent_starts


class CountingVideo:
    """Frame i holds the value i."""

    def __init__(self, n):
        self.num_frames = n

    def read(self, start, stop, step=1, modality=None):
        idx = np.arange(start, stop)[::step]
        return np.broadcast_to(idx[:, None, None, None], (len(idx), 2, 2, 3)).astype(np.uint8)


def test_pairs_of_starts_are_uniform_over_the_grid():
    n, clip_len, stride, draws = 14, 4, 2, 20000
    m = n - clip_span(clip_len, stride) + 1                 # possible starts 0..m-1
    rng = np.random.default_rng(4)
    pairs = np.array([independent_starts(n, clip_len, stride, rng) for _ in range(draws)])
    assert pairs.min() == 0 and pairs.max() == m - 1
    observed = np.bincount(pairs[:, 0] * m + pairs[:, 1], minlength=m * m)
    assert stats.chisquare(observed, np.full(m * m, draws / (m * m))).pvalue > 1e-3
    # power: a sampler that draws the gap uniformly first is rejected by the same test
    gaps = rng.integers(0, m, draws)
    first = np.array([rng.integers(0, m - g) for g in gaps])
    skewed = np.bincount(first * m + first + gaps, minlength=m * m)
    assert stats.chisquare(skewed, np.full(m * m, draws / (m * m))).pvalue < 1e-6


def test_sampler_reads_two_contiguous_clips_and_short_videos_repeat_the_last_frame():
    out = IndependentWindowsSampler(clip_len=5, stride=3)(CountingVideo(40), np.random.default_rng(0))
    for key in ("clip0", "clip1"):
        assert np.all(np.diff(out[key][:, 0, 0, 0].astype(int)) == 3)
    short = IndependentWindowsSampler(clip_len=4, stride=2)(CountingVideo(5), np.random.default_rng(0))
    assert list(short["clip0"][:, 0, 0, 0]) == [0, 2, 4, 4]


def test_extra_views_come_from_the_query_window():
    """CVTCL's LTCL key view (``clip_ltcl``) is another crop of the query's window."""
    from vsslpipe.data.views import Spatial

    sampler = IndependentWindowsSampler(clip_len=3, stride=1, spatial=Spatial(size=2),
                                        extra=("clip_ltcl",))
    rng = np.random.default_rng(1)
    differ = 0
    for _ in range(30):
        out = sampler(CountingVideo(30), rng)
        assert out["clip_ltcl"].shape == (3, 2, 2, 3)
        assert np.array_equal(out["clip_ltcl"][:, 0, 0, 0], out["clip0"][:, 0, 0, 0])
        differ += not np.array_equal(out["clip1"][:, 0, 0, 0], out["clip0"][:, 0, 0, 0])
    assert differ > 20
