"""Videos -> frame store (a folder of shards and an index), in parallel, resumable, tolerant of
broken files.

Worker processes decode and JPEG-encode one video each; this process writes their results into
the shard of the video's chunk (:class:`vsslpipe.data.h5parts.ShardWriter`), in sorted order, so
the store does not depend on the order work finished in. A killed run loses only the chunks
being written; the rerun reuses the finished shards and gives the same store.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .. import __version__
from ..data import h5parts
from ..data.framestore import SCHEMA, SCHEMA_VERSION, encode_jpeg, write_video_group
from ..progress import ProgressBar
from .ffmpeg import VideoDecodeError, decode_video, ffmpeg_version


@dataclass(frozen=True)
class ExtractSettings:
    short_side: int = 128          # 0 keeps the decoded size
    fps: Optional[float] = None    # None keeps every decoded frame
    jpeg_quality: int = 90
    # Layout only (not in as_dict: the stored frames do not depend on it): videos per shard,
    # which is also the unit a killed run loses.
    videos_per_shard: int = h5parts.DEFAULT_VIDEOS_PER_SHARD

    def as_dict(self) -> dict:
        return {"short_side": self.short_side, "fps": self.fps, "jpeg_quality": self.jpeg_quality}


@dataclass
class ExtractResult:
    videos: int = 0                # videos in the store
    extracted: int = 0             # decoded in this run
    reused: int = 0                # videos of finished shards from an interrupted run
    frames: int = 0                # frames decoded in this run
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    store_id: str = ""

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


@dataclass
class Decoded:
    jpegs: list[np.ndarray]
    height: int
    width: int
    fps: float
    source: str


def extract_one(task: tuple[str, str, ExtractSettings, int]) -> tuple[str, object]:
    """Decode one video; returns (video id, :class:`Decoded` or the failure reason)."""
    video_id, source, settings, threads = task
    try:
        video = decode_video(source, settings.short_side, settings.fps, threads=threads)
        jpegs = [encode_jpeg(frame, settings.jpeg_quality) for frame in video.frames]
        return video_id, Decoded(jpegs, video.height, video.width,
                                 settings.fps or video.source_fps, source)
    except VideoDecodeError as exc:
        return video_id, str(exc)
    except OSError as exc:
        return video_id, f"{exc.__class__.__name__}: {exc.strerror or exc}"


def failures_path(out: Path) -> Path:
    """``<store>/failures.csv``: the videos extract (or flow) could not process, and why."""
    return Path(out) / h5parts.FAILURES_NAME


def extract_videos(manifest: pd.DataFrame, videos_root: Path, out: Path, settings: ExtractSettings,
                   workers: int = 1, progress: bool = True) -> ExtractResult:
    """Extract every manifest video under ``videos_root`` into the frame store folder ``out``.

    Finished shards of an interrupted run (same settings) are reused; failures are returned and
    written to ``<out>/failures.csv``; the store holds the videos that decoded.
    """
    out, start = h5parts.store_target(out), time.perf_counter()
    scratch = h5parts.scratch_dir(out, settings.as_dict())
    h5parts.prepare_scratch(out, scratch)
    sources = dict(zip(manifest["video_id"], manifest["path"]))
    chunks = h5parts.plan_chunks(sources, settings.videos_per_shard)
    done = h5parts.finished_shards(scratch)
    result = ExtractResult()
    # One ffmpeg thread per worker when workers fill the cores; ffmpeg's default otherwise.
    threads = 1 if workers > 1 else 0
    tasks = []
    for chunk in chunks:
        if chunk.name in done:
            result.reused += len(chunk.ids)
        else:
            tasks += [(vid, str(Path(videos_root) / sources[vid]), settings, threads)
                      for vid in chunk.ids]
    root_attrs = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "settings": json.dumps(settings.as_dict(), sort_keys=True),
        "ffmpeg_version": ffmpeg_version(), "vsslpipe_version": __version__,
    }
    writer = h5parts.ShardWriter(scratch, chunks, root_attrs)
    try:
        with ProgressBar(len(tasks), "extract", unit="videos", enabled=progress) as bar:
            if workers > 1 and len(tasks) > 1:
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload([__name__])  # workers start with the imports done
                with ctx.Pool(workers) as pool:
                    # in order: each shard is written as its chunk's results arrive
                    for outcome in pool.imap(extract_one, tasks, chunksize=1):
                        _record(writer, result, *outcome)
                        bar.advance(1, frames=result.frames)
            else:
                for task in tasks:
                    _record(writer, result, *extract_one(task))
                    bar.advance(1, frames=result.frames)
    except BaseException:
        writer.abort()
        raise
    summary = h5parts.finalise(scratch, out, chunks, root_attrs, settings.videos_per_shard)
    result.videos, result.failures, result.store_id = summary.videos, summary.failures, summary.store_id
    result.seconds = time.perf_counter() - start
    return result


def _record(writer: h5parts.ShardWriter, result: ExtractResult, video_id: str, outcome) -> None:
    if isinstance(outcome, Decoded):
        writer.add(video_id, len(outcome.jpegs), lambda g: write_video_group(
            g, outcome.jpegs, outcome.height, outcome.width, outcome.fps, outcome.source))
        result.extracted += 1
        result.frames += len(outcome.jpegs)
    else:
        writer.fail(video_id, outcome)

