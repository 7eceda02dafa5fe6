"""`dvc repro` in a fresh git repo: synth -> extract runs, and a second repro is a no-op."""
from __future__ import annotations

import pytest
import yaml
from conftest import make_dvc_repo


@pytest.mark.slow
def test_dvc_repro_extract_then_noop(tmp_path):
    repo = tmp_path / "repo"

    def shrink(params: dict) -> None:
        params["synth"].update(num_classes=3, groups=3, clips_per_group=1, test_groups=1, frames=8)

    run = make_dvc_repo(repo, shrink)
    first = run("dvc", "repro", "extract")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (repo / "data/frames/index.h5").is_file() and (repo / "dvc.lock").is_file()
    second = run("dvc", "repro", "extract")
    assert second.returncode == 0
    # Only the always-run listing of the video folder runs (it rewrites the same listing, so
    # extract, which depends on it, is skipped).
    ran = [line for line in second.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'dataset_listing':"], second.stdout
    assert "Stage 'extract' didn't change, skipping" in second.stdout
    # Changing a parameter of extract re-runs extract only.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["extract"]["jpeg_quality"] = 80
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run("dvc", "repro", "extract")
    assert "Running stage 'extract'" in third.stdout and "Running stage 'synth'" not in third.stdout
