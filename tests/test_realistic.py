"""Extraction on footage-like videos: mixed sizes and codecs, VFR, one-frame, short, broken, cut.

Expectations come from how each file was made (tests/realistic.py), never from decoding it.
A cut file keeps the frames before the cut when its container allows (AVI: frames in file
order); the half-written frame is dropped, not concealed. A cut MP4 whose index (moov) was
still to be written fails with ffmpeg's cause. Decided so because the frames before a cut are
exact footage (dropping them loses data a user paid to download), while an error-concealed
frame is content the camera never saw.
"""
from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np
import pytest

from realistic import avi_complete_frames, realistic_collection, source_frames  # noqa: F401
from vsslpipe.data.framestore import FrameStore
from vsslpipe.data.manifest import read_ucf101
from vsslpipe.video.extract import ExtractSettings, extract_videos
from vsslpipe.video.ffmpeg import decode_video, resized_size

SHORT_SIDE = 128


def _extract(collection, out, **settings):
    manifest = read_ucf101(collection["videos"], collection["splits"])
    result = extract_videos(manifest, collection["videos"], out, ExtractSettings(**settings),
                            workers=1, progress=False)
    return FrameStore(out), dict(result.failures)


@pytest.fixture(scope="module")
def native(realistic_collection, tmp_path_factory):
    """(store, failures) of the collection at its own frame rates, short side 128."""
    out = tmp_path_factory.mktemp("realistic_native") / "frames"
    return _extract(realistic_collection, out, short_side=SHORT_SIDE)


def _decodable(collection):
    return {vid: clip for vid, clip in collection["clips"].items() if clip.decodes}


def _with_trait(collection, trait):
    found = [clip for clip in collection["clips"].values() if trait in clip.traits]
    assert found, trait
    return found


def test_collection_has_every_trait_in_ucf101_split_files(realistic_collection):
    clips = realistic_collection["clips"]
    manifest = read_ucf101(realistic_collection["videos"], realistic_collection["splits"])
    assert set(manifest["video_id"]) == set(clips)
    for row in manifest.itertuples():
        clip = clips[row.video_id]
        assert (row.split, row.group, row.class_name) == (clip.split, clip.group, clip.class_name)
        assert row.label == realistic_collection["classes"].index(clip.class_name)
    train = set(manifest.loc[manifest["split"] == "train", "group"])
    test = set(manifest.loc[manifest["split"] == "test", "group"])
    assert not train & test
    good = _decodable(realistic_collection).values()
    for cls in realistic_collection["classes"]:   # retrieval and a probe have queries and a database
        assert {c.split for c in good if c.class_name == cls} == {"train", "test"}
    sizes = {(c.width, c.height) for c in good}
    assert {(160, 120), (240, 176), (320, 240), (321, 239)} <= sizes
    assert len({Fraction(w, h) for w, h in sizes}) >= 3
    for trait in ("h264", "vfr", "single_frame", "short", "broken", "truncated", "odd_size"):
        _with_trait(realistic_collection, trait)
    # The files are what they claim, by their bytes: RIFF AVI with an XVID fourcc, ISO MP4, text.
    for clip in clips.values():
        data = (realistic_collection["videos"] / clip.path).read_bytes()
        if clip.container == "avi":
            assert data[:4] == b"RIFF" and data[8:12] == b"AVI " and b"XVID" in data[:4096]
        elif clip.container == "mp4":
            assert data[4:8] == b"ftyp"
        else:
            data.decode("ascii")


def test_only_unreadable_files_fail_each_with_its_cause(native, realistic_collection):
    store, failures = native
    clips = realistic_collection["clips"]
    assert set(failures) == {vid for vid, clip in clips.items() if not clip.decodes}
    assert sorted(store.video_ids()) == sorted(_decodable(realistic_collection))
    for vid, reason in failures.items():
        assert clips[vid].failure in reason, reason
        assert "\n" not in reason and str(realistic_collection["videos"]) not in reason


def test_frame_counts_at_the_native_rate(native, realistic_collection):
    store, _ = native
    for vid, clip in _decodable(realistic_collection).items():
        assert store.num_frames(vid) == clip.expected_frames(None) == clip.frames, vid
        assert store.read(vid).shape[0] == clip.frames
    assert [store.num_frames(c.video_id) for c in _with_trait(realistic_collection, "single_frame")] == [1]
    assert [store.num_frames(c.video_id) for c in _with_trait(realistic_collection, "short")] == [5]


