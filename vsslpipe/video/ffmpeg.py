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


def _last_error(stderr: str, path: Path) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("ffmpeg version", "built with", "configuration:", "lib"))]
    reason = useful[-1] if useful else "ffmpeg failed without a message"
    return reason.replace(str(path), "<video>")


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
    raise VideoDecodeError(f"no video stream ({_last_error(result.stderr, path)})")


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side scaled to ``short_side`` (0 keeps the size); even."""
    if short_side <= 0:
        return width, height
    scale = short_side / min(width, height)
    w, h = round(width * scale), round(height * scale)
    return max(2, w - w % 2), max(2, h - h % 2)


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


def decode_video(path: str | Path, short_side: int = 0, fps: Optional[float] = None,
                 threads: int = 0, pix_fmt: str = "bgr24",
                 size: Optional[tuple[int, int]] = None) -> DecodedVideo:
    """Decode every frame of the first video stream, in decoding order, in one ffmpeg process.

    Every frame the decoder emits is passed through once (``-fps_mode passthrough``): ffmpeg
    neither duplicates nor drops frames to reach a constant rate unless ``fps`` asks it to
    resample. The output size (``size``, else the short side scaled to ``short_side``, 0 keeps
    it) is read from ffmpeg's own header, so no separate probe process is needed.
    Raises VideoDecodeError when ffmpeg fails or decodes nothing.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise VideoDecodeError("empty file")
    video = ffmpeg.input(str(path), threads=threads).video
    if fps:
        video = video.filter("fps", fps=fps)
    if size is not None:
        video = video.filter("scale", size[0], size[1], flags="area")
    elif short_side > 0:
        video = _short_side_filter(video, short_side)
    out = ffmpeg.output(video, "pipe:", format="rawvideo", pix_fmt=pix_fmt, fps_mode="passthrough")
    args = ffmpeg.compile(out, cmd=ffmpeg_binary())
    args = [args[0], "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info"] + args[1:]
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
    if code != 0:
        raise VideoDecodeError(f"ffmpeg exit status {code}: {_last_error(reader.text, path)}")
    if reader.output_size is None:
        raise VideoDecodeError(f"no video stream ({_last_error(reader.text, path)})")
    width, height = reader.output_size
    data = b"".join(chunks)
    n = len(data) // (width * height * 3)
    if n == 0:
        raise VideoDecodeError("no frames decoded")
    frames = np.frombuffer(data, np.uint8, count=n * width * height * 3).reshape(n, height, width, 3)
    return DecodedVideo(width, height, reader.input_fps, frames)


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
                               f"{_last_error(result.stderr.decode('utf-8', 'replace'), Path(path))}")
