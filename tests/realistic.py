"""A small UCF101-layout collection that looks and breaks like real footage, for tests.

Natural content (camera pans and zooms over scikit-image's sample photographs, with sensor
noise), mixed frame sizes (160x120, 240x176, 320x240 and an odd 321x239), MPEG-4 Part 2 AVI
(XVID fourcc, like UCF101's files) beside H.264 MP4, a variable-frame-rate MP4, a one-frame
clip, a 5-frame clip, a text file named .avi, a cut AVI (its first frames are readable) and a
cut MP4 (its index sits at the end, so nothing is), all listed in UCF101 split files.

``make_collection(root)`` writes it in about a second and returns what each file should give
after extraction (:class:`Clip`); ``realistic_collection`` is a session fixture over it
(``from realistic import realistic_collection`` in a test module makes it available there).
The 321x239 file is MPEG-4 Part 2 in 4:2:0: libx264 refuses odd sizes in 4:2:0 (and 4:4:4
H.264 is rare in the wild), while MPEG-4 Part 2 accepts them, as real odd-sized AVIs show.
"""
from __future__ import annotations

import functools
import struct
import subprocess
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Optional

import cv2
import ffmpeg
import numpy as np
import pytest

from vsslpipe.video.ffmpeg import ffmpeg_binary

# class -> (scikit-image picture, camera motion); the picture is the class's scene (UCF101's
# scene bias) and the motion its action, so RGB retrieval and flow both have something to find.
CLASSES = {"PanAstronaut": ("astronaut", "pan_right"), "ZoomCoffee": ("coffee", "zoom_in"),
           "PanChelsea": ("chelsea", "pan_left"), "ZoomRocket": ("rocket", "zoom_out")}
NTSC = Fraction(30000, 1001)
VFR_TIMEBASE = 600   # ticks per second: multiples of both VFR periods (1/30 s and 1/12 s)
VFR_FAST, VFR_SLOW, VFR_SWITCH = 30, 12, 10   # first 10 frames at 30 fps, the rest at 12 fps


@dataclass(frozen=True)
class Clip:
    """One file of the collection and what extraction should make of it."""
    video_id: str                 # <Class>/v_<Class>_gGG_cCC
    path: str                     # relative to the video root, with extension
    class_name: str
    split: str                    # train | test
    group: str                    # gGG
    container: str                # avi | mp4 | text
    codec: str                    # mpeg4 | h264 | none
    width: int
    height: int
    rate: Fraction                # nominal frame rate of the encoded file
    encoded_frames: int           # frames rendered into the file (before any cut)
    traits: tuple[str, ...] = ()
    decodes: bool = True
    failure: str = ""             # a phrase the failure reason must contain (when not decodes)
    readable_frames: Optional[int] = None   # frames before the cut of a truncated file
    timestamps: tuple[Fraction, ...] = field(default=(), repr=False)   # VFR presentation times

    @property
    def frames(self) -> int:
        """Frames extraction keeps at the native rate (fps None); 0 when the file fails."""
        if not self.decodes:
            return 0
        return self.readable_frames if self.readable_frames is not None else self.encoded_frames

    def duration(self) -> Fraction:
        """Seconds the decodable frames cover (the last frame lasts one period)."""
        if self.timestamps:
            return self.timestamps[-1] + (self.timestamps[-1] - self.timestamps[-2])
        return self.frames / self.rate

    def expected_frames(self, fps: Optional[float] = None) -> int:
        """Frames after extraction at ``fps`` (None keeps every decoded frame).

        ffmpeg's fps filter emits output frame k at time k/fps up to the duration, rounding
        to the nearest (half up); a video shorter than half an output period keeps one frame."""
        if not self.decodes:
            return 0
        if fps is None:
            return self.frames
        return max(1, int(self.duration() * Fraction(fps) + Fraction(1, 2)))


