"""Shared fixtures: tiny datasets the tests encode themselves (seconds, not minutes)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vsslpipe.video.synth import SynthSpec, video_plan, write_split_files, write_video

# Tests share two cores: keep BLAS/torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_SPEC = SynthSpec(num_classes=3, groups=3, clips_per_group=1, test_groups=1, frames=10,
                      height=32, width=40, fps=25.0, seed=7)


def make_synth_dataset(root: Path, spec: SynthSpec = TINY_SPEC) -> Path:
    """Encode ``spec``'s videos in UCF101 layout under ``root`` (videos/, ucfTrainTestlist/)."""
    write_split_files(spec, root / "ucfTrainTestlist")
    for ci, cls, g, c in video_plan(spec):
        write_video((spec, root / "videos", ci, cls, g, c))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """3 classes x 3 groups x 1 clip, 10 frames of 40x32, UCF101 layout (read-only)."""
    return make_synth_dataset(tmp_path_factory.mktemp("tiny_dataset"))


@pytest.fixture(scope="session")
def tiny_frames(tiny_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """(frame store, manifest) extracted from :func:`tiny_dataset` (read-only)."""
    from vsslpipe.data.manifest import read_ucf101
    from vsslpipe.video.extract import ExtractSettings, extract_videos

    out_dir = tmp_path_factory.mktemp("tiny_frames")
    manifest = read_ucf101(tiny_dataset / "videos", tiny_dataset / "ucfTrainTestlist")
    manifest_path = out_dir / "manifest.csv"
    manifest.to_csv(manifest_path, index=False)
    store = out_dir / "frames.h5"
    extract_videos(manifest, tiny_dataset / "videos", store, ExtractSettings(short_side=0),
                   workers=1, progress=False)
    return store, manifest_path
