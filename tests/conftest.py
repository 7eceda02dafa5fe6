"""Shared fixtures: tiny datasets the tests encode themselves (seconds, not minutes)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

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


ROOT = Path(__file__).resolve().parents[1]


def make_dvc_repo(repo: Path, edit_params: Callable[[dict], None]) -> Callable[..., subprocess.CompletedProcess]:
    """A fresh git + DVC project in ``repo`` with this checkout's pipeline and code and the
    params ``edit_params`` shrinks; returns ``run(*cmd)`` that runs a command inside it."""
    repo.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("vsslpipe", "stages"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit_params(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*cmd) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)

    for cmd in (("git", "init", "-q"), ("dvc", "init", "-q")):
        result = run(*cmd)
        assert result.returncode == 0, result.stdout + result.stderr
    return run
