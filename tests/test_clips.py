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


@pytest.mark.parametrize("kind", ["uniform", "linear", "linear_inclusive", "power"])
def test_gap_distribution_chi_square(kind):
    sampler = TwoClipSampler(clip_len=4, stride=2, gap=kind, alpha=1.0)
    n = 30
    max_gap = n - clip_span(4, 2)
    rng = np.random.default_rng(0)
    gaps = np.array([sampler.starts(n, rng)[2] for _ in range(6000)])
    observed = np.bincount(gaps, minlength=max_gap + 1)
    expected = gap_probabilities(kind, max_gap, 1.0) * len(gaps)
    possible = expected > 0
    assert observed[~possible].sum() == 0
    assert stats.chisquare(observed[possible], expected[possible]).pvalue > 1e-3
    if kind.startswith("linear"):   # decreasing: small gaps more likely than large ones
        assert observed[:5].sum() > 3 * observed[-5:].sum()


def test_linear_gap_law_is_the_papers():
    """CVRL's decreasing law: P(t) = 2 (t_max - t) / (t_max (t_max + 1)), zero at t_max; a video
    one clip long (t_max = 0) has only the gap 0. `linear_inclusive` keeps P(t_max) > 0."""
    for t_max in (1, 2, 5, 23):
        t = np.arange(t_max + 1)
        exact = 2.0 * (t_max - t) / (t_max * (t_max + 1))
        np.testing.assert_allclose(gap_probabilities("linear", t_max), exact, rtol=0, atol=1e-15)
        assert gap_probabilities("linear", t_max)[-1] == 0.0
        inclusive = (t_max + 1 - t) / ((t_max + 1) * (t_max + 2) / 2)
        np.testing.assert_allclose(gap_probabilities("linear_inclusive", t_max), inclusive, atol=1e-15)
    np.testing.assert_array_equal(gap_probabilities("linear", 0), [1.0])
    rng = np.random.default_rng(0)
    sampler = TwoClipSampler(clip_len=4, stride=2, gap="linear")
    assert {sampler.starts(clip_span(4, 2), rng)[2] for _ in range(50)} == {0}


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


def test_short_video_repeats_its_last_frame():
    """Training follows evaluation's rule (eval.clips.cut_window): indices clamp to n - 1."""
    import torch

    from vsslpipe.eval.clips import cut_window

    for n, start, length, stride in ((5, 0, 4, 2), (1, 0, 4, 3), (6, 2, 5, 1)):
        clip = read_clip(FakeVideo(n), start, clip_len=length, stride=stride)
        video = torch.arange(n).view(1, n, 1, 1)
        expected = cut_window(video, start, length, stride)[0, :, 0, 0]
        assert clip[:, 0, 0, 0].tolist() == expected.tolist()
    assert list(read_clip(FakeVideo(5), 0, clip_len=4, stride=2)[:, 0, 0, 0]) == [0, 2, 4, 4]


def test_same_and_sub_clips():
    out = SameClipSampler(8, 1)(FakeVideo(20), np.random.default_rng(0))
    assert out["clip0"].shape == out["clip1"].shape == (8, 2, 2, 3)    # raw: whole frames
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
    # training views: cut in the worker to the training size, still keyed by (seed, epoch, index)
    from vsslpipe.data.views import Spatial

    views = ClipDataset(table, {"rgb": store}, TwoClipSampler(4, 2, spatial=Spatial(
        16, area=(0.3, 1.0), aspect=(0.5, 2.0), flip_p=0.5)), seed=0)
    c, d, e = views[(0, 1)], views[(0, 1)], views[(1, 1)]
    assert c["clip0"].shape == (4, 16, 16, 3)
    assert np.array_equal(c["clip0"], d["clip0"]) and not np.array_equal(c["clip0"], e["clip0"])
