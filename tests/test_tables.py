"""Table definitions validate with clear errors; scales layer as documented (rehearsal on top of
paper); rows render measured beside published; overrides reach DVC as validation applies them."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vsslpipe.errors import ConfigError
from vsslpipe.tables.definitions import TABLES_FILE, get_table, load_tables, row_overrides
from vsslpipe.tables.render import table_frame, to_markdown
from vsslpipe.tables.runner import beyond_database, override_args, row_command, row_metrics
from vsslpipe.tables.seeds import Job, aggregate_rows, make_jobs

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def _tables_with(tmp_path, table: dict, scales: dict | None = None) -> Path:
    """A definitions file holding table ``t`` (and the shipped scales unless given)."""
    shipped = yaml.safe_load(TABLES_FILE.read_text())
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump({"scales": shipped["scales"] if scales is None else scales,
                                    "definitions": {"t": table}}))
    return path


def _load(tmp_path, table: dict, scales: dict | None = None, validate: bool = True):
    return load_tables(PARAMS, validate=validate, tables_path=_tables_with(tmp_path, table, scales))


def _table(**row):
    base_row = {"name": "a", "label": "A", "encoder": "cvrl_rgb",
                "set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "uniform"},
                "published": {"R@1": 40.0}}
    return {"title": "T", "paper": "P", "metrics": ["R@1", "linear_top1"],
            "rows": [{**base_row, **row}]}


def test_project_tables_validate():
    tables, scales = load_tables(PARAMS, validate=True)
    assert {"cvrl_sampling", "cvrl_consistency"} <= set(tables)
    assert {"demo", "paper"} <= set(scales)
    floors = [f for t in tables.values() for f in t.floors]
    assert floors and all(f.floor and f.encoder.startswith("random_") for f in floors)


def test_tables_list_runs_in_any_folder(tmp_path, monkeypatch):
    """The definitions ship with the package: no params.yaml or tables file needed here."""
    from typer.testing import CliRunner

    from vsslpipe.stages.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["tables", "list"])
    assert result.exit_code == 0, result.output
    assert "cvtcl_table3" in result.output and "floor_k5" in result.output
    other = _tables_with(tmp_path, _table())
    result = CliRunner().invoke(app, ["tables", "list", "--tables", str(other)])
    assert result.exit_code == 0 and result.output.startswith("t: T [R@1, linear_top1]")
    missing = CliRunner().invoke(app, ["tables", "list", "--tables", "nope.yaml"])
    assert missing.exit_code == 1 and "--tables: nope.yaml: table definitions file not found" in missing.output


@pytest.mark.parametrize("row, message", [
    ({"set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gapp": "uniform"}}, "gapp"),
    ({"set": {"pretrain.experiments.cvrl_rgb.epoch": 3}}, "pretrain.experiments.cvrl_rgb.epoch: unknown parameter"),
    ({"set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "cubic"}}, "cvrl.gap: must be one of"),
    ({"set": {"retrieve.kz": [1]}}, "unknown parameter 'retrieve.kz'"),
    ({"encoder": "nope"}, "encoder 'nope' is not in evaluate.rgb or evaluate.flow"),
    ({"published": {"R@2": 1.0}}, "'R@2' is not one of the table's metrics"),
])
def test_bad_rows_give_clear_errors(tmp_path, row, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, _table(**row))
    assert message in str(err.value) and "t" in str(err.value)


@pytest.mark.parametrize("extra, message", [
    ({"seeds": 0}, "seeds: a number >= 1"),
    ({"seeds": {"nightly": 2}}, "seeds: a number >= 1 or {scale: number}"),
    ({"floors": ["cvrl_rgb"]}, "a floor's encoder must have init: random"),
    ({"floors": [{"encoder": "random_tiny3d_flow", "row": "a"}]}, "takes rgb, the floor's flow"),
    ({"floors": [{"encoder": "random_tiny3d_rgb", "row": "zz"}]}, "floors[0].row: no row 'zz'"),
])
def test_bad_seeds_and_floors(tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, {**_table(), **extra})
    assert message in str(err.value)


def test_unknown_table_and_metric(tmp_path):
    tables, _ = _load(tmp_path, _table())
    with pytest.raises(ConfigError, match="unknown table 'x'; valid: t"):
        get_table(tables, "x")
    bad = _table()
    bad["metrics"] = ["R@1", "top1"]
    with pytest.raises(ConfigError, match="unknown metric 'top1'"):
        _load(tmp_path, bad)


def _job(table, row, scale, scales, seed=0):
    from vsslpipe.config import read_params

    return next(j for j in make_jobs(table, scale, seed + 1, read_params(PARAMS),
                                     lambda r: row_overrides(scales, scale, table, r), {row.name})
                if j.seed == seed)


def test_row_command_and_overrides(tmp_path):
    from vsslpipe.config import read_params

    tables, scales = _load(tmp_path, _table())
    table = tables["t"]
    row = table.rows[0]
    paper = row_overrides(scales, "paper", table, row)
    assert paper["extract.short_side"] == 128
    assert paper["pretrain.experiments.cvrl_rgb.method_args.cvrl.gap"] == "uniform"
    job = _job(table, row, "demo", scales)
    cmd = row_command(job, read_params(PARAMS))
    assert cmd[:6] == ["dvc", "exp", "run", "--temp", "retrieve_rgb@cvrl_rgb", "linear_rgb@cvrl_rgb"]
    assert cmd[-2:] == ["--name", job.name] == ["--name", "t-a-demo-s0"]
    assert job.legacy_name == "t-a-demo"     # the single-seed name of earlier runs
    flow = Job(table, type(row)(name="f", encoder="cvrl_flow"), "demo", 1, {})
    assert row_command(flow, read_params(PARAMS))[4:6] == ["retrieve_flow@cvrl_flow", "linear_flow@cvrl_flow"]
    assert override_args({"a.b": False, "c": "x y", "d": [1, 2]}) == [
        "-S", "++a.b=false", "-S", '++c="x y"', "-S", "++d=[1, 2]"]


REHEARSAL_SCALES = {
    "demo": {},
    "paper": {"extract.short_side": 128, "pretrain.defaults.epochs": 200,
              "pretrain.experiments.cvrl_rgb.augment.overrides": {},
              "pretrain.experiments.cvrl_rgb.augment.overrides.flip_p": 0.5},
    "rehearsal": {"extract.videos": "data/rehearsal/videos", "pretrain.defaults.epochs": 1,
                  "pretrain.experiments.cvrl_rgb.augment.overrides": {}},
}


def test_rehearsal_is_paper_then_its_own_overrides(tmp_path):
    """rehearsal = scales.paper, the table's scale_set.paper, the row's set, then scales.rehearsal
    and the table's scale_set.rehearsal; a later `{}` clears what an earlier layer put inside."""
    from vsslpipe.config import read_params
    from vsslpipe.tables.definitions import apply_overrides
    from vsslpipe.train.config import load_experiment

    table = {**_table(), "scale_set": {
        "paper": {"pretrain.defaults.backbone": "r3d_18", "pretrain.defaults.batch_size": 64},
        "rehearsal": {"pretrain.defaults.batch_size": 2,
                      "pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "power"}}}
    tables, scales = _load(tmp_path, table, REHEARSAL_SCALES)
    t, row = tables["t"], tables["t"].rows[0]
    params = read_params(PARAMS)
    paper = load_experiment(apply_overrides(params, row_overrides(scales, "paper", t, row), "p"), "cvrl_rgb")
    over = row_overrides(scales, "rehearsal", t, row)
    rehearsal = load_experiment(apply_overrides(params, over, "r"), "cvrl_rgb")
    assert (paper.backbone, paper.epochs, paper.batch_size) == ("r3d_18", 200, 64)
    assert paper.method_args["cvrl"]["gap"] == "uniform" and paper.augment.overrides == {"flip_p": 0.5}
    assert (rehearsal.backbone, rehearsal.epochs, rehearsal.batch_size) == ("r3d_18", 1, 2)
    assert rehearsal.method_args["cvrl"]["gap"] == "power"        # on top of the row's set
    ran = _as_dvc_runs_it(tmp_path, read_params(PARAMS), over)
    assert ran == apply_overrides(params, over, "r")              # and DVC applies it the same way
    assert ran["pretrain"]["experiments"]["cvrl_rgb"]["augment"]["overrides"] == {}   # `{}` last
    assert ran["extract"]["videos"] == "data/rehearsal/videos" and ran["extract"]["short_side"] == 128
    # Undefined, the rehearsal scale is an error, never the paper scale in disguise.
    tables, scales = _load(tmp_path, _table(), {"demo": {}, "paper": {}})
    with pytest.raises(ConfigError, match="scales.rehearsal is not defined"):
        row_overrides(scales, "rehearsal", tables["t"], tables["t"].rows[0])


def test_render_measured_beside_published(tmp_path):
    tables, _ = _load(tmp_path, _table())
    table = tables["t"]
    experiment = {"metrics": {
        "results/eval/cvrl_rgb/retrieval.json": {"R@1": 52.5, "R@5": 80.0, "R@50": 99.0,
                                                 "queries": 60, "k_beyond_database": [50]},
        "results/eval/cvrl_rgb/linear.json": {"top1": 71.25, "top5": 99.0}}}
    measured = row_metrics(experiment, "cvrl_rgb")
    assert measured == {"R@1": 52.5, "R@5": 80.0, "linear_top1": 71.25, "linear_top5": 99.0}
    # `dvc exp show` drops the JSON's list: the database size says which k are beyond it
    shown = {"metrics": {"results/eval/cvrl_rgb/retrieval.json": {
        "R@1": 0.0, "R@5": 75.0, "R@10": 100.0, "database": 8}}}
    assert beyond_database(shown, "cvrl_rgb") == {"R@10"}
    assert row_metrics(shown, "cvrl_rgb") == {"R@1": 0.0, "R@5": 75.0}
    stats = aggregate_rows({"a": {0: measured}}, table.metrics, 1)
    frame = table_frame(table, "demo", stats, {"a": ["t-a-demo-s0"]}, 1)
    assert list(frame.columns[:10]) == ["row", "label", "encoder", "kind", "n", "seeds", "R@1 mean",
                                        "R@1 std", "R@1 n", "R@1 paper"]
    md = to_markdown(table, frame, "demo")
    assert "| A | 1 | 52.5 / 40.0 | 71.2 / — | `t-a-demo-s0` |" in md
    unrun = to_markdown(table, table_frame(table, "demo", {}, {}, 1), "demo")
    assert "— / 40.0" in unrun and "(not run)" in unrun
    rehearsal = table_frame(table, "rehearsal", stats, {"a": ["t-a-rehearsal-s0"]}, 1)
    text = to_markdown(table, rehearsal, "rehearsal")
    assert text.startswith("# Rehearsal (not a result): T") and "numbers are not results" in text
    assert rehearsal["rehearsal"].tolist() == [True] and rehearsal["scale"].tolist() == ["rehearsal"]


def _as_dvc_runs_it(tmp_path, params: dict, overrides: dict) -> dict:
    """params.yaml after DVC applies the row's ``-S`` arguments (DVC's own Hydra code)."""
    from dvc.utils.hydra import apply_overrides as dvc_apply

    path = tmp_path / "run_params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    args = override_args(overrides, params)
    dvc_apply(str(path), [a for a in args if a != "-S"])
    return yaml.safe_load(path.read_text())


def test_dvc_applies_overrides_as_validation_does(tmp_path):
    """An empty mapping replaces (Hydra alone would merge ``{}``, a no-op); a non-empty one merges
    key by key; our ``apply_overrides`` (used to validate and to recognise stale rows) agrees."""
    from vsslpipe.tables.definitions import apply_overrides

    params = {"pretrain": {"o": {"g": 1.0, "f": 0.0}, "p": "x"}, "b": {"c": 1}}
    overrides = {"pretrain.o": {}, "pretrain.o.f": 0.5, "b.c": 3, "pretrain.p": "y"}
    ran = _as_dvc_runs_it(tmp_path, params, overrides)
    assert ran == apply_overrides(params, overrides, "test")
    assert ran == {"pretrain": {"o": {"f": 0.5}, "p": "y"}, "b": {"c": 3}}
    merging = {"pretrain.o": {"f": 0.5}}
    merged = _as_dvc_runs_it(tmp_path, params, merging)
    assert merged == apply_overrides(params, merging, "test")
    assert merged["pretrain"]["o"] == {"g": 1.0, "f": 0.5}


def test_paper_scale_drops_the_demo_rgb_augmentation(tmp_path):
    """At paper scale no RGB experiment keeps the demo's grayscale clips or large crops."""
    from vsslpipe.config import read_params
    from vsslpipe.train.config import load_experiment

    params = read_params(PARAMS)
    tables, scales = load_tables(PARAMS, validate=False)
    demo = load_experiment(params, "cvrl_rgb").augment.overrides
    assert demo["gray_p"] == 1.0    # the demo setting this test is about
    for name, encoder, experiment in (("cvrl_sampling", "cvrl_rgb", "cvrl_rgb"),
                                      ("cacl_pairs", "cacl_rgb", "cacl_rgb"),
                                      ("cvtcl_table1", "cvtcl_init_rgb", "cvtcl_init_rgb"),
                                      ("cvtcl_table2", "cvtcl_cotrain_rgb", "cvtcl_cotrain")):
        table = tables[name]
        row = next(r for r in table.rows if r.encoder == encoder)
        ran = _as_dvc_runs_it(tmp_path, params, row_overrides(scales, "paper", table, row))
        overrides = load_experiment(ran, experiment).augment.overrides
        assert "gray_p" not in overrides and "area" not in overrides, (name, overrides)
        assert overrides["flip_p"] == 0.5
        assert "gray_p" not in (ran["pretrain_frames"]["augment"].get("overrides") or {})


def test_paper_scale_drops_the_demo_cvtcl_schedule_choices(tmp_path):
    """The demo's faster momentum (RGB init) and two-window flow init stay at demo scale."""
    from vsslpipe.config import read_params
    from vsslpipe.train.config import load_experiment

    params = read_params(PARAMS)
    tables, scales = load_tables(PARAMS, validate=False)
    demo_flow = load_experiment(params, "cvtcl_init_flow").method_args["cvtcl"]
    assert demo_flow["clips"] == "independent"
    assert load_experiment(params, "cvtcl_init_rgb").method_args["cvtcl"]["momentum"] == 0.99
    table = tables["cvtcl_table1"]
    for encoder in ("cvtcl_init_rgb", "cvtcl_init_flow"):
        row = next(r for r in table.rows if r.encoder == encoder)
        ran = _as_dvc_runs_it(tmp_path, params, row_overrides(scales, "paper", table, row))
        args = load_experiment(ran, encoder).method_args["cvtcl"]
        assert (args.get("clips", "same"), args["momentum"]) == ("same", 0.999)


def test_load_tables_leaves_definitions_as_written(tmp_path):
    table = _table(set={"pretrain.experiments.cvrl_rgb.augment.overrides": {},
                        "pretrain.experiments.cvrl_rgb.augment.overrides.flip_p": 0.5})
    tables, _ = _load(tmp_path, table)
    assert tables["t"].rows[0].set["pretrain.experiments.cvrl_rgb.augment.overrides"] == {}


def test_stale_rows_are_recognised(tmp_path):
    """A finished row counts only if it ran with today's parameters and source files."""
    import hashlib

    from vsslpipe.tables.runner import stale_reason

    (tmp_path / "code.py").write_text("x = 1\n")
    params = {"synth": {"groups": 10}, "tables": {"anything": 1}}
    current = {"params": {"synth": {"groups": 10}, "tables": {"other": 2}},
               "deps": {"code.py": {"hash": hashlib.md5(b"x = 1\n").hexdigest()},
                        "data/frames.h5": {"hash": "0" * 32}}}
    assert stale_reason(current, params, tmp_path, {"code.py"}) is None
    older_data = {**current, "params": {"synth": {"groups": 6}}}
    assert stale_reason(older_data, params, tmp_path, {"code.py"}) == "parameter synth.groups differs"
    (tmp_path / "code.py").write_text("x = 2\n")
    assert stale_reason(current, params, tmp_path, {"code.py"}) == "code.py changed"


def _commit_lock(root, lock: dict) -> str:
    """A git repository at ``root`` whose one commit holds ``lock`` as dvc.lock (and whatever
    else is there): the experiment revision the staleness checks read the lock from."""
    import subprocess

    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    git = dict(cwd=root, check=True, capture_output=True)
    subprocess.run(["git", "init", "-q"], **git)
    subprocess.run(["git", "add", "."], **git)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], **git)
    return subprocess.run(["git", "rev-parse", "HEAD"], **git, text=True).stdout.strip()


def test_only_the_rows_own_stages_count_for_staleness(tmp_path):
    """`dvc exp show` flattens the deps of every stage in an experiment's dvc.lock, stages the
    row never ran included; only the deps of the row's own stages (its lock entries) count."""
    import hashlib

    from vsslpipe.tables.runner import stale_reason

    def md5(text):
        return hashlib.md5(text.encode()).hexdigest()

    (tmp_path / "train.py").write_text("a = 1\n")
    (tmp_path / "summary.py").write_text("b = 2\n")
    lock = {"schema": "2.0", "stages": {
        "pretrain": {"cmd": "x", "deps": [{"path": "train.py", "hash": "md5", "md5": md5("a = 1\n")}]},
        "summary": {"cmd": "y", "deps": [{"path": "summary.py", "hash": "md5", "md5": md5("old\n")}]},
        "versions": {"cmd": "z", "outs": [{"path": "versions.json", "hash": "md5", "md5": md5("v2\n")}]}}}
    lock["stages"]["pretrain"]["deps"].append({"path": "versions.json", "hash": "md5", "md5": md5("v2\n")})
    (tmp_path / "versions.json").write_text("v1\n")   # the workspace's own run of that stage
    rev = _commit_lock(tmp_path, lock)
    experiment = {"rev": rev, "params": {}, "deps": {"train.py": {"hash": md5("a = 1\n")},
                                                    "summary.py": {"hash": md5("old\n")}}}
    tracked = {"train.py", "summary.py", "versions.json"}
    assert stale_reason(experiment, {}, tmp_path, tracked) == "summary.py changed"   # flattened
    # an output of the experiment's own stages (versions.json) is no source file: it does not count
    assert stale_reason(experiment, {}, tmp_path, tracked, ["pretrain", "versions"]) is None
    (tmp_path / "train.py").write_text("a = 3\n")
    assert stale_reason(experiment, {}, tmp_path, tracked, ["pretrain"]) == "train.py changed"


def test_a_floor_re_pointed_at_the_rows_checkpoint_is_judged_by_its_own_lock(tmp_path):
    """A floor's overrides point its export at the row's checkpoint; the workspace graph still
    puts the floor's default checkpoint stage upstream, whose lock entry (never run by the
    floor) records other parameters. Only the stages the experiment's lock links to the
    targets count (the rehearsal floor of cvtcl_table3 was shown stale for this)."""
    import copy

    from vsslpipe.tables.runner import lock_closure, stale_reason

    lock = {"schema": "2.0", "stages": {
        "extract": {"cmd": "e", "params": {"params.yaml": {"extract.size": 128}},
                    "outs": [{"path": "data/frames", "md5": "1.dir"}]},
        "pretrain@cvrl_rgb": {"cmd": "p", "params": {"params.yaml": {"pretrain.size": 48}},
                              "deps": [{"path": "data/frames", "md5": "1.dir"}],
                              "outs": [{"path": "models/cvrl_rgb", "md5": "2.dir"}]},
        "pretrain_cotrain": {"cmd": "c", "params": {"params.yaml": {"pretrain.size": 128}},
                             "deps": [{"path": "data/frames", "md5": "1.dir"}],
                             "outs": [{"path": "models/cotrain", "md5": "3.dir"}]},
        "export@floor": {"cmd": "x", "deps": [{"path": "models/cotrain/final.pt", "md5": "4"},
                                              {"path": "data/frames", "md5": "1.dir"}],
                         "outs": [{"path": "results/floor/features.h5", "md5": "5"}]},
        "retrieve@floor": {"cmd": "r", "deps": [{"path": "results/floor/features.h5", "md5": "5"}],
                           "outs": [{"path": "results/floor/retrieval.json", "md5": "6"}]}}}
    assert sorted(lock_closure(lock["stages"], ["retrieve@floor"])) == [
        "export@floor", "extract", "pretrain_cotrain", "retrieve@floor"]
    assert lock_closure(lock["stages"], ["linear@floor"]) is None     # not in the lock: unknown
    rev = _commit_lock(tmp_path, lock)
    expected = {"extract": {"size": 128}, "pretrain": {"size": 128}}
    experiment = {"rev": rev, "params": copy.deepcopy(expected)}
    workspace_graph = ["extract", "pretrain@cvrl_rgb", "export@floor", "retrieve@floor"]
    assert stale_reason(experiment, expected, tmp_path, set(), workspace_graph) == (
        "its stage pretrain@cvrl_rgb did not run with the row's parameters (an interrupted run)")
    assert stale_reason(experiment, expected, tmp_path, set(), workspace_graph,
                        ["retrieve@floor"]) is None
    # a stage the row did need, left with other parameters (a killed run), still counts
    expected["extract"]["size"] = experiment["params"]["extract"]["size"] = 112
    assert stale_reason(experiment, expected, tmp_path, set(), workspace_graph,
                        ["retrieve@floor"]) == (
        "its stage extract did not run with the row's parameters (an interrupted run)")
