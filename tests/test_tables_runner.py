"""The GPU-node runner: which stages rows share (on a small stage graph), and each row's
environment (CUDA_VISIBLE_DEVICES, VSSLPIPE_SCRATCH) and failure report, via a fake command."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vsslpipe.errors import ConfigError
from vsslpipe.tables.parallel import Task, last_error_line, parse_gpus, run_tasks
from vsslpipe.tables.stagegraph import StageInfo, common_overrides, needed, shared_runs, touches


def _dag() -> dict[str, StageInfo]:
    """synth -> listing -> extract -> flow; pretrain@a (frames), pretrain@b (flow); an init pair
    feeding a co-training; export per encoder; data.frames interpolated into extract's paths."""
    s = {}

    def add(name, params=(), up=(), always=False):
        s[name] = StageInfo(name, tuple(params), False, frozenset(up), always)

    add("synth", ["synth"])
    add("listing", ["extract.videos"], ["synth"], always=True)
    add("extract", ["extract", "data.frames"], ["listing"])
    add("flow", ["flow", "data.frames"], ["extract"])
    add("pretrain@a", ["pretrain.defaults", "pretrain.experiments.a"], ["extract"])
    add("pretrain@b", ["pretrain.defaults", "pretrain.experiments.b"], ["flow"])
    add("init@rgb", ["pretrain.defaults", "pretrain.experiments.init_rgb"], ["extract"])
    add("init@flow", ["pretrain.defaults", "pretrain.experiments.init_flow"], ["flow"])
    add("cotrain", ["pretrain.defaults", "pretrain.experiments.cotrain"], ["init@rgb", "init@flow"])
    for enc, up in (("a", "pretrain@a"), ("b", "pretrain@b"), ("co", "cotrain")):
        add(f"export@{enc}", ["export"], [up])
        add(f"retrieve@{enc}", ["retrieve"], [f"export@{enc}"])
    return s


def test_touches_and_needed():
    assert touches("pretrain.experiments.a.lr", "pretrain.experiments.a")
    assert touches("data", "data.frames") and touches("data.frames", "data.frames")
    assert not touches("pretrain.experiments.ab", "pretrain.experiments.a")
    order = needed(_dag(), ["retrieve@co"])
    assert set(order) == {"synth", "listing", "extract", "flow", "init@rgb", "init@flow",
                          "cotrain", "export@co", "retrieve@co"}
    assert order.index("extract") < order.index("flow") < order.index("init@flow") < order.index("cotrain")


def test_shared_stages_of_rows_that_differ_in_one_experiment():
    dag = _dag()
    jobs = [(["retrieve@a"], {"extract.short_side": 128, "pretrain.experiments.a.gap": g})
            for g in ("uniform", "linear", "power")]
    waves = shared_runs(dag, jobs)
    assert len(waves) == 1 and len(waves[0]) == 1
    run = waves[0][0]
    assert run.jobs == (0, 1, 2) and run.stages == ("synth", "listing", "extract")
    assert run.targets == ("extract",) and run.overrides == {"extract.short_side": 128}
    # a key every row sets differently that reaches extract's paths: nothing is shared
    moved = [(["retrieve@a"], {"data.frames": f"data/f{i}"}) for i in range(2)]
    assert [r.stages for w in shared_runs(dag, moved) for r in w] == [("synth", "listing")]


def test_shared_groups_per_seed_and_for_rows_of_one_cotraining():
    """Seeds split the initialisations by seed; the two co-training rows of one seed share that
    seed's initialisations; waves go from larger groups to smaller ones."""
    dag = _dag()
    jobs = []
    for seed in (0, 1):
        for ltcl in (False, True):
            jobs.append((["retrieve@co"], {"pretrain.experiments.cotrain.ltcl": ltcl,
                                           "pretrain.defaults.seed": seed}))
    jobs.append((["retrieve@a"], {"pretrain.defaults.seed": 0}))
    waves = shared_runs(dag, jobs)
    sizes = [[len(r.jobs) for r in w] for w in waves]
    assert sizes == [[5], [4], [2, 2]]
    assert waves[0][0].stages == ("synth", "listing", "extract")
    assert waves[1][0].stages == ("flow",)
    per_seed = {r.overrides.get("pretrain.defaults.seed"): r for r in waves[2]}
    assert set(per_seed) == {0, 1}
    assert set(per_seed[1].stages) == {"init@rgb", "init@flow"} and per_seed[1].jobs == (2, 3)
    assert set(per_seed[0].targets) == {"init@rgb", "init@flow"}
    assert "pretrain.experiments.cotrain.ltcl" not in per_seed[0].overrides


