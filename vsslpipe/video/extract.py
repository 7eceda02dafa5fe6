"""Videos -> HDF5 frame store, in parallel, resumable, tolerant of broken files."""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from .. import __version__
from ..atomic import write_text_atomic
from ..data import h5parts
from ..data.framestore import SCHEMA, SCHEMA_VERSION, encode_jpeg, write_video_group
from ..progress import ProgressBar
from .ffmpeg import VideoDecodeError, decode_video, ffmpeg_version


@dataclass(frozen=True)
class ExtractSettings:
    short_side: int = 128          # 0 keeps the decoded size
    fps: Optional[float] = None    # None keeps every decoded frame
    jpeg_quality: int = 90

    def as_dict(self) -> dict:
        return {"short_side": self.short_side, "fps": self.fps, "jpeg_quality": self.jpeg_quality}


@dataclass
class ExtractResult:
    videos: int = 0                # videos in the store
    extracted: int = 0             # decoded in this run
    reused: int = 0                # finished parts from an interrupted run
    frames: int = 0                # frames decoded in this run
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def extract_one(task: tuple[str, str, str, ExtractSettings, int]) -> tuple[str, int, Optional[str]]:
    """Decode one video into its part file; returns (video id, frames, failure reason or None)."""
    video_id, source, scratch, settings, threads = task
    try:
        video = decode_video(source, settings.short_side, settings.fps, threads=threads)
        jpegs = [encode_jpeg(frame, settings.jpeg_quality) for frame in video.frames]
        fps = settings.fps or video.source_fps
        h5parts.write_part(Path(scratch), video_id, lambda g: write_video_group(
            g, jpegs, video.height, video.width, fps, source))
        return video_id, len(jpegs), None
    except VideoDecodeError as exc:
        return video_id, 0, str(exc)
    except OSError as exc:
        return video_id, 0, f"{exc.__class__.__name__}: {exc.strerror or exc}"


def failures_path(out: Path) -> Path:
    return out.with_name(out.stem + ".failures.csv")


def extract_videos(manifest: pd.DataFrame, videos_root: Path, out: Path, settings: ExtractSettings,
                   workers: int = 1, progress: bool = True) -> ExtractResult:
    """Extract every manifest video under ``videos_root`` into the frame store ``out``.

    Finished videos of an interrupted run (same settings) are reused; failures are returned and
    written to ``<out stem>.failures.csv``; the store holds the videos that decoded.
    """
    out = Path(out)
    start = time.perf_counter()
    scratch = h5parts.scratch_dir(out, settings.as_dict())
    h5parts.prepare_scratch(scratch)
    done = h5parts.finished_parts(scratch)
    result = ExtractResult()
    tasks, parts = [], []
    # One ffmpeg thread per worker when workers fill the cores; ffmpeg's default otherwise.
    threads = 1 if workers > 1 else 0
    for video_id, rel in zip(manifest["video_id"], manifest["path"]):
        part = h5parts.part_path(scratch, video_id)
        parts.append((video_id, part))
        if part in done:
            result.reused += 1
        else:
            tasks.append((video_id, str(Path(videos_root) / rel), str(scratch), settings, threads))

    failed: dict[str, str] = {}
    with ProgressBar(len(tasks), "extract", unit="videos", enabled=progress) as bar:
        if workers > 1 and len(tasks) > 1:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])  # workers start with the imports done
            with ctx.Pool(workers) as pool:
                outcomes = pool.imap_unordered(extract_one, tasks, chunksize=1)
                for video_id, n, reason in outcomes:
                    _record(result, failed, video_id, n, reason)
                    bar.advance(1, frames=result.frames)
        else:
            for task in tasks:
                video_id, n, reason = extract_one(task)
                _record(result, failed, video_id, n, reason)
                bar.advance(1, frames=result.frames)

    good = [(vid, part) for vid, part in parts if vid not in failed]
    root_attrs = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "settings": json.dumps(settings.as_dict(), sort_keys=True),
        "ffmpeg_version": ffmpeg_version(), "vsslpipe_version": __version__,
    }
    result.videos = h5parts.merge_parts(good, out, root_attrs)
    result.failures = sorted(failed.items())
    write_failures(failures_path(out), result.failures)
    h5parts.remove_scratch(scratch)
    result.seconds = time.perf_counter() - start
    return result


def _record(result: ExtractResult, failed: dict, video_id: str, n: int, reason: Optional[str]) -> None:
    if reason is None:
        result.extracted += 1
        result.frames += n
    else:
        failed[video_id] = reason


def write_failures(path: Path, failures: list[tuple[str, str]]) -> None:
    frame = pd.DataFrame(failures, columns=["video_id", "reason"])
    write_text_atomic(path, frame.to_csv(index=False))
