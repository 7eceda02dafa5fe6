"""The embedded default dataset: short videos whose class is a motion, in UCF101's layout.

Each class is a motion of one object: translation in four directions, rotation either way,
approach (growing) and recede (shrinking) — the same frames in opposite temporal order —, and
horizontal or vertical oscillation. Appearance (background texture, object shape, colour and
size, noise level) is drawn at random per group (the clips of a group share it, like UCF101's
groups), and the start position, speed, phase and camera jitter per clip; test groups are
disjoint from training groups.

Scene bias, like UCF101's (diving happens at pools): with probability ``class_scene_p`` a
group's background stripes follow its class's typical layout (orientation and period), in the
group's own random colours. Without it (``class_scene_p: 0``) only motion separates the classes,
and on the demo budget RGB encoders learn nothing but the group's colours (docs/evaluation.md).
Videos are real encoded files (MPEG-4 Part 2 in AVI, like UCF101's XviD), so the default
pipeline runs the same decode path a real dataset does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .ffmpeg import encode_video

CLASSES: tuple[str, ...] = (
    "MoveLeft", "MoveRight", "MoveUp", "MoveDown",
    "RotateClockwise", "RotateCounterclockwise",
    "Approach", "Recede",
    "SwingHorizontal", "SwingVertical",
    "OrbitClockwise", "OrbitCounterclockwise",
)

SHAPES = ("triangle", "rectangle", "arrow", "ell", "star", "kite")


@dataclass(frozen=True)
class SynthSpec:
    num_classes: int = 10
    groups: int = 6              # like UCF101's gXX: one appearance per group
    clips_per_group: int = 3
    test_groups: int = 2         # groups 1..test_groups form the test split
    frames: int = 32
    height: int = 48
    width: int = 64
    fps: float = 25.0
    seed: int = 0
    texture_contrast: float = 1.0   # scales the background texture's amplitude (0: flat colour)
    class_scene_p: float = 0.0      # chance a group's background has its class's stripe layout


@dataclass(frozen=True)
class Pose:
    cx: float
    cy: float
    angle: float   # degrees
    scale: float


def _shape_polygon(shape: str) -> np.ndarray:
    """A unit-size, rotation-asymmetric polygon (so rotation is visible)."""
    polys = {
        "triangle": [(0, -1.0), (0.7, 0.8), (-0.5, 0.6)],
        "rectangle": [(-1, -0.45), (1, -0.45), (1, 0.45), (-1, 0.45)],
        "arrow": [(-1, -0.3), (0.2, -0.3), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.3), (-1, 0.3)],
        "ell": [(-0.8, -1), (-0.2, -1), (-0.2, 0.4), (0.8, 0.4), (0.8, 1), (-0.8, 1)],
        "star": [(math.cos(a) * r, math.sin(a) * r) for a, r in
                 ((i * math.pi / 5 - math.pi / 2, 1.0 if i % 2 == 0 else 0.45) for i in range(9))],
        "kite": [(0, -1), (0.5, -0.2), (0, 1), (-0.3, -0.2)],
    }
    return np.array(polys[shape], dtype=np.float64)


def class_stripes(class_index: int) -> tuple[float, float]:
    """A class's typical scene layout: stripe orientation (radians) and period (pixels).

    Classes 0..11 get distinct layouts: 6 orientations 30 degrees apart x 2 periods."""
    return math.pi * (class_index % 6) / 6, (7.0, 13.0)[(class_index // 6) % 2]


def _background(rng: np.random.Generator, height: int, width: int, margin: int,
                contrast: float = 1.0, stripes_layout: tuple[float, float] | None = None) -> np.ndarray:
    """A random smooth texture (blobs + stripes), larger than the frame for camera jitter.

    With ``stripes_layout`` (orientation, period) the stripes follow it, a little varied, and are
    stronger; colours and blobs stay random."""
    h, w = height + 2 * margin, width + 2 * margin
    base = rng.uniform(40, 215, size=3)
    img = np.tile(base, (h, w, 1))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for _ in range(int(rng.integers(3, 8))):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, max(w, h) / 3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-70, 70, size=3) * contrast
    if stripes_layout is None:
        theta, period = rng.uniform(0, math.pi), rng.uniform(6, 24)
        stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
        img += stripes[..., None] * rng.uniform(0, 25) * contrast
    else:
        theta = stripes_layout[0] + rng.normal(0, 0.08)
        period = stripes_layout[1] * rng.uniform(0.9, 1.1)
        phase = rng.uniform(0, 2 * math.pi)
        stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period + phase)
        tint = rng.uniform(0.3, 1.0, size=3)
        img += stripes[..., None] * tint * rng.uniform(35, 50) * contrast
    return np.clip(img, 0, 255).astype(np.uint8)


def _trajectory(cls: str, rng: np.random.Generator, spec: SynthSpec, size: float) -> Callable[[float], Pose]:
    """Pose at time u in [0, 1] for motion class ``cls`` (random speed, start, phase)."""
    h, w = spec.height, spec.width
    m = size * 1.1
    angle0 = rng.uniform(0, 360)
    travel = rng.uniform(0.45, 0.7)

    def clamp_start(lo: float, hi: float) -> float:
        return rng.uniform(lo, max(lo, hi))

    if cls in ("MoveLeft", "MoveRight"):
        dist = travel * (w - 2 * m)
        y0 = rng.uniform(m, h - m)
        x0 = clamp_start(m, w - m - dist)
        sign = 1 if cls == "MoveRight" else -1
        xs = x0 if sign > 0 else w - x0
        return lambda u: Pose(xs + sign * dist * u, y0, angle0, 1.0)
    if cls in ("MoveUp", "MoveDown"):
        dist = travel * (h - 2 * m)
        x0 = rng.uniform(m, w - m)
        y0 = clamp_start(m, h - m - dist)
        sign = 1 if cls == "MoveDown" else -1
        ys = y0 if sign > 0 else h - y0
        return lambda u: Pose(x0, ys + sign * dist * u, angle0, 1.0)
    cx, cy = rng.uniform(m, w - m), rng.uniform(m, h - m)
    if cls in ("RotateClockwise", "RotateCounterclockwise"):
        turn = rng.uniform(150, 300) * (-1 if cls == "RotateClockwise" else 1)
        return lambda u: Pose(cx, cy, angle0 + turn * u, 1.0)
    if cls in ("Approach", "Recede"):
        lo, hi = rng.uniform(0.45, 0.6), rng.uniform(1.3, 1.6)
        cx, cy = rng.uniform(size * 1.7, w - size * 1.7), rng.uniform(size * 1.5, h - size * 1.5)
        if cls == "Approach":
            return lambda u: Pose(cx, cy, angle0, lo + (hi - lo) * u)
        return lambda u: Pose(cx, cy, angle0, hi - (hi - lo) * u)
    cycles, phase = rng.uniform(1.5, 3.0), rng.uniform(0, 2 * math.pi)
    if cls == "SwingHorizontal":
        amp = rng.uniform(0.18, 0.3) * w
        cx = rng.uniform(m + amp, max(m + amp, w - m - amp)) if w - 2 * (m + amp) > 0 else w / 2
        return lambda u: Pose(cx + amp * math.sin(2 * math.pi * cycles * u + phase), cy, angle0, 1.0)
    if cls == "SwingVertical":
        amp = rng.uniform(0.18, 0.3) * h
        cy = rng.uniform(m + amp, max(m + amp, h - m - amp)) if h - 2 * (m + amp) > 0 else h / 2
        return lambda u: Pose(cx, cy + amp * math.sin(2 * math.pi * cycles * u + phase), angle0, 1.0)
    if cls in ("OrbitClockwise", "OrbitCounterclockwise"):
        r = rng.uniform(0.15, 0.25) * min(w, h)
        cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2 + rng.uniform(-0.1, 0.1) * h
        sign = 1 if cls == "OrbitClockwise" else -1  # image y points down: +angle is clockwise
        return lambda u: Pose(cx + r * math.cos(phase + sign * 2 * math.pi * u),
                              cy + r * math.sin(phase + sign * 2 * math.pi * u), angle0, 1.0)
    raise ValueError(f"unknown synthetic class {cls!r}")


def render_video(cls: str, spec: SynthSpec, look: np.random.Generator,
                 rng: np.random.Generator) -> np.ndarray:
    """(frames, H, W, 3) uint8 BGR frames of one video of class ``cls``.

    ``look`` draws the appearance (shared by the clips of a group), ``rng`` the motion, camera
    jitter and noise of this clip.
    """
    h, w, t = spec.height, spec.width, spec.frames
    margin = 8
    layout = class_stripes(CLASSES.index(cls)) if look.uniform() < spec.class_scene_p else None
    background = _background(look, h, w, margin, spec.texture_contrast, layout)
    shape = _shape_polygon(SHAPES[int(look.integers(len(SHAPES)))])
    size = look.uniform(0.2, 0.28) * min(h, w)
    colour = cv2.cvtColor(np.uint8([[[look.integers(0, 180), look.integers(120, 256),
                                      look.integers(120, 256)]]]), cv2.COLOR_HSV2BGR)[0, 0]
    colour = tuple(int(c) for c in colour)
    outline = tuple(int(255 - c) for c in colour)
    noise_sigma = float(look.uniform(0, 4))
    jitter = float(rng.uniform(0, 0.5))  # px per frame (std of the camera's random walk)
    pose_at = _trajectory(cls, rng, spec, size)
    camera = np.cumsum(rng.normal(0, jitter, size=(t, 2)), axis=0)
    camera = np.clip(camera, -3, 3)
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        pose = pose_at(i / max(t - 1, 1))
        dx, dy = camera[i]
        ox, oy = int(round(margin + dx)), int(round(margin + dy))
        frame = background[oy:oy + h, ox:ox + w].copy()
        a = math.radians(pose.angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        # The camera moves the whole scene: the object shifts with the background.
        pts = shape @ rot.T * size * pose.scale + (pose.cx - dx, pose.cy - dy)
        pts = np.round(pts * 16).astype(np.int32)  # 4 fractional bits: sub-pixel motion
        cv2.fillPoly(frame, [pts], colour, lineType=cv2.LINE_AA, shift=4)
        cv2.polylines(frame, [pts], True, outline, 1, lineType=cv2.LINE_AA, shift=4)
        if noise_sigma > 0:
            noisy = frame.astype(np.float32) + rng.normal(0, noise_sigma, frame.shape).astype(np.float32)
            frame = np.clip(noisy, 0, 255).astype(np.uint8)
        frames[i] = frame
    return frames


def video_name(cls: str, group: int, clip: int) -> str:
    """UCF101's naming: ``<Class>/v_<Class>_gGG_cCC.avi`` (groups and clips 1-based)."""
    return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}.avi"