def test_common_overrides_keep_equal_values_only():
    sets = [{"a": 1, "b": {}, "b.c": 2, "d": 1}, {"a": 1, "b": {}, "b.c": 3}]
    assert common_overrides(sets) == {"a": 1, "b": {}}


FAKE = r"""
import json, os, sys, time
name, out = sys.argv[1], sys.argv[2]
start = time.time()
time.sleep(0.3)
record = {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "scratch": os.environ.get("VSSLPIPE_SCRATCH"),
          "start": start, "end": time.time(), "cwd": os.getcwd()}
open(os.path.join(out, name + ".json"), "w").write(json.dumps(record))
if name == "bad":
    print("some progress")
    print("ERROR: failed to reproduce 'pretrain@x': out of memory", file=sys.stderr)
    sys.exit(1)
"""


def test_rows_get_one_gpu_each_and_the_project_scratch(tmp_path):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    out = tmp_path / "out"
    out.mkdir()
    names = ["r0", "r1", "bad", "r3", "r4"]
    tasks = [Task(n, [sys.executable, str(script), n, str(out)]) for n in names]
    lines = []
    outcomes = run_tasks(tasks, tmp_path, gpus=["3", "5"], log=lines.append)
    assert [o.name for o in outcomes] == names
    assert [o.returncode != 0 for o in outcomes] == [False, False, True, False, False]
    bad = outcomes[2]
    assert bad.error == "ERROR: failed to reproduce 'pretrain@x': out of memory"
    assert "some progress" in bad.log.read_text() and bad.log.parent == tmp_path / ".vsslpipe" / "logs"
    records = {n: json.loads((out / f"{n}.json").read_text()) for n in names}
    assert {r["gpu"] for r in records.values()} == {"3", "5"}
    assert all(r["scratch"] == str(tmp_path.resolve() / ".vsslpipe" / "scratch") for r in records.values())
    assert all(Path(r["cwd"]).resolve() == tmp_path.resolve() for r in records.values())
    for gpu in ("3", "5"):      # never two rows on one GPU at once
        spans = sorted((r["start"], r["end"]) for r in records.values() if r["gpu"] == gpu)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert any("FAILED: ERROR: failed to reproduce" in line for line in lines)


def test_cpu_rows_without_gpus_keep_the_environment(tmp_path, monkeypatch):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    out = tmp_path / "out"
    out.mkdir()
    outcomes = run_tasks([Task("r0", [sys.executable, str(script), "r0", str(out)]),
                          Task("gone", ["/nonexistent/cmd"])], tmp_path, jobs=2, log=lambda _: None)
    assert json.loads((out / "r0.json").read_text())["gpu"] == "7"
    assert outcomes[0].returncode == 0 and outcomes[1].returncode == 127
    assert outcomes[1].error.startswith("/nonexistent/cmd:")


def test_gpu_option_and_error_lines():
    assert parse_gpus("0, 1,3") == ["0", "1", "3"] and parse_gpus(None) is None
    for bad in ("", "0,0", "a,b", "cuda:1"):
        with pytest.raises(ConfigError, match="--gpus"):
            parse_gpus(bad)
    assert last_error_line("a\nerror: bad value\nfinal words\n") == "error: bad value"
    assert last_error_line("x\ny\n") == "y" and last_error_line("") == "(no output)"
    dvc = ("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
           "AttributeError: 'FrameStore' object has no attribute 'n'\n"
           "ERROR: failed to reproduce 'pretrain@cvrl_rgb': failed to run: vsslpipe pretrain\n")
    assert last_error_line(dvc) == "pretrain@cvrl_rgb: AttributeError: 'FrameStore' object has no attribute 'n'"
    assert last_error_line("ERROR: unexpected error - x\n") == "ERROR: unexpected error - x"


