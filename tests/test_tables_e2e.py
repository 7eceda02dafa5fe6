"""A two-row demo table runs end to end as DVC experiments and renders beside published values."""
from __future__ import annotations

import sys

import pytest
import yaml
from conftest import make_dvc_repo


@pytest.mark.slow
def test_two_row_table_runs_and_renders(tmp_path):
    repo = tmp_path / "repo"

    def shrink(params: dict) -> None:
        params["synth"].update(num_classes=3, groups=4, clips_per_group=2, test_groups=1, frames=12,
                               height=32, width=40)
        params["extract"]["short_side"] = 0
        params["flow"]["tvl1"].update(nscales=2, warps=1, outer_iterations=2, inner_iterations=5)
        params["pretrain"]["defaults"].update(epochs=1, batch_size=4, size=24, clip_len=4, workers=0)
        params["export"].update(workers=1, batch_size=8)
        params["linear"].update(weight_decays=[0.01], max_iter=20)
        params["tables"]["definitions"] = {"mini": {
            "title": "Mini", "paper": "Test paper", "metrics": ["R@1", "linear_top1"],
            "rows": [
                {"name": "uniform", "label": "uniform gap", "encoder": "cvrl_rgb",
                 "set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "uniform"},
                 "published": {"R@1": 12.5}},
                {"name": "linear", "label": "linear gap", "encoder": "cvrl_rgb",
                 "set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "linear"},
                 "published": {"R@1": 34.5, "linear_top1": 50.0}},
            ]}}

    run_in_repo = make_dvc_repo(repo, shrink)

    def run(*cmd):
        result = run_in_repo(*cmd)
        assert result.returncode == 0, f"{cmd}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result

    run("git", "add", "-A")
    run("git", "commit", "-qm", "init")  # dvc exp needs a commit (and dvclive a non-empty repo)

    result = run(sys.executable, "-m", "vsslpipe.stages.cli", "tables", "run", "mini")
    assert "mini-uniform-demo: running" in result.stderr
    md = (repo / "results/tables/mini.md").read_text()
    assert "| uniform gap |" in md and "/ 12.5 |" in md and "/ 34.5 |" in md
    assert "`mini-linear-demo`" in md and "(not run)" not in md
    csv = (repo / "results/tables/mini.csv").read_text().splitlines()
    assert csv[0].startswith("row,label,encoder,R@1 (ours),R@1 (paper)") and len(csv) == 3
    assert not (repo / "models").exists()  # rows ran in temporary copies, workspace untouched

    again = run(sys.executable, "-m", "vsslpipe.stages.cli", "tables", "run", "mini")
    assert "mini-uniform-demo: done before, reused" in again.stderr

    # A newer commit with other parameters: the earlier runs are stale, not today's results.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["linear"]["max_iter"] = 25
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git", "commit", "-qam", "more probe iterations")
    shown = run(sys.executable, "-m", "vsslpipe.stages.cli", "tables", "show", "mini")
    assert "mini-uniform-demo left out: stale (parameter linear.max_iter differs)" in shown.stderr
    assert "(not run)" in (repo / "results/tables/mini.md").read_text()
    rerun = run(sys.executable, "-m", "vsslpipe.stages.cli", "tables", "run", "mini", "--row", "uniform")
    assert "mini-uniform-demo: the earlier run is stale (parameter linear.max_iter differs)" in rerun.stderr
    md = (repo / "results/tables/mini.md").read_text()
    assert "`mini-uniform-demo`" in md and "`mini-linear-demo`" not in md
