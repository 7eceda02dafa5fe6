"""Table definitions validate with clear errors; rows render measured beside published."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vsslpipe.errors import ConfigError
from vsslpipe.tables.definitions import get_table, load_tables, row_overrides
from vsslpipe.tables.render import table_frame, to_markdown
from vsslpipe.tables.runner import experiment_name, override_args, row_command, row_metrics

ROOT = Path(__file__).resolve().parents[1]


def _params_with(tmp_path, table: dict) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tables"]["definitions"] = {"t": table}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _table(**row):
    base_row = {"name": "a", "label": "A", "encoder": "cvrl_rgb",
                "set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "uniform"},
                "published": {"R@1": 40.0}}
    return {"title": "T", "paper": "P", "metrics": ["R@1", "linear_top1"],
            "rows": [{**base_row, **row}]}


def test_project_tables_validate():
    tables, scales = load_tables(ROOT / "params.yaml", validate=True)
    assert {"cvrl_sampling", "cvrl_consistency"} <= set(tables)
    assert set(scales) == {"demo", "paper"}


@pytest.mark.parametrize("row, message", [
    ({"set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gapp": "uniform"}}, "gapp"),
    ({"set": {"pretrain.experiments.cvrl_rgb.epoch": 3}}, "unknown parameter(s) epoch"),
    ({"set": {"pretrain.experiments.cvrl_rgb.method_args.cvrl.gap": "cubic"}}, "gap must be one of"),
    ({"set": {"retrieve.kz": [1]}}, "unknown parameter 'retrieve.kz'"),
    ({"encoder": "nope"}, "encoder 'nope' is not in evaluate.encoders"),
    ({"published": {"R@2": 1.0}}, "'R@2' is not one of the table's metrics"),
])
def test_bad_rows_give_clear_errors(tmp_path, row, message):
    with pytest.raises(ConfigError) as err:
        load_tables(_params_with(tmp_path, _table(**row)))
    assert message in str(err.value) and "t" in str(err.value)


def test_unknown_table_and_metric(tmp_path):
    tables, _ = load_tables(_params_with(tmp_path, _table()))
    with pytest.raises(ConfigError, match="unknown table 'x'; valid: t"):
        get_table(tables, "x")
    bad = _table()
    bad["metrics"] = ["R@1", "top1"]
    with pytest.raises(ConfigError, match="unknown metric 'top1'"):
        load_tables(_params_with(tmp_path, bad))


def test_row_command_and_overrides(tmp_path):
    tables, scales = load_tables(_params_with(tmp_path, _table()))
    table = tables["t"]
    row = table.rows[0]
    paper = row_overrides(scales, "paper", table, row)
    assert paper["extract.short_side"] == 128
    assert paper["pretrain.experiments.cvrl_rgb.method_args.cvrl.gap"] == "uniform"
    cmd = row_command(table, row, "demo", row_overrides(scales, "demo", table, row))
    assert cmd[:6] == ["dvc", "exp", "run", "--temp", "retrieve@cvrl_rgb", "linear@cvrl_rgb"]
    assert cmd[-2:] == ["--name", experiment_name(table, row, "demo")] == ["--name", "t-a-demo"]
    assert override_args({"a.b": False, "c": "x y", "d": [1, 2]}) == [
        "-S", "++a.b=false", "-S", '++c="x y"', "-S", "++d=[1, 2]"]


def test_render_measured_beside_published(tmp_path):
    tables, _ = load_tables(_params_with(tmp_path, _table()))
    table = tables["t"]
    experiment = {"metrics": {
        "results/eval/cvrl_rgb/retrieval.json": {"R@1": 52.5, "R@5": 80.0, "queries": 60},
        "results/eval/cvrl_rgb/linear.json": {"top1": 71.25, "top5": 99.0}}}
    measured = {"a": row_metrics(experiment, "cvrl_rgb")}
    assert measured["a"] == {"R@1": 52.5, "R@5": 80.0, "linear_top1": 71.25, "linear_top5": 99.0}
    frame = table_frame(table, "demo", measured, {"a": "t-a-demo"})
    assert list(frame.columns[:5]) == ["row", "label", "encoder", "R@1 (ours)", "R@1 (paper)"]
    md = to_markdown(table, frame, "demo")
    assert "| A | 52.5 / 40.0 | 71.2 / — | `t-a-demo` |" in md
    unrun = to_markdown(table, table_frame(table, "demo", {}, {}), "demo")
    assert "— / 40.0" in unrun and "(not run)" in unrun


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

    params = read_params(ROOT / "params.yaml")
    tables, scales = load_tables(ROOT / "params.yaml")
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

    params = read_params(ROOT / "params.yaml")
    tables, scales = load_tables(ROOT / "params.yaml")
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
    tables, _ = load_tables(_params_with(tmp_path, table), validate=True)
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
