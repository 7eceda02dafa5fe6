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
import tempfile
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


def decode_frames(path: str | Path, size: tuple[int, int], fps: Optional[float] = None,
                  threads: int = 0, pix_fmt: str = "bgr24",
                  chunk_frames: int = 32) -> Iterator[np.ndarray]:
    """Yield batches of decoded frames, shape (n, H, W, 3) uint8, in decoding order.

    Every frame the decoder emits is passed through once (``-fps_mode passthrough``): ffmpeg
    neither duplicates nor drops frames to reach a constant rate unless ``fps`` asks it to
    resample. Raises VideoDecodeError when ffmpeg fails or decodes nothing.
    """
    path = Path(path)
    width, height = size
    stream = ffmpeg.input(str(path), threads=threads)
    video = stream.video
    if fps:
        video = video.filter("fps", fps=fps)
    video = video.filter("scale", width, height, flags="area")
    out = ffmpeg.output(video, "pipe:", format="rawvideo", pix_fmt=pix_fmt, fps_mode="passthrough")
    args = ffmpeg.compile(out, cmd=ffmpeg_binary())
    args = [args[0], "-nostdin", "-hide_banner", "-loglevel", "error"] + args[1:]
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        total = 0
        try:
            assert proc.stdout is not None
            while True:
                buf = proc.stdout.read(frame_bytes * chunk_frames)
                if not buf:
                    break
                n = len(buf) // frame_bytes
                if n:
                    total += n
                    yield np.frombuffer(buf[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)
                if len(buf) % frame_bytes:
                    break  # a truncated last frame: ffmpeg died mid-write
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if code != 0:
        raise VideoDecodeError(f"ffmpeg exit status {code}: {_last_error(stderr, path)}")
    if total == 0:
        raise VideoDecodeError(f"no frames decoded ({_last_error(stderr, path) if stderr.strip() else 'empty stream'})")


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
