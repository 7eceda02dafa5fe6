"""`vsslpipe extract`: decode videos with ffmpeg into an HDF5 frame store (JPEG per frame)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from vsslpipe.atomic import write_json_atomic, write_text_atomic
from vsslpipe.config import check, load_params, load_section, origin_of
from vsslpipe.data.dataset_config import DataConfig
from vsslpipe.data.manifest import build_manifest, dataset_listing, safe_relative
from vsslpipe.data.usable import STATUS_FAILED, STATUS_OK
from vsslpipe.errors import DataError, VsslpipeError

from .common import ParamsOpt, echo, report_user_errors, shipped, workers_opt


@dataclass(frozen=True)
class ExtractConfig:
    videos: Path = Path("data/synth/videos")
    splits: Optional[Path] = Path("data/synth/ucfTrainTestlist")
    dataset: Literal["ucf101", "hmdb51", "folder"] = "ucf101"
    split: int = 1
    include_unused: bool = False
    video_list: Optional[Path] = None
    metrics: Path = Path("metrics/extract.json")
    short_side: int = 48
    fps: Optional[float] = None
    jpeg_quality: int = 90
    workers: int = 2
    videos_per_shard: int = 100      # store layout: videos per shard file (a kill loses at most one)

    def validate(self) -> None:
        check(1 <= self.jpeg_quality <= 100, "jpeg_quality",
              f"must be in 1..100, got {self.jpeg_quality}")
        check(self.short_side >= 0, "short_side", f"must be >= 0 (0 keeps the size), got {self.short_side}")
        check(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        check(self.videos_per_shard >= 1, "videos_per_shard", f"must be >= 1, got {self.videos_per_shard}")
        check(self.split in (1, 2, 3), "split", f"must be 1, 2 or 3, got {self.split}")
        check(self.fps is None or self.fps > 0, "fps",
              f"must be > 0 (or null to keep every frame), got {self.fps:g}" if self.fps is not None else "")


def _select(manifest, cfg: ExtractConfig):
    if not cfg.include_unused:
        manifest = manifest[manifest["split"] != "unused"]
    if cfg.video_list is not None:
        where = origin_of(cfg, "video_list")
        if not cfg.video_list.is_file():
            raise DataError(f"{where}: {cfg.video_list}: video list not found")
        wanted = set()
        for n, line in enumerate(cfg.video_list.read_text().splitlines(), 1):
            if line.strip():
                rel = safe_relative(line.strip().split()[0], f"{cfg.video_list}:{n}")
                wanted.add(str(rel.with_suffix("")))
        unknown = wanted - set(manifest["video_id"])
        if unknown:
            raise DataError(f"{cfg.video_list}: {len(unknown)} video(s) not in the dataset's "
                            f"split files, e.g. {sorted(unknown)[0]!r}")
        manifest = manifest[manifest["video_id"].isin(wanted)]
    return manifest.reset_index(drop=True)


E, D = ExtractConfig, DataConfig


@report_user_errors
def main(
    params: ParamsOpt = None,
    videos: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Video root folder. {shipped(E, 'videos', 'extract')}")] = None,
    splits: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Folder of the official split files. {shipped(E, 'splits', 'extract')}")] = None,
    dataset: Annotated[Optional[str], typer.Option(show_default=False, help=f"Split-file format: ucf101, hmdb51 or folder. {shipped(E, 'dataset', 'extract')}")] = None,
    split: Annotated[Optional[int], typer.Option(show_default=False, help=f"Official split number (1-3). {shipped(E, 'split', 'extract')}")] = None,
    video_list: Annotated[Optional[Path], typer.Option(show_default=False, help="Only these videos (relative paths, one a line).")] = None,
    out: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Frame store to write (a folder). {shipped(D, 'frames', 'data')}")] = None,
    manifest: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Manifest CSV to write. {shipped(D, 'manifest', 'data')}")] = None,
    metrics: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Metrics JSON to write. {shipped(E, 'metrics', 'extract')}")] = None,
    short_side: Annotated[Optional[int], typer.Option(show_default=False, help=f"Resize the short side to this (0 keeps). {shipped(E, 'short_side', 'extract')}")] = None,
    fps: Annotated[Optional[float], typer.Option(show_default=False, help="Resample to this frame rate [default: keep every frame; params: extract.fps].")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(show_default=False, help=f"JPEG quality 1-100. {shipped(E, 'jpeg_quality', 'extract')}")] = None,
    workers: Annotated[Optional[int], workers_opt(E, "extract")] = None,
    max_failed_fraction: Annotated[Optional[float], typer.Option(show_default=False, help=f"Exit 1 when more videos than this fraction fail. {shipped(D, 'max_failed_fraction', 'data')}")] = None,
    record_listing: Annotated[Optional[Path], typer.Option(help="Only write a listing of the video and split folders (path, size, time) to this JSON (a DVC dependency: cheaper than hashing the videos).")] = None,
) -> None:
    """Decode every video of a dataset into an HDF5 frame store and write the manifest.

    Resumable: rerun after an interruption and finished videos are kept. Videos that cannot be
    decoded are listed in <out>/failures.csv and marked `status: failed` in the manifest; later
    stages leave them out and count them. Example: vsslpipe extract --videos UCF-101 --splits
    ucfTrainTestlist --out data/ucf101_frames --short-side 128 -j 8
    """
    from vsslpipe.video.extract import ExtractSettings, extract_videos, failures_path

    loaded = load_params(params)
    cfg = load_section(ExtractConfig, "extract", loaded, dict(
        videos=videos, splits=splits, dataset=dataset, split=split, video_list=video_list,
        metrics=metrics, short_side=short_side, fps=fps, jpeg_quality=jpeg_quality, workers=workers))
    data = load_section(DataConfig, "data", loaded, dict(
        frames=out, manifest=manifest, max_failed_fraction=max_failed_fraction),
        options={"frames": "--out"})
    if not cfg.videos.is_dir():
        raise DataError(f"{origin_of(cfg, 'videos')}: {cfg.videos}: video folder not found")
    if record_listing is not None:
        listing = dataset_listing(cfg.videos, cfg.splits, Path(os.environ.get("DVC_ROOT", ".")))
        write_text_atomic(record_listing, json.dumps(listing, indent=0) + "\n")
        echo(f"extract: listed {len(listing['files'])} files of {cfg.videos} in {record_listing}")
        return
    if cfg.dataset != "folder" and (cfg.splits is None or not cfg.splits.is_dir()):
        raise DataError(f"{origin_of(cfg, 'splits')}: {cfg.splits}: folder of split files not found")
    table = _select(build_manifest(cfg.dataset, cfg.videos, cfg.splits, cfg.split), cfg)
    if table.empty:
        raise DataError(f"{origin_of(cfg, 'videos')}: {cfg.videos}: no videos selected")
    settings = ExtractSettings(cfg.short_side, cfg.fps, cfg.jpeg_quality, cfg.videos_per_shard)
    result = extract_videos(table, cfg.videos, data.frames, settings, cfg.workers)
    failed = dict(result.failures)
    table["status"] = [STATUS_FAILED if v in failed else STATUS_OK for v in table["video_id"]]
    write_text_atomic(data.manifest, table.to_csv(index=False))
    failed_fraction = len(failed) / len(table)
    see = failures_path(data.frames)
    write_json_atomic(cfg.metrics, {
        "videos": result.videos, "failed": len(failed), "failures_file": str(see),
        "frames_decoded": result.frames, "reused_from_interrupted_run": result.reused,
        "seconds": round(result.seconds, 2), "frames_per_second": round(result.frames_per_second, 1)})
    echo(f"extract: {result.videos} videos in {data.frames} ({result.extracted} decoded, "
         f"{result.reused} resumed), {result.frames} frames in {result.seconds:.1f} s = "
         f"{result.frames_per_second:.0f} frames/s; {len(failed)} failed (see {see}); "
         f"manifest {data.manifest}")
    for video_id, reason in result.failures[:5]:
        echo(f"  failed: {video_id}: {reason}")
    if failed_fraction > data.max_failed_fraction:
        raise VsslpipeError(f"{len(failed)} of {len(table)} videos failed ({failed_fraction:.1%} "
                            f"> {origin_of(data, 'max_failed_fraction')} "
                            f"{data.max_failed_fraction:.1%}); see {see}")