def video_plan(spec: SynthSpec) -> list[tuple[int, str, int, int]]:
    """Every video as (class index, class name, group, clip)."""
    return [(ci, cls, g, c) for ci, cls in enumerate(CLASSES[:spec.num_classes])
            for g in range(1, spec.groups + 1) for c in range(1, spec.clips_per_group + 1)]


def write_video(task: tuple[SynthSpec, Path, int, str, int, int]) -> str:
    spec, root, ci, cls, group, clip = task
    # One look per (class, group), like UCF101 (a group is one actor and scene of one class).
    # Tried: one look per group shared by all classes, so that only motion tells a group's
    # videos apart; on the demo budget RGB encoders then cluster test videos by look alone
    # (hubness), and pretrained RGB encoders gained nothing over random ones.
    look = np.random.default_rng([spec.seed, ci, group])
    rng = np.random.default_rng([spec.seed, ci, group, clip])
    frames = render_video(cls, spec, look, rng)
    path = root / video_name(cls, group, clip)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_video(frames, path, spec.fps)
    return str(path)


def write_split_files(spec: SynthSpec, split_dir: Path) -> None:
    """classInd.txt, trainlist01.txt and testlist01.txt in UCF101's formats."""
    split_dir.mkdir(parents=True, exist_ok=True)
    classes = CLASSES[:spec.num_classes]
    (split_dir / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    train, test = [], []
    for ci, cls, g, c in video_plan(spec):
        name = video_name(cls, g, c)
        if g <= spec.test_groups:
            test.append(f"{name}\n")
        else:
            train.append(f"{name} {ci + 1}\n")
    (split_dir / "trainlist01.txt").write_text("".join(train))
    (split_dir / "testlist01.txt").write_text("".join(test))