# (class, group, clip, split, container, size, frames, traits); groups 1 are the test split.
_PLAN = [
    ("PanAstronaut", 1, 1, "test", "avi", (320, 240), 16, ()),
    ("PanAstronaut", 2, 1, "train", "mp4", (320, 240), 16, ("h264",)),
    ("PanAstronaut", 3, 1, "train", "avi", (321, 239), 12, ("odd_size",)),
    ("ZoomCoffee", 1, 1, "test", "mp4", (240, 176), 12, ("h264",)),
    ("ZoomCoffee", 2, 1, "train", "avi", (160, 120), 20, ()),
    ("ZoomCoffee", 2, 2, "train", "mp4", (320, 240), 16, ("h264", "truncated")),
    ("ZoomCoffee", 3, 1, "train", "mp4", (320, 240), 20, ("h264", "vfr")),
    ("PanChelsea", 1, 1, "test", "avi", (160, 120), 12, ()),
    ("PanChelsea", 2, 1, "train", "avi", (240, 176), 5, ("short",)),
    ("PanChelsea", 2, 2, "train", "avi", (320, 240), 24, ("truncated",)),
    ("PanChelsea", 3, 1, "train", "mp4", (320, 240), 16, ("h264",)),
    ("ZoomRocket", 1, 1, "test", "avi", (321, 239), 12, ("odd_size",)),
    ("ZoomRocket", 1, 2, "test", "text", (0, 0), 0, ("broken",)),
    ("ZoomRocket", 2, 1, "train", "avi", (160, 120), 1, ("single_frame",)),
    ("ZoomRocket", 3, 1, "train", "avi", (240, 176), 16, ()),
]


@functools.lru_cache(maxsize=None)
def _picture(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


def source_frames(clip: Clip) -> np.ndarray:
    """The (encoded_frames, H, W, 3) BGR frames rendered into ``clip``'s file (deterministic)."""
    picture_name, motion = CLASSES[clip.class_name]
    picture = _picture(picture_name)
    ph, pw = picture.shape[:2]
    w, h, n = clip.width, clip.height, clip.encoded_frames
    ci, group, number = list(CLASSES).index(clip.class_name), int(clip.group[1:]), int(clip.video_id[-2:])
    rng = np.random.default_rng([ci, group, number])
    fit = min(pw / w, ph / h)            # source pixels per output pixel when the view fills the picture
    if motion.startswith("pan"):
        scales = np.full(n, fit * rng.uniform(0.55, 0.7))
    else:
        step = rng.uniform(0.02, 0.035) * (-1 if motion == "zoom_in" else 1)
        start = fit * (0.9 if motion == "zoom_in" else 0.9 * (1 + step) ** -(n - 1))
        scales = start * (1 + step) ** np.arange(n)
    speed = rng.uniform(2.0, 4.0) * (1 if motion == "pan_right" else -1)   # source px per frame
    half_w, half_h = scales.max() * w / 2, scales.max() * h / 2
    travel = abs(speed) * (n - 1) if motion.startswith("pan") else 0.0
    x_lo, x_hi = half_w + (travel if speed < 0 else 0), pw - half_w - (travel if speed > 0 else 0)
    cx0 = rng.uniform(x_lo, max(x_lo, x_hi))   # each group sees another part of the scene
    cy = rng.uniform(half_h, max(half_h, ph - half_h))
    # Optics blur before sampling, as a lens would: without it the warp aliases fine texture.
    blurred = cv2.GaussianBlur(picture, (0, 0), max(0.5, 0.4 * float(scales.mean())))
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        s, cx = scales[i], cx0 + (speed * i if motion.startswith("pan") else 0.0)
        warp = np.float32([[s, 0, cx - s * w / 2], [0, s, cy - s * h / 2]])
        view = cv2.warpAffine(blurred, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)
        noise = rng.standard_normal(view.shape, dtype=np.float32)   # sensor noise, sigma 2
        frames[i] = np.clip(view + 2.0 * noise, 0, 255).astype(np.uint8)
    return frames


def _encode(frames: np.ndarray, path: Path, codec: str, rate: Fraction, vfr: bool = False,
            faststart: bool = True) -> None:
    n, h, w, _ = frames.shape
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="bgr24", s=f"{w}x{h}",
                          framerate=str(rate))
    out_args = {"pix_fmt": "yuv420p", "threads": 1, "fflags": "+bitexact", "map_metadata": -1}
    if vfr:
        # Presentation times N/30 s, then 1/12 s apart: exact in a 1/600 s time base.
        # In integer ticks: setpts truncates, and 5/30 s is 99.99... ticks in floating point.
        fast, slow = VFR_TIMEBASE // VFR_FAST, VFR_TIMEBASE // VFR_SLOW
        stream = stream.filter("settb", f"1/{VFR_TIMEBASE}").filter(
            "setpts", f"if(lt(N,{VFR_SWITCH}),N*{fast},{VFR_SWITCH * fast}+(N-{VFR_SWITCH})*{slow})")
        out_args.update(fps_mode="passthrough", video_track_timescale=VFR_TIMEBASE,
                        enc_time_base=f"1/{VFR_TIMEBASE}")
    if codec == "mpeg4":
        out_args.update(vcodec="mpeg4", vtag="XVID", **{"q:v": 4, "flags": "+bitexact"})
    else:
        out_args.update(vcodec="libx264", preset="veryfast", crf=23)
        if faststart:
            out_args["movflags"] = "+faststart"   # web-style MP4: the index (moov) first
    args = ffmpeg.compile(ffmpeg.output(stream, str(path), **out_args), cmd=ffmpeg_binary(),
                          overwrite_output=True)
    args = [args[0], "-nostdin", "-hide_banner", "-loglevel", "error"] + args[1:]
    result = subprocess.run(args, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"encoding {path} failed: {result.stderr.decode(errors='replace')[-500:]}")


