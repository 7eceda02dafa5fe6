"""`vsslpipe synth`: write the built-in motion dataset as real videos in UCF101's layout."""
from __future__ import annotations

import multiprocessing as mp
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from vsslpipe.atomic import temp_name
from vsslpipe.config import ConfigError, load_section
from vsslpipe.progress import track
from vsslpipe.video.synth import CLASSES, SynthSpec, video_plan, write_split_files, write_video

from .common import ParamsOpt, WorkersOpt, echo, report_user_errors


@dataclass(frozen=True)
class SynthConfig:
    out: Path = Path("data/synth")
    num_classes: int = 10
    groups: int = 10
    clips_per_group: int = 3
    test_groups: int = 6
    frames: int = 32
    height: int = 48
    width: int = 64
    fps: float = 25.0
    seed: int = 0
    texture_contrast: float = 1.0
    class_scene_p: float = 0.8
    workers: int = 2

    def validate(self) -> None:
        if not 2 <= self.num_classes <= len(CLASSES):
            raise ConfigError(f"num_classes must be in 2..{len(CLASSES)}, got {self.num_classes}")
        if not 1 <= self.test_groups < self.groups:
            raise ConfigError("test_groups must be at least 1 and fewer than groups")
        if self.frames < 2 or self.height < 16 or self.width < 16 or self.height % 2 or self.width % 2:
            raise ConfigError("frames >= 2, height and width even and >= 16")
        if not 0.0 <= self.class_scene_p <= 1.0:
            raise ConfigError(f"class_scene_p must be in [0, 1], got {self.class_scene_p}")

    def spec(self) -> SynthSpec:
        return SynthSpec(self.num_classes, self.groups, self.clips_per_group, self.test_groups,
                         self.frames, self.height, self.width, self.fps, self.seed,
                         self.texture_contrast, self.class_scene_p)


@report_user_errors
def main(
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[Optional[Path], typer.Option(help="Dataset folder to write [params: synth.out].")] = None,
    num_classes: Annotated[Optional[int], typer.Option(help="Motion classes.")] = None,
    groups: Annotated[Optional[int], typer.Option(help="Groups (appearance sources) per class.")] = None,
    frames: Annotated[Optional[int], typer.Option(help="Frames per video.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    class_scene_p: Annotated[Optional[float], typer.Option(
        help="Scene bias: chance a group's background has its class's stripe layout (0: motion only).")] = None,
    workers: WorkersOpt = None,
) -> None:
    """Write the built-in synthetic dataset: motion-defined classes (with a scene bias) as AVI videos.

    Layout: OUT/videos/<Class>/v_<Class>_gGG_cCC.avi and OUT/ucfTrainTestlist/ (UCF101 formats).
    Example: vsslpipe synth --out data/synth --num-classes 10
    """
    cfg = load_section(SynthConfig, "synth", params, dict(
        out=out, num_classes=num_classes, groups=groups, frames=frames, seed=seed,
        class_scene_p=class_scene_p, workers=workers))
    spec = cfg.spec()
    tmp = temp_name(cfg.out)
    tasks = [(spec, tmp / "videos", ci, cls, g, c) for ci, cls, g, c in video_plan(spec)]
    try:
        write_split_files(spec, tmp / "ucfTrainTestlist")
        with mp.get_context("forkserver").Pool(cfg.workers) as pool:
            for _ in track(pool.imap_unordered(write_video, tasks), len(tasks), "synth", "videos"):
                pass
        if cfg.out.exists():
            shutil.rmtree(cfg.out)
        tmp.rename(cfg.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo(f"synth: {len(tasks)} videos, {spec.num_classes} classes, {spec.frames} frames of "
         f"{spec.width}x{spec.height} -> {cfg.out}")
