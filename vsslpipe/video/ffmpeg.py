"""ffmpeg access: which binary, what a video holds, and decoding to raw frames.

The binary is imageio-ffmpeg's (shipped in the wheel, so no system ffmpeg is needed) unless
``VSSLPIPE_FFMPEG`` names another one (``VSSLPIPE_FFMPEG=system`` takes ``ffmpeg`` from PATH).
Commands are built with ffmpeg-python. ffprobe is not shipped by imageio-ffmpeg, so stream
properties are read from ``ffmpeg -i``'s header, which every ffmpeg build prints.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import ffmpeg
import numpy as np


class VideoDecodeError(Exception):
    """ffmpeg could not read a video (the reason is ffmpeg's last error line)."""


@functools.lru_cache(maxsize=None)
def ffmpeg_binary() -> str:
    choice = os.environ.get("VSSLPIPE_FFMPEG", "")
    if choice == "system":
        found = shutil.which("ffmpeg")
        if found:
            return found
    elif choice:
        return choice
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=None)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_binary(), "-hide_banner", "-version"], capture_output=True, text=True)
    first = out.stdout.splitlines()[0] if out.stdout else "unknown"
    return first.replace("ffmpeg version ", "").split(" Copyright")[0]


@dataclass(frozen=True)
class StreamInfo:
    width: int
    height: int
    fps: float          # the stream's nominal rate (0.0 when ffmpeg reports none)
    rotation: int = 0   # degrees from display-matrix side data, if any


_VIDEO_LINE = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<rest>.*)")
_SIZE = re.compile(r"(?<![0-9])(\d{2,5})x(\d{2,5})(?![0-9])")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")


_TAGS = re.compile(r"^(?:\[[^\]]*\]\s*)+")   # "[in#0/avi @ 0x...] " prefixes
_CONCLUSION = re.compile(r"^(?:Error opening input files?: |Decoding error: |"
                         r"Task finished with error code: -\d+ \()(.*?)\)?$")
# Lines ffmpeg prints on every failure (consequences, not causes) and stream/progress reports.
_NOT_A_CAUSE = re.compile(
    r"^(?:Conversion failed|Task finished with error|Terminating thread|Nothing was written|"
    r"Could not open encoder|Cannot determine format of input|Error opening input|"
    r"Error while|Decode error rate|Consider increasing|Input #|Output #|Stream |Metadata:|"
    r"Duration:|frame=|video:|"
    r"ffmpeg version|built with|configuration:|lib\w+ +\d)")
_DAMAGE = re.compile(r"corrupt|invalid nal|damaged|error at mb|concealing|truncat", re.IGNORECASE)


def failure_reason(stderr: str, path: Path) -> str:
    """One line for a failed decode: ffmpeg's conclusion, then its first two specific causes.

    ffmpeg's last line is usually a generic consequence ("Conversion failed!"); the cause
    ("moov atom not found", "Invalid NAL unit size") comes earlier, from the demuxer or decoder.
    """
    lines = [_TAGS.sub("", ln).strip() for ln in stderr.splitlines() if ln[:1] not in (" ", "\t")]
    lines = [ln.replace(str(path), "<video>") for ln in lines if ln]
    # The first conclusion is the failing step's; later ones are its consequences downstream.
    conclusion = next((m.group(1) for m in map(_CONCLUSION.match, lines) if m), None)
    causes = [ln.rstrip(".!") for ln in lines if not _NOT_A_CAUSE.match(ln) and not _CONCLUSION.match(ln)]
    cause = "; ".join(dict.fromkeys(causes[:2]))
    if conclusion and cause:
        return f"{conclusion} ({cause})"
    return conclusion or cause or (lines[-1] if lines else "ffmpeg failed without a message")


