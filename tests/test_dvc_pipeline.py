"""`dvc repro` in a fresh git repo: synth -> extract runs, and a second repro is a no-op."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dvc_repro_extract_then_noop(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("vsslpipe", "stages"):
        shutil.copytree(ROOT / folder, repo / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"].update(num_classes=3, groups=3, clips_per_group=1, test_groups=1, frames=8)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*cmd):
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)

    assert run("git", "init", "-q").returncode == 0
    assert run("dvc", "init", "-q").returncode == 0
    first = run("dvc", "repro", "extract")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (repo / "data/frames.h5").is_file() and (repo / "dvc.lock").is_file()
    second = run("dvc", "repro", "extract")
    assert second.returncode == 0
    assert "didn't change, skipping" in second.stdout and "Running stage" not in second.stdout
    # Changing a parameter of extract re-runs extract only.
    params["extract"]["jpeg_quality"] = 80
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run("dvc", "repro", "extract")
    assert "Running stage 'extract'" in third.stdout and "Running stage 'synth'" not in third.stdout
