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

    mini = {"scales": {"demo": {}}, "definitions": {"mini": {
            "title": "Mini", "paper": "Test paper", "metrics": ["R@1", "linear_top1"],
            "rows": [
                {"name": "uniform", "label": "uniform gap", "encoder": "cvrl_rgb",
                 "set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "uniform"},
                 "published": {"R@1": 12.5}},
                {"name": "linear", "label": "linear gap", "encoder": "cvrl_rgb",
                 "set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "linear"},
                 "published": {"R@1": 34.5, "linear_top1": 50.0}},
            ]}}}

    run_in_repo = make_dvc_repo(repo, shrink)
    (repo / "mini.yaml").write_text(yaml.safe_dump(mini))
    tables = ("--tables", "mini.yaml")

    def run(*cmd):
        result = run_in_repo(*cmd)
        assert result.returncode == 0, f"{cmd}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result

    run("git", "add", "-A")
    run("git", "commit", "-qm", "init")  # dvc exp needs a commit (and dvclive a non-empty repo)

    result = run(sys.executable, "-m", "vsslpipe.stages.cli", "tables", "run", "mini", *tables,
                 "--jobs", "2")
    # the stages both rows need ran once first, then the rows side by side
    assert "extract once for 2 rows" in result.stderr
    assert "mini-uniform-demo-s0: running" in result.stderr
    md = (repo / "results/tables/mini.md").read_text()
    assert "| uniform gap | 1 |" in md and "/ 12.5 |" in md and "/ 34.5 |" in md
    assert "`mini-linear-demo-s0`" in md and "(not run)" not in md
    # the paper ranks linear above uniform on R@1; one seed each: a sign, no verdict
    assert "| R@1 | linear gap | uniform gap | +22.0 |" in md and "| one seed |" in md
    assert (repo / "results/tables/mini.orderings.csv").is_file()
    csv = (repo / "results/tables/mini.csv").read_text().splitlines()
    assert csv[0].startswith("row,label,encoder,kind,n,seeds,R@1 mean,R@1 std,R@1 n,R@1 paper")
    assert len(csv) == 3
    assert (repo / "results/tables/mini.png").stat().st_size > 10_000
    assert not (repo / "models").exists()  # rows ran in temporary copies, workspace untouched
    assert (repo / ".vsslpipe/logs/mini-linear-demo-s0.log").is_file()
    listed = run("dvc", "exp", "list", "--name-only").stdout.split()
    assert sorted(listed) == ["mini-linear-demo-s0", "mini-uniform-demo-s0"]  # shared run removed

    again = run(sys.executable, "-m", "vsslpipe.stages.cli", "tables", "run", "mini", *tables)
    assert "mini-uniform-demo-s0: done before, reused" in again.stderr

    # A newer commit with other parameters: the earlier runs are stale, not today's results.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["linear"]["max_iter"] = 25
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git", "commit", "-qam", "more probe iterations")
    shown = run(sys.executable, "-m", "vsslpipe.stages.cli", "tables", "show", "mini", *tables)
    assert "mini-uniform-demo-s0 left out: stale (parameter linear.max_iter differs)" in shown.stderr
    assert "(not run)" in (repo / "results/tables/mini.md").read_text()
    rerun = run(sys.executable, "-m", "vsslpipe.stages.cli", "tables", "run", "mini", *tables,
                "--row", "uniform")
    assert ("mini-uniform-demo-s0: the earlier run is stale (parameter linear.max_iter differs)"
            in rerun.stderr)
    md = (repo / "results/tables/mini.md").read_text()
    assert "`mini-uniform-demo-s0`" in md and "`mini-linear-demo-s0`" not in md