def probe(path: str | Path) -> StreamInfo:
    """Size and frame rate of the first video stream; VideoDecodeError if there is none."""
    path = Path(path)
    result = subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(path)],
                            capture_output=True, text=True, errors="replace")
    for line in result.stderr.splitlines():
        match = _VIDEO_LINE.search(line)
        if not match:
            continue
        rest = match.group("rest")
        size = _SIZE.search(rest)
        if not size:
            continue
        fps_match = _FPS.search(rest)
        fps = 0.0
        if fps_match:
            fps = float(fps_match.group(1)) * (1000 if fps_match.group(2) else 1)
        rot = _ROTATION.search(result.stderr)
        return StreamInfo(int(size.group(1)), int(size.group(2)), fps,
                          int(round(float(rot.group(1)))) if rot else 0)
    if path.is_file() and path.stat().st_size == 0:
        raise VideoDecodeError("empty file")
    raise VideoDecodeError(f"no video stream ({failure_reason(result.stderr, path)})")


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The (width, height) :func:`decode_video` outputs for ``short_side`` (0 keeps the size).

    Mirrors ffmpeg's ``scale`` with ``-2``: the short side is exactly ``short_side``, the other
    is the aspect-preserving length rounded to the nearest even number (half away from zero)."""
    if short_side <= 0:
        return width, height

    def other(long: int, short: int) -> int:
        return max(2, (short_side * long + short) // (2 * short) * 2)

    if width <= height:
        return short_side, other(height, width)
    return other(width, height), short_side


class _StderrReader(threading.Thread):
    """Drains ffmpeg's stderr (so it can never block on a full pipe) and finds the output size."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines = stream, []
        self.output_size: Optional[tuple[int, int]] = None
        self.input_fps = 0.0
        self.header_done = threading.Event()

    def run(self) -> None:
        in_output = False
        for raw in iter(self.stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(line)
            if line.startswith("Output #"):
                in_output = True
            match = _VIDEO_LINE.search(line)
            if match and not in_output and not self.input_fps:
                fps = _FPS.search(match.group("rest"))
                if fps:
                    self.input_fps = float(fps.group(1)) * (1000 if fps.group(2) else 1)
            if match and in_output and self.output_size is None:
                size = _SIZE.search(match.group("rest"))
                if size:
                    self.output_size = (int(size.group(1)), int(size.group(2)))
                    self.header_done.set()
        self.header_done.set()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _short_side_filter(video, short_side: int):
    """Scale so the short side is ``short_side`` (the other side even), orientation-agnostic."""
    return video.filter("scale", w=f"if(lte(iw,ih),{short_side},-2)",
                        h=f"if(lte(iw,ih),-2,{short_side})", flags="area")


@dataclass
class DecodedVideo:
    width: int
    height: int
    source_fps: float
    frames: np.ndarray   # (T, H, W, 3) uint8
    damage: str = ""     # ffmpeg's first complaint about damaged input that still decoded, else ""


def _run_decoder(args: list[str]) -> tuple[int, _StderrReader, bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = _StderrReader(proc.stderr)
    reader.start()
    chunks: list[bytes] = []
    try:
        reader.header_done.wait()
        if reader.output_size is not None:
            assert proc.stdout is not None
            chunks = list(iter(lambda: proc.stdout.read(1 << 20), b""))
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
    return code, reader, b"".join(chunks)


def decode_video(path: str | Path, short_side: int = 0, fps: Optional[float] = None,
                 threads: int = 0, pix_fmt: str = "bgr24",
                 size: Optional[tuple[int, int]] = None) -> DecodedVideo:
    """Decode every frame of the first video stream, in decoding order, in one ffmpeg process.

    Every frame the decoder emits is passed through once (``-fps_mode passthrough``): ffmpeg
    neither duplicates nor drops frames to reach a constant rate unless ``fps`` asks it to
    resample; a video too short to reach one output frame at ``fps`` keeps its first frame.
    The output size (``size``, else the short side scaled to ``short_side``, 0 keeps it) is
    read from ffmpeg's own header, so no separate probe process is needed.

    A file cut short (an interrupted copy or recording) keeps the frames before the cut: the
    demuxer marks the cut packet corrupt and ``+discardcorrupt`` drops it, so no half-decoded
    (error-concealed) frame is stored; ``damage`` then says what ffmpeg reported. Whether
    anything is readable depends on the container: AVI stores frames in order, MP4's default
    layout keeps its index (moov) at the end, so a cut MP4 fails ("moov atom not found").
    Raises VideoDecodeError when ffmpeg fails or decodes nothing; ValueError for fps <= 0.
    """
    if fps is not None and not (fps > 0 and np.isfinite(fps)):
        # ffmpeg's own answer (exit status 234 for every video) names neither the option nor the rule.
        raise ValueError(f"fps must be a positive number (or None to keep every frame), got {fps}")
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError("file not found" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError("empty file")
    video = ffmpeg.input(str(path), threads=threads, fflags="+discardcorrupt")["v:0"]
    if fps:
        video = video.filter("fps", fps=fps)
    if size is not None:
        video = video.filter("scale", size[0], size[1], flags="area")
    elif short_side > 0:
        video = _short_side_filter(video, short_side)
    out = ffmpeg.output(video, "pipe:", format="rawvideo", pix_fmt=pix_fmt, fps_mode="passthrough")
    args = ffmpeg.compile(out, cmd=ffmpeg_binary())
    args = [args[0], "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info"] + args[1:]
    code, reader, data = _run_decoder(args)
    if code != 0:
        raise VideoDecodeError(f"{failure_reason(reader.text, path)} [ffmpeg exit status {code}]")
    if reader.output_size is None:
        raise VideoDecodeError(f"no video stream ({failure_reason(reader.text, path)})")
    width, height = reader.output_size
    n = len(data) // (width * height * 3)
    if n == 0 and fps:
        # The fps filter emits frames at k/fps rounded to the nearest input frame: a video
        # shorter than half an output period (one frame at 25 fps asked for 10 fps) gets none.
        first = decode_video(path, short_side, None, threads, pix_fmt, size)
        return DecodedVideo(first.width, first.height, first.source_fps, first.frames[:1],
                            first.damage)
    if n == 0:
        raise VideoDecodeError(f"no frames decoded ({failure_reason(reader.text, path)})")
    frames = np.frombuffer(data, np.uint8, count=n * width * height * 3).reshape(n, height, width, 3)
    damage = next((_TAGS.sub("", ln).strip() for ln in reader.lines if _DAMAGE.search(ln)), "")
    return DecodedVideo(width, height, reader.input_fps, frames, damage)


def decode_frames(path: str | Path, size: tuple[int, int], fps: Optional[float] = None,
                  threads: int = 0, pix_fmt: str = "bgr24") -> Iterator[np.ndarray]:
    """Frames resized to ``size`` (W, H), as one (T, H, W, 3) batch (see :func:`decode_video`)."""
    yield decode_video(path, fps=fps, threads=threads, pix_fmt=pix_fmt, size=size).frames


def encode_video(frames: np.ndarray, path: str | Path, fps: float, codec: str = "mpeg4",
                 quality: int = 3) -> None:
    """Encode (T, H, W, 3) BGR uint8 frames to ``path`` deterministically (bit-exact flags)."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    inp = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="bgr24", s=f"{w}x{h}", framerate=fps)
    out = ffmpeg.output(inp, str(path), vcodec=codec, pix_fmt="yuv420p", threads=1,
                        **{"q:v": quality, "fflags": "+bitexact", "flags": "+bitexact",
                           "map_metadata": -1})
    args = ffmpeg.compile(out, cmd=ffmpeg_binary(), overwrite_output=True)
    args = [args[0], "-nostdin", "-hide_banner", "-loglevel", "error"] + args[1:]
    result = subprocess.run(args, input=frames.tobytes(), capture_output=True)
    if result.returncode != 0:
        raise VideoDecodeError(f"ffmpeg could not encode {path}: "
                               f"{failure_reason(result.stderr.decode('utf-8', 'replace'), Path(path))}")
