"""The built-in dataset: motion classes, UCF101 layout, determinism, disjoint groups."""
import hashlib

import numpy as np

from vsslpipe.data.manifest import read_ucf101
from vsslpipe.video.synth import CLASSES, SynthSpec, render_video, video_plan

from conftest import TINY_SPEC


def test_layout_and_splits_follow_ucf101(tiny_dataset):
    frame = read_ucf101(tiny_dataset / "videos", tiny_dataset / "ucfTrainTestlist")
    assert len(frame) == TINY_SPEC.num_classes * TINY_SPEC.groups * TINY_SPEC.clips_per_group
    test_groups = set(frame[frame["split"] == "test"]["group"])
    train_groups = set(frame[frame["split"] == "train"]["group"])
    assert test_groups == {"g01"} and not test_groups & train_groups
    assert all(p.startswith(f"{c}/v_{c}_g") for p, c in zip(frame["path"], frame["class_name"]))


def test_at_least_ten_motion_classes():
    assert len(CLASSES) >= 10 and SynthSpec().num_classes >= 10


def _render(cls, clip, seed=0):
    spec = SynthSpec(frames=12, height=32, width=40, seed=seed)
    return render_video(cls, spec, np.random.default_rng([seed, 0, 1]),
                        np.random.default_rng([seed, 0, 1, clip]))


def test_deterministic_from_seed():
    a, b = _render("MoveLeft", 1), _render("MoveLeft", 1)
    assert hashlib.sha1(a.tobytes()).digest() == hashlib.sha1(b.tobytes()).digest()
    assert not np.array_equal(a, _render("MoveLeft", 1, seed=1))


def test_approach_and_recede_differ_only_in_time_order():
    """Same appearance: approach shows the object growing, recede shrinking."""
    def object_area(frames):
        background = np.median(frames, axis=0)
        return [(np.abs(f.astype(int) - background).sum(-1) > 60).sum() for f in frames]

    grow = object_area(_render("Approach", 1))
    shrink = object_area(_render("Recede", 1))
    assert grow[-1] > grow[0] and shrink[-1] < shrink[0]


def test_video_plan_covers_groups_and_clips():
    spec = SynthSpec(num_classes=10, groups=4, clips_per_group=2)
    plan = video_plan(spec)
    assert len(plan) == 80 and len({(c, g, k) for _, c, g, k in plan}) == 80
