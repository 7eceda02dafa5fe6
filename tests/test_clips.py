"""Temporal samplers (distribution, reads) and the clip dataset over real HDF5 stores."""
import numpy as np
import pytest
from scipy import stats

from vsslpipe.data.clips import ClipDataset, EpochSampler
from vsslpipe.data.manifest import read_manifest
from vsslpipe.data.sampling import (SameClipSampler, SubClipSampler, TwoClipSampler, clip_span,
                                    gap_probabilities, read_clip)


class FakeVideo:
    """Frame i holds the value i; records every read."""

    def __init__(self, n, index=0):
        self.num_frames, self.index, self.label, self.group, self.video_id = n, index, 0, "g01", "v"
        self.reads = []

    def read(self, start, stop, step=1, modality=None):
        self.reads.append((start, stop, step))
        idx = np.arange(start, stop)[::step]
        return np.broadcast_to(idx[:, None, None, None], (len(idx), 2, 2, 3)).astype(np.uint8)


@pytest.mark.parametrize("kind", ["uniform", "linear", "power"])
def test_gap_distribution_chi_square(kind):
    sampler = TwoClipSampler(clip_len=4, stride=2, gap=kind, alpha=1.0)
    n = 30
    max_gap = n - clip_span(4, 2)
    rng = np.random.default_rng(0)
    gaps = np.array([sampler.starts(n, rng)[2] for _ in range(6000)])
    observed = np.bincount(gaps, minlength=max_gap + 1)
    expected = gap_probabilities(kind, max_gap, 1.0) * len(gaps)
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    if kind == "linear":   # decreasing: small gaps more likely than large ones
        assert observed[:5].sum() > 3 * observed[-5:].sum()


def test_wrong_distribution_is_rejected():
    """The test has power: uniform samples fail against the linear law."""
    sampler = TwoClipSampler(clip_len=4, stride=2, gap="uniform")
    rng = np.random.default_rng(1)
    gaps = np.array([sampler.starts(30, rng)[2] for _ in range(6000)])
    expected = gap_probabilities("linear", 23) * len(gaps)
    assert stats.chisquare(np.bincount(gaps, minlength=24), expected).pvalue < 1e-6


def test_two_clips_gap_and_contiguous_reads():
    video = FakeVideo(40)
    out = TwoClipSampler(clip_len=5, stride=3)(video, np.random.default_rng(3))
    a, b = out["clip0"][:, 0, 0, 0].astype(int), out["clip1"][:, 0, 0, 0].astype(int)
    assert np.all(np.diff(a) == 3) and np.all(np.diff(b) == 3)
    assert abs(int(a[0]) - int(b[0])) == out["gap"]
    assert all(step == 3 and stop - start == clip_span(5, 3) for start, stop, step in video.reads)


def test_short_video_loops():
    clip = read_clip(FakeVideo(5), 0, clip_len=4, stride=2)
    assert list(clip[:, 0, 0, 0]) == [0, 2, 4, 1]


def test_same_and_sub_clips():
    out = SameClipSampler(8, 1)(FakeVideo(20), np.random.default_rng(0))
    assert out["clip"].shape == (8, 2, 2, 3)
    out = SubClipSampler(8, 1, num_subclips=4)(FakeVideo(20), np.random.default_rng(0))
    assert out["subclips"].shape == (4, 2, 2, 2, 3)
    assert np.array_equal(out["subclips"].reshape(out["clip"].shape), out["clip"])


def test_epoch_sampler_shards_cover_everything():
    shards = [list(EpochSampler(10, seed=0, shuffle=True, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    seen = {i for s in shards for _, i in s}
    assert seen == set(range(10))
    again = list(EpochSampler(10, seed=0, shuffle=True, rank=1, world_size=3))
    assert again == shards[1]


def test_clip_dataset_reads_store(tiny_frames):
    store, manifest = tiny_frames
    table = read_manifest(manifest)
    table = table[table.split == "train"].sort_values("video_id")
    ds = ClipDataset(table, {"rgb": store}, TwoClipSampler(4, 2), seed=0)
    a, b = ds[(0, 1)], ds[(0, 1)]
    assert a["clip0"].shape == (4, 32, 40, 3) and a["clip0"].dtype == np.uint8
    assert np.array_equal(a["clip0"], b["clip0"])             # keyed by (seed, epoch, index)
    assert a["index"] == 1 and a["label"] == int(table.iloc[1]["label"])
