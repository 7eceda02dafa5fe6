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


def _stripe_orientation(frame: np.ndarray) -> float:
    """Dominant gradient orientation (radians, mod pi) of a frame: the stripes' normal."""
    gray = frame.astype(np.float64).mean(-1)
    gy, gx = np.gradient(gray)
    angle = np.arctan2(gy, gx) % np.pi
    hist, edges = np.histogram(angle, bins=36, range=(0, np.pi), weights=np.hypot(gx, gy))
    return float(edges[hist.argmax()] + np.pi / 72)


def test_class_scenes_share_the_class_stripe_layout():
    """With class_scene_p = 1 every group of a class has its stripes across the class's layout
    (its own colours); layouts of different classes differ."""
    from vsslpipe.video.synth import class_stripes

    spec = SynthSpec(frames=2, class_scene_p=1.0)
    layouts = {class_stripes(i) for i in range(len(CLASSES))}
    assert len(layouts) == len(CLASSES)
    for ci, cls in ((0, "MoveLeft"), (2, "MoveUp"), (4, "RotateClockwise")):
        theta = class_stripes(ci)[0]
        for group in (1, 2, 3):
            frames = render_video(cls, spec, np.random.default_rng([0, ci, group]),
                                  np.random.default_rng([0, ci, group, 1]))
            error = abs(_stripe_orientation(frames[0]) - theta) % np.pi
            assert min(error, np.pi - error) < np.radians(12), (cls, group)
