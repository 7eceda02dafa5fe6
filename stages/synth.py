"""`vsslpipe synth`: write the built-in motion dataset as real videos in UCF101's layout."""
from __future__ import annotations

import multiprocessing as mp
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from vsslpipe.atomic import temp_name
from vsslpipe.config import check, load_section
from vsslpipe.progress import track
from vsslpipe.video.synth import CLASSES, SynthSpec, video_plan, write_split_files, write_video

from .common import ParamsOpt, echo, report_user_errors, shipped, workers_opt


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
        check(2 <= self.num_classes <= len(CLASSES), "num_classes",
              f"must be in 2..{len(CLASSES)}, got {self.num_classes}")
        check(1 <= self.test_groups < self.groups, "test_groups",
              f"must be at least 1 and fewer than groups ({self.groups}), got {self.test_groups}")
        check(self.frames >= 2, "frames", f"must be >= 2, got {self.frames}")
        for name in ("height", "width"):
            value = getattr(self, name)
            check(value >= 16 and value % 2 == 0, name, f"must be even and >= 16, got {value}")
        check(0.0 <= self.class_scene_p <= 1.0, "class_scene_p",
              f"must be in [0, 1], got {self.class_scene_p:g}")
        check(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")

    def spec(self) -> SynthSpec:
        return SynthSpec(self.num_classes, self.groups, self.clips_per_group, self.test_groups,
                         self.frames, self.height, self.width, self.fps, self.seed,
                         self.texture_contrast, self.class_scene_p)


@report_user_errors
def main(
    params: ParamsOpt = None,
    out: Annotated[Optional[Path], typer.Option(show_default=False, help=f"Dataset folder to write. {shipped(SynthConfig, 'out', 'synth')}")] = None,
    num_classes: Annotated[Optional[int], typer.Option(show_default=False, help=f"Motion classes. {shipped(SynthConfig, 'num_classes', 'synth')}")] = None,
    groups: Annotated[Optional[int], typer.Option(show_default=False, help=f"Groups (appearance sources) per class. {shipped(SynthConfig, 'groups', 'synth')}")] = None,
    clips_per_group: Annotated[Optional[int], typer.Option(show_default=False, help=f"Clips per group. {shipped(SynthConfig, 'clips_per_group', 'synth')}")] = None,
    test_groups: Annotated[Optional[int], typer.Option(show_default=False, help=f"Groups 1..N of each class form the test split. {shipped(SynthConfig, 'test_groups', 'synth')}")] = None,
    frames: Annotated[Optional[int], typer.Option(show_default=False, help=f"Frames per video. {shipped(SynthConfig, 'frames', 'synth')}")] = None,
    height: Annotated[Optional[int], typer.Option(show_default=False, help=f"Frame height (even). {shipped(SynthConfig, 'height', 'synth')}")] = None,
    width: Annotated[Optional[int], typer.Option(show_default=False, help=f"Frame width (even). {shipped(SynthConfig, 'width', 'synth')}")] = None,
    seed: Annotated[Optional[int], typer.Option(show_default=False, help=f"Random seed. {shipped(SynthConfig, 'seed', 'synth')}")] = None,
    class_scene_p: Annotated[Optional[float], typer.Option(show_default=False,
        help=f"Scene bias: chance a group's background has its class's stripe layout (0: motion only). {shipped(SynthConfig, 'class_scene_p', 'synth')}")] = None,
    workers: Annotated[Optional[int], workers_opt(SynthConfig, "synth")] = None,
) -> None:
    """Write the built-in synthetic dataset: motion-defined classes (with a scene bias) as AVI videos.

    Layout: OUT/videos/<Class>/v_<Class>_gGG_cCC.avi and OUT/ucfTrainTestlist/ (UCF101 formats).
    Example: vsslpipe synth --out data/synth --num-classes 10
    """
    cfg = load_section(SynthConfig, "synth", params, dict(
        out=out, num_classes=num_classes, groups=groups, clips_per_group=clips_per_group,
        test_groups=test_groups, frames=frames, height=height,
        width=width, seed=seed, class_scene_p=class_scene_p, workers=workers))
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