def avi_complete_frames(data: bytes) -> int:
    """Video chunks ('00dc') whose bytes lie wholly inside ``data`` (an AVI, maybe cut short).

    Written by hand: a dozen lines of RIFF walking, where a parsing library would be a new
    dependency for one test expectation. The walk reads only chunk headers, so it is
    independent of ffmpeg's demuxer, whose behaviour it predicts."""
    pos, count = 12, 0                     # after 'RIFF' <size> 'AVI '
    while pos + 12 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"LIST" and data[pos + 8:pos + 12] == b"movi":
            sub, end = pos + 12, pos + 8 + size
            while sub + 8 <= min(end, len(data)):
                ctag, csize = data[sub:sub + 4], struct.unpack("<I", data[sub + 4:sub + 8])[0]
                if ctag == b"00dc" and sub + 8 + csize <= len(data):
                    count += 1
                sub += 8 + csize + (csize & 1)
            return count
        pos += 8 + size + (size & 1)
    return count


def make_collection(root: Path) -> dict:
    """Write the collection under ``root``; returns ``videos`` (video root), ``splits`` (split
    file folder), ``classes`` (names in label order) and ``clips`` ({video id: Clip})."""
    root = Path(root)
    videos, splits = root / "videos", root / "ucfTrainTestlist"
    clips: dict[str, Clip] = {}
    for cls, group, number, split, container, (w, h), n, traits in _PLAN:
        ext = "avi" if container in ("avi", "text") else "mp4"
        video_id = f"{cls}/v_{cls}_g{group:02d}_c{number:02d}"
        codec = {"avi": "mpeg4", "mp4": "h264", "text": "none"}[container]
        rate = Fraction(25) if container == "avi" else NTSC
        clip = Clip(video_id, f"{video_id}.{ext}", cls, split, f"g{group:02d}", container, codec,
                    w, h, rate, n, traits)
        path = videos / clip.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if "broken" in traits:
            path.write_text("This is a text file with a video's name, as downloads sometimes are.\n")
            clip = replace(clip, decodes=False, failure="Invalid data found when processing input")
        else:
            vfr = "vfr" in traits
            if vfr:
                stamps = [Fraction(i, VFR_FAST) if i < VFR_SWITCH else
                          Fraction(VFR_SWITCH, VFR_FAST) + Fraction(i - VFR_SWITCH, VFR_SLOW)
                          for i in range(n)]
                clip = replace(clip, timestamps=tuple(stamps))
            _encode(source_frames(clip), path, codec, rate, vfr, faststart="truncated" not in traits)
        if "truncated" in traits:
            data = path.read_bytes()
            cut = data[:len(data) // 2]    # an interrupted download or copy
            path.write_bytes(cut)
            if container == "avi":
                clip = replace(clip, readable_frames=avi_complete_frames(cut))
            else:   # the moov index is written last: half a file has none
                clip = replace(clip, decodes=False, failure="moov atom not found")
        clips[video_id] = clip
    classes = list(CLASSES)
    _write_splits(splits, classes, clips.values())
    return {"videos": videos, "splits": splits, "classes": classes, "clips": clips}


def _write_splits(folder: Path, classes: list[str], clips) -> None:
    """classInd.txt (1-based), trainlist01.txt ('<path> <label>'), testlist01.txt ('<path>')."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    ordered = sorted(clips, key=lambda c: c.path)
    (folder / "trainlist01.txt").write_text("".join(
        f"{c.path} {classes.index(c.class_name) + 1}\n" for c in ordered if c.split == "train"))
    (folder / "testlist01.txt").write_text("".join(f"{c.path}\n" for c in ordered if c.split == "test"))


@pytest.fixture(scope="session")
def realistic_collection(tmp_path_factory) -> dict:
    """:func:`make_collection` written once per test session (treat it as read-only)."""
    return make_collection(tmp_path_factory.mktemp("realistic"))