def _mini_jobs():
    from vsslpipe.tables.definitions import RowDef, TableDef
    from vsslpipe.tables.seeds import Job

    rows = [RowDef("a", "cvrl_rgb"), RowDef("b", "cvrl_rgb"), RowDef("c", "cvrl_flow")]
    floor = RowDef("floor_a", "random_tiny3d_rgb", floor=True)
    table = TableDef("t", "T", "P", ["R@1"], rows, floors=[floor])
    return [Job(table, r, "demo", 0, {"x.y": i}) for i, r in enumerate(rows + [floor])]


def test_failed_shared_stages_block_only_their_rows(monkeypatch):
    """A shared run that fails marks its rows failed (named, with its error); the other rows
    run, floors after the rows; the report lists every failure."""
    from vsslpipe.tables import runner
    from vsslpipe.tables.parallel import Outcome

    jobs = _mini_jobs()
    params = {"evaluate": {"rgb": {"cvrl_rgb": {}, "random_tiny3d_rgb": {}}, "flow": {"cvrl_flow": {}}}}
    calls = []
    monkeypatch.setattr(runner, "existing_experiments", lambda repo: {})
    monkeypatch.setattr(runner, "_run", lambda cmd, cwd, check=True: calls.append(("_run", cmd)))
    monkeypatch.setattr(runner, "shared_tasks", lambda repo, js, p, log: [[
        (Task("t-shared", ["dvc", "exp", "run", "extract"]), [jobs[0], jobs[1]])]])

    def fake_run_tasks(tasks, root, gpus, n, log):
        calls.append(("run_tasks", [t.name for t in tasks]))
        return [Outcome(t.name, 1 if t.name in ("t-shared", "t-c-demo-s0") else 0,
                        "error: boom" if t.name in ("t-shared", "t-c-demo-s0") else "")
                for t in tasks]

    monkeypatch.setattr(runner, "run_tasks", fake_run_tasks)
    report = runner.run_jobs(Path("."), jobs, params, lambda job: {}, gpus=["0", "1"], log=lambda _: None)
    assert [c for c in calls if c[0] == "run_tasks"] == [
        ("run_tasks", ["t-shared"]), ("run_tasks", ["t-c-demo-s0"]), ("run_tasks", ["t-floor-a-demo-s0"])]
    assert report.ran == ["t-floor-a-demo-s0"]
    assert report.failed == [("t-c-demo-s0", "error: boom"),
                             ("t-a-demo-s0", "shared stages failed (t-shared): error: boom"),
                             ("t-b-demo-s0", "shared stages failed (t-shared): error: boom")]
    assert not any(c[0] == "_run" and "remove" in c[1] for c in calls)   # kept: it failed


def test_cli_ends_with_one_line_per_failed_row(tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from vsslpipe.stages.cli import app
    from vsslpipe.tables import runner

    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", tmp_path / "params.yaml")
    seen = {}

    def fake_run_jobs(repo, jobs, params, expected, queue, force, gpus, n_jobs, log):
        seen.update(names=[j.name for j in jobs], gpus=gpus)
        return runner.RunReport(ran=[jobs[0].name], failed=[(jobs[1].name, "error: out of memory")])

    monkeypatch.setattr(runner, "run_jobs", fake_run_jobs)
    monkeypatch.setattr(runner, "existing_experiments", lambda repo: {})
    result = CliRunner().invoke(app, ["tables", "run", "cvrl_sampling", "--repo", str(tmp_path),
                                      "--gpus", "2,3", "--seeds", "2"])
    assert result.exit_code == 1
    assert seen["gpus"] == ["2", "3"] and len(seen["names"]) == 2 * 5   # 4 rows + 1 floor, 2 seeds
    assert result.output.strip().splitlines()[-1] == (
        "failed: cvrl-sampling-uniform-demo-s1: error: out of memory")
    assert (tmp_path / "results/tables/cvrl_sampling.png").is_file()
    # another scale renders beside, never over, the demo table
    result = CliRunner().invoke(app, ["tables", "run", "cvrl_sampling", "--repo", str(tmp_path),
                                      "--scale", "rehearsal", "--row", "linear", "--row", "uniform"])
    assert (tmp_path / "results/tables/rehearsal/cvrl_sampling.md").is_file()
    assert "Rehearsal" in (tmp_path / "results/tables/rehearsal/cvrl_sampling.md").read_text()
    assert "Rehearsal" not in (tmp_path / "results/tables/cvrl_sampling.md").read_text()


def test_a_row_that_met_a_busy_dvc_lock_starts_again(tmp_path, monkeypatch):
    """A row whose `dvc exp run` failed only on DVC's project lock (another row setting up its
    temporary copy) is started again; any other failure is reported at once."""
    import sys

    from vsslpipe.tables import parallel

    monkeypatch.setattr(parallel, "LOCK_WAIT_S", 0.01)
    counter = tmp_path / "n"
    script = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) "
              "if p.exists() else 0; p.write_text(str(n + 1)); "
              "print('ERROR: Unable to acquire lock. Most likely another DVC process') if n < 2 "
              "else None; sys.exit(1 if n < 2 else 0)")
    flaky = parallel.Task("flaky", [sys.executable, "-c", script, str(counter)])
    broken = parallel.Task("broken", [sys.executable, "-c", "print('ERROR: out of memory'); exit(3)"])
    outcomes = parallel.run_tasks([flaky, broken], tmp_path, jobs=2, log=lambda line: None)
    assert [o.returncode for o in outcomes] == [0, 3] and counter.read_text() == "3"
    assert outcomes[1].error == "ERROR: out of memory"


