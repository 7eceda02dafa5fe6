"""`vsslpipe extract`: decode videos with ffmpeg into one HDF5 frame store (JPEG per frame)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from vsslpipe.atomic import write_json_atomic, write_text_atomic
from vsslpipe.config import ConfigError, load_section
from vsslpipe.data.manifest import build_manifest, safe_relative
from vsslpipe.errors import DataError, VsslpipeError
from vsslpipe.video.extract import ExtractSettings, extract_videos, failures_path

from .common import ParamsOpt, WorkersOpt, echo, report_user_errors


@dataclass(frozen=True)
class ExtractConfig:
    videos: Path = Path("data/synth/videos")
    splits: Optional[Path] = Path("data/synth/ucfTrainTestlist")
    dataset: Literal["ucf101", "hmdb51", "folder"] = "ucf101"
    split: int = 1
    include_unused: bool = False
    video_list: Optional[Path] = None
    out: Path = Path("data/frames.h5")
    manifest: Path = Path("data/manifest.csv")
    metrics: Path = Path("metrics/extract.json")
    short_side: int = 128
    fps: Optional[float] = None
    jpeg_quality: int = 90
    workers: int = 2
    max_failed_fraction: float = 0.05

    def validate(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.short_side < 0 or not 0 <= self.max_failed_fraction <= 1 or self.workers < 1:
            raise ConfigError("short_side >= 0, workers >= 1, max_failed_fraction in [0, 1]")
        if self.split not in (1, 2, 3):
            raise ConfigError(f"split must be 1, 2 or 3, got {self.split}")


def _select(manifest, cfg: ExtractConfig):
    if not cfg.include_unused:
        manifest = manifest[manifest["split"] != "unused"]
    if cfg.video_list is not None:
        if not cfg.video_list.is_file():
            raise DataError(f"{cfg.video_list}: video list not found")
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


@report_user_errors
def main(
    params: ParamsOpt = Path("params.yaml"),
    videos: Annotated[Optional[Path], typer.Option(help="Video root folder [params: extract.videos].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Frame store to write (.h5).")] = None,
    splits: Annotated[Optional[Path], typer.Option(help="Folder of the official split files.")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Split-file format: ucf101, hmdb51 or folder.")] = None,
    split: Annotated[Optional[int], typer.Option(help="Official split number (1-3).")] = None,
    video_list: Annotated[Optional[Path], typer.Option(help="Only these videos (relative paths, one a line).")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Manifest CSV to write.")] = None,
    short_side: Annotated[Optional[int], typer.Option(help="Resize the short side to this (0 keeps).")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Resample to this frame rate (default: keep every frame).")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(help="JPEG quality 1-100.")] = None,
    workers: WorkersOpt = None,
    max_failed_fraction: Annotated[Optional[float], typer.Option(help="Exit 1 when more videos than this fraction fail.")] = None,
) -> None:
    """Decode every video of a dataset into an HDF5 frame store and write the manifest.

    Resumable: rerun after an interruption and finished videos are kept. Broken videos are
    listed in <out>.failures.csv. Example: vsslpipe extract --videos UCF-101 --splits
    ucfTrainTestlist --out data/ucf101_frames.h5 --short-side 128 -j 8
    """
    cfg = load_section(ExtractConfig, "extract", params, dict(
        videos=videos, out=out, splits=splits, dataset=dataset, split=split, video_list=video_list,
        manifest=manifest, short_side=short_side, fps=fps, jpeg_quality=jpeg_quality,
        workers=workers, max_failed_fraction=max_failed_fraction))
    if not cfg.videos.is_dir():
        raise DataError(f"{cfg.videos}: video folder not found")
    table = _select(build_manifest(cfg.dataset, cfg.videos, cfg.splits, cfg.split), cfg)
    if table.empty:
        raise DataError(f"{cfg.videos}: no videos selected")
    settings = ExtractSettings(cfg.short_side, cfg.fps, cfg.jpeg_quality)
    result = extract_videos(table, cfg.videos, cfg.out, settings, cfg.workers)
    write_text_atomic(cfg.manifest, table.to_csv(index=False))
    failed_fraction = len(result.failures) / len(table)
    write_json_atomic(cfg.metrics, {
        "videos": result.videos, "failed": len(result.failures), "frames_decoded": result.frames,
        "reused_from_interrupted_run": result.reused, "seconds": round(result.seconds, 2),
        "frames_per_second": round(result.frames_per_second, 1)})
    echo(f"extract: {result.videos} videos in {cfg.out} ({result.extracted} decoded, {result.reused} "
         f"resumed), {result.frames} frames in {result.seconds:.1f} s = "
         f"{result.frames_per_second:.0f} frames/s; {len(result.failures)} failed "
         f"(see {failures_path(cfg.out)})")
    for video_id, reason in result.failures[:5]:
        echo(f"  failed: {video_id}: {reason}")
    if failed_fraction > cfg.max_failed_fraction:
        raise VsslpipeError(f"{len(result.failures)} of {len(table)} videos failed "
                            f"({failed_fraction:.1%} > max_failed_fraction "
                            f"{cfg.max_failed_fraction:.1%}); see {failures_path(cfg.out)}")