def test_short_side_resize_keeps_the_aspect_ratio(native, realistic_collection):
    store, _ = native
    for vid, clip in _decodable(realistic_collection).items():
        attrs = store.video_attrs(vid)
        w, h = attrs["width"], attrs["height"]
        assert store.read(vid, 0, 1).shape == (1, h, w, 3)
        assert min(w, h) == SHORT_SIDE and (w >= h) == (clip.width >= clip.height)
        # The long side: the exact aspect-preserving length, rounded to the nearest even number.
        exact = Fraction(SHORT_SIDE * max(clip.width, clip.height), min(clip.width, clip.height))
        assert max(w, h) == 2 * math.floor(exact / 2 + Fraction(1, 2)), vid
        assert abs(Fraction(w, h) - Fraction(clip.width, clip.height)) <= Fraction(1, SHORT_SIDE)
        assert (w, h) == resized_size(clip.width, clip.height, SHORT_SIDE)
    odd = [store.video_attrs(c.video_id) for c in _with_trait(realistic_collection, "odd_size")]
    assert all(a["height"] == SHORT_SIDE and a["width"] % 2 == 0 for a in odd)


def test_stored_frames_are_the_rendered_frames_in_order(native, realistic_collection):
    """Each stored frame matches its own rendered frame (codec + JPEG error only) better than
    any other frame of the clip: nothing duplicated, dropped or reordered, VFR included."""
    store, _ = native
    for vid, clip in _decodable(realistic_collection).items():
        stored = store.read(vid).astype(np.float32)
        h, w = stored.shape[1:3]
        src = np.stack([cv2.cvtColor(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA),
                                     cv2.COLOR_BGR2RGB) for f in source_frames(clip)[:clip.frames]])
        errors = np.abs(stored[:, None] - src[None].astype(np.float32)).mean(axis=(2, 3, 4))
        assert errors.diagonal().max() < 8, (vid, errors.diagonal())
        np.testing.assert_array_equal(errors.argmin(axis=1), np.arange(clip.frames), err_msg=vid)


def test_cut_avi_keeps_the_frames_before_the_cut(native, realistic_collection):
    store, _ = native
    (cut,) = [c for c in _with_trait(realistic_collection, "truncated") if c.container == "avi"]
    path = realistic_collection["videos"] / cut.path
    complete = avi_complete_frames(path.read_bytes())
    assert 0 < complete < cut.encoded_frames
    assert store.num_frames(cut.video_id) == complete   # the half-written frame is not stored
    assert "corrupt" in decode_video(path).damage.lower()
    intact = next(c for c in _decodable(realistic_collection).values() if c.container == "avi"
                  and not c.traits)
    assert decode_video(realistic_collection["videos"] / intact.path).damage == ""


def test_resampled_frame_counts(realistic_collection, tmp_path):
    """At --fps 10 every video, the one-frame clip included, has the fps filter's count."""
    store, failures = _extract(realistic_collection, tmp_path / "frames", short_side=64, fps=10.0)
    assert set(failures) == {v for v, c in realistic_collection["clips"].items() if not c.decodes}
    for vid, clip in _decodable(realistic_collection).items():
        assert store.num_frames(vid) == clip.expected_frames(10.0) >= 1, vid
        assert store.video_attrs(vid)["fps"] == 10.0
    (single,) = _with_trait(realistic_collection, "single_frame")
    assert store.num_frames(single.video_id) == 1


def test_variable_frame_rate(realistic_collection):
    (vfr,) = _with_trait(realistic_collection, "vfr")
    path = realistic_collection["videos"] / vfr.path
    gaps = np.diff([float(t) for t in vfr.timestamps])
    assert gaps.min() < gaps.max()   # the file really is variable-rate
    native = decode_video(path, 64)
    assert len(native.frames) == vfr.encoded_frames   # every frame once, none duplicated
    assert 1 / gaps.max() <= native.source_fps <= 1 / gaps.min()   # an average rate, sensible
    for fps in (25.0, 50.0):
        assert len(decode_video(path, 64, fps).frames) == vfr.expected_frames(fps)


@pytest.mark.parametrize("fps", [0, -3.0, float("nan"), float("inf")])
def test_decode_refuses_a_non_positive_fps(realistic_collection, fps):
    clip = next(iter(_decodable(realistic_collection).values()))
    with pytest.raises(ValueError, match="fps must be a positive number"):
        decode_video(realistic_collection["videos"] / clip.path, fps=fps)


def test_resized_size_predicts_the_decoded_size(realistic_collection):
    """resized_size mirrors ffmpeg's scale for odd short sides and odd frames too."""
    by_size = {(c.width, c.height): c for c in _decodable(realistic_collection).values()}
    for (w, h), clip in sorted(by_size.items()):
        for short_side in (127, 64, 0):
            frames = decode_video(realistic_collection["videos"] / clip.path, short_side).frames
            assert frames.shape[1:3][::-1] == resized_size(w, h, short_side), (w, h, short_side)