def test_unfinished_experiments_are_not_results(monkeypatch):
    """`dvc exp show` lists a running or killed experiment with the workspace's data: it is no
    row's result (a killed row once showed the workspace's demo metrics under its name)."""
    import subprocess

    from vsslpipe.tables import runner

    shown = [{"rev": "base", "experiments": [
        {"revs": [{"rev": "a" * 40, "name": "t-done-demo-s0", "error": None,
                   "data": {"rev": "a" * 40, "metrics": {"m.json": {"data": {"R@1": 5}}}}}]},
        {"revs": [{"rev": "b" * 40, "name": "t-killed-demo-s0", "error": None,
                   "data": {"rev": "workspace", "metrics": {"m.json": {"data": {"R@1": 9}}}}}]}]}]
    monkeypatch.setattr(runner, "_run", lambda cmd, cwd, check=True: subprocess.CompletedProcess(
        cmd, 0, json.dumps(shown), ""))
    found = runner.existing_experiments(Path("."))
    assert found["t-done-demo-s0"]["rev"] == "a" * 40 and found["t-done-demo-s0"]["metrics"]
    assert found["t-killed-demo-s0"]["unfinished"] and not found["t-killed-demo-s0"]["metrics"]
    assert runner.stale_reason(found["t-killed-demo-s0"], {}, Path("."), set()) == "it did not finish"


def test_a_row_saved_before_dvc_met_the_lock_is_done_not_rerun(tmp_path, monkeypatch):
    """The experiment was saved, then DVC failed on the busy lock: the row is done (a retry
    would fail with 'conflicts with existing experiment'), both attempts' output kept."""
    import sys

    from vsslpipe.tables import parallel

    monkeypatch.setattr(parallel, "LOCK_WAIT_S", 0.01)
    counter = tmp_path / "n"
    refs = iter([None, "abc1234def"])            # before the first attempt, after it
    monkeypatch.setattr(parallel, "experiment_commit", lambda root, name: next(refs))
    script = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
              "p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1)); "
              "print('ERROR: Unable to acquire lock. Most likely another DVC process'); sys.exit(1)")
    outcomes = parallel.run_tasks([parallel.Task("row", [sys.executable, "-c", script, str(counter)])],
                                  tmp_path, log=lambda line: None)
    assert outcomes[0].returncode == 0 and outcomes[0].error == ""
    assert counter.read_text() == "1"            # not started again
    log = (tmp_path / ".vsslpipe/logs/row.log").read_text()
    assert "Unable to acquire lock" in log and "saved (abc1234) before DVC met the busy lock" in log


def test_experiment_commit_finds_an_experiment_ref(tmp_path):
    import subprocess

    from vsslpipe.tables.parallel import experiment_commit

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    head = git("rev-parse", "HEAD")
    git("update-ref", f"refs/exps/ab/{head}/t-row-demo-s0", head)
    assert experiment_commit(tmp_path, "t-row-demo-s0") == head
    assert experiment_commit(tmp_path, "t-row-demo-s1") is None
